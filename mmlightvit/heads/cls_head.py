"""The ImageNet classifier head of the four families, for mmpretrain's ``ImageClassifier``."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmlightvit.registry import MODELS


class LinearBranch(nn.Module):
    """``Linear``, optionally after a ``BatchNorm1d`` (RepViT's ``BN_Linear``)."""

    def __init__(self, in_channels: int, num_classes: int, with_norm: bool = False):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_channels) if with_norm else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


@MODELS.register_module()
class LightClsHead(ClsHead):
    """Global average pooling of the last feature map, then a linear classifier, with the norms each family's
    released classifier has around the pooling:

    ====================  ==============================================================================
    RepViT                ``branch_norm=True, distillation=True`` (BN1d + Linear, twice; the prediction
                          is the mean of the two branches, as the released distilled models evaluate)
    EdgeNeXt              ``post_pool_norm='LN'`` (LayerNorm eps 1e-6 after pooling), ``dropout``
    EdgeNeXt BN + HS      ``pre_pool_norm='BN'`` (BatchNorm2d before pooling)
    FasterViT             ``pre_pool_norm='BN'``
    TransNeXt             nothing: the backbone's last stage norm is the classifier's final norm
    ====================  ==============================================================================

    Keys: ``pre_norm``, ``norm``, ``classifier.{norm,fc}`` and ``classifier_dist.{norm,fc}``; each backbone
    family maps its released classifier's keys onto these (``classifier_key_map``).

    Args:
        num_classes: number of classes.
        in_channels: channels of the last backbone stage.
        pre_pool_norm: ``'BN'`` for a BatchNorm2d on the map before pooling, or None.
        post_pool_norm: ``'LN'`` for a LayerNorm (eps 1e-6) on the pooled vector, or None.
        branch_norm: a BatchNorm1d before each linear layer.
        distillation: a second linear branch (DeiT-style distillation token head); both learn from the labels
            here (mmpretrain has no teacher distillation) and the prediction averages them.
        dropout: dropout before the linear layers.
        init_std: std of the truncated-normal initialisation of the linear weights (biases start at 0).
        head_init_scale: factor on the initial linear weights and biases (EdgeNeXt's ``head_init_scale``).
        **kwargs: ``loss``, ``topk``, ``cal_acc``, ``init_cfg`` of mmpretrain's ``ClsHead``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 pre_pool_norm: Optional[str] = None,
                 post_pool_norm: Optional[str] = None,
                 branch_norm: bool = False,
                 distillation: bool = False,
                 dropout: float = 0.,
                 init_std: float = 0.02,
                 head_init_scale: float = 1.,
                 **kwargs):
        super().__init__(**kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}.')
        norms_2d = {None: nn.Identity, 'BN': nn.BatchNorm2d}
        norms_1d = {None: nn.Identity, 'LN': lambda c: nn.LayerNorm(c, eps=1e-6)}
        for name, value, known in (('pre_pool_norm', pre_pool_norm, norms_2d),
                                   ('post_pool_norm', post_pool_norm, norms_1d)):
            if value not in known:
                raise ValueError(f'{name} must be one of {list(known)}, got {value!r}.')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.pre_norm = norms_2d[pre_pool_norm](in_channels)
        self.norm = norms_1d[post_pool_norm](in_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = LinearBranch(in_channels, num_classes, branch_norm)
        self.classifier_dist = LinearBranch(in_channels, num_classes, branch_norm) if distillation else None
        self.init_std = init_std
        self.head_init_scale = head_init_scale

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is not None:  # an explicit init_cfg (e.g. Pretrained) decides
            return
        for branch in (self.classifier, self.classifier_dist):
            if branch is not None:
                nn.init.trunc_normal_(branch.fc.weight, std=self.init_std)
                nn.init.zeros_(branch.fc.bias)
                with torch.no_grad():
                    branch.fc.weight.mul_(self.head_init_scale)
                    branch.fc.bias.mul_(self.head_init_scale)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The pooled, normalised feature vector of the last map (what the linear layers read)."""
        x = self.pre_norm(feats[-1])
        return self.norm(x.mean((-2, -1)))

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        x = self.dropout(self.pre_logits(feats))
        logits = self.classifier(x)
        if self.classifier_dist is not None:
            logits = (logits + self.classifier_dist(x)) / 2
        return logits

    def extra_repr(self) -> str:
        return f'num_classes={self.num_classes}, in_channels={self.in_channels}'
