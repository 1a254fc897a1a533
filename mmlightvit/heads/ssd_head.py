"""mmdet's SSD head, able to predict under mmdet 3.3."""
from mmdet.models.dense_heads import SSDHead as MMDetSSDHead

from mmlightvit.registry import MODELS


@MODELS.register_module()
class SSDHead(MMDetSSDHead):
    """mmdet's ``SSDHead`` (SSD / SSDLite), unchanged except that it predicts under mmdet 3.3.

    mmdet 3.3's ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls`` to support losses with custom
    class channels, but ``SSDHead`` skips ``AnchorHead.__init__``, which creates that attribute, so every
    prediction (validation, test, inference) stops with an AttributeError (open-mmlab/mmdetection#11063,
    #11780). SSD's classification loss is a softmax cross-entropy computed in ``loss_by_feat``, not a loss
    module: ``loss_cls = None`` states that, and prediction takes the softmax branch, as in mmdet 3.0.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_cls = None
