"""mmdet's DetInferencer and mmseg's MMSegInferencer for this project's models.

They differ from the upstream classes in what they load: the weights go through the project's checkpoint path
(weights-only, released layouts converted, every key checked, see :func:`load_model_weights`), never a silent
partial load and never random weights; zoo names resolve through this project's metafiles; ``fuse=True`` runs the
re-parameterised model.
"""
from typing import Optional, Union

from mmdet.apis import DetInferencer
from mmengine.config import Config
from mmengine.registry import MODELS
from mmseg.apis import MMSegInferencer

from mmlightvit.utils.checkpoint import CheckpointError, read_checkpoint
from .model import drop_pretrained, load_model_weights
from .model_index import find_model


def _config_from_checkpoint(checkpoint: dict, source: str) -> Config:
    """The config a checkpoint written by mmengine's Runner carries (``message_hub`` or ``meta``)."""
    text = (checkpoint.get('message_hub') or {}).get('runtime_info', {}).get('cfg') \
        or (checkpoint.get('meta') or {}).get('cfg')
    if not text:
        raise ValueError(f'{source} carries no config (it was not written by a training run); pass the config.')
    return Config.fromstring(text, file_format='.py')


class _ProjectWeights:
    """What both inferencers change: model names from our metafiles, strict loading, optional fusing."""

    def __init__(self, *args, fuse: bool = False, **kwargs):
        self.fuse = fuse
        super().__init__(*args, **kwargs)

    def _load_model_from_metafile(self, model: str):
        entry = find_model(model)
        return Config.fromfile(entry.config), entry.weights

    def _init_model(self, cfg, weights: Optional[str], device: str = 'cpu'):
        if not weights:
            raise CheckpointError('No weights given (and the model has no released weights in the metafiles): '
                                  'predictions of a randomly initialised model mean nothing. Pass weights=PATH.')
        checkpoint = read_checkpoint(weights)
        if not cfg:
            cfg.update(_config_from_checkpoint(checkpoint, weights)._cfg_dict)
        drop_pretrained(cfg)
        model = load_model_weights(MODELS.build(cfg.model), checkpoint, weights, fuse=self.fuse)
        model.cfg = cfg
        # the upstream method reads dataset_meta (classes, palette) from the checkpoint's meta and the config; it
        # gets the state dict just loaded, so its own non-strict load changes nothing
        super()._load_weights_to_model(model, {'meta': checkpoint.get('meta') or {},
                                               'state_dict': model.state_dict()}, cfg)
        return model.to(device).eval()


class LightDetInferencer(_ProjectWeights, DetInferencer):
    """``LightDetInferencer('mask-rcnn_repvit-m1.1_coco')`` (released weights) or
    ``LightDetInferencer(CONFIG, weights=CHECKPOINT, device='cpu', fuse=True)``; called as mmdet's DetInferencer:
    ``inferencer('demo.jpg', out_dir='outputs', pred_score_thr=0.3)`` writes ``vis/`` and ``preds/*.json``."""


class LightSegInferencer(_ProjectWeights, MMSegInferencer):
    """As :class:`LightDetInferencer`, for segmentors (mmseg's MMSegInferencer: ``vis/`` and ``pred/`` label maps)."""


def build_inferencer(model: Union[str, Config], weights: Optional[str] = None, device: Optional[str] = None,
                     fuse: bool = False, **kwargs):
    """The inferencer for ``model`` (a config file, a Config, or a zoo model name), chosen by the config's scope."""
    if isinstance(model, Config):
        cfg = model
    elif model.endswith('.py'):
        cfg = Config.fromfile(model)
    else:
        entry = find_model(model)
        cfg, weights = Config.fromfile(entry.config), weights or entry.weights
    scope = cfg.get('default_scope')
    classes = {'mmdet': LightDetInferencer, 'mmseg': LightSegInferencer}
    if scope not in classes:
        raise ValueError(f'{getattr(cfg, "filename", model)}: default_scope {scope!r}; the inferencers serve '
                         f'detectors (mmdet) and segmentors (mmseg).')
    return classes[scope](cfg, weights=weights, device=device, fuse=fuse, **kwargs)
