"""A detector / segmentor from a config with its trained weights, loaded strictly (the inference entry point)."""
import copy
from typing import Optional, Union

import torch.nn as nn
from mmengine.config import Config

from mmlightvit.models.layers.reparam import fuse_model
from mmlightvit.utils.checkpoint import (CheckpointError, check_state_dict, convert_released_state,
                                         extract_state_dict, read_checkpoint)


def drop_pretrained(cfg) -> None:
    """Make the model of ``cfg`` (changed in place) load no ImageNet weights when it is initialised: the trained
    weights replace them anyway."""
    if not isinstance(cfg.get('model'), dict) or 'type' not in cfg.model:
        raise ValueError(f'{getattr(cfg, "filename", "the config")}: not a config with a model')
    cfg.model.pop('pretrained', None)
    if isinstance(cfg.model.get('backbone'), dict):
        cfg.model.backbone.init_cfg = None


def config_without_pretrained(config: Union[str, Config], cfg_options: Optional[dict] = None) -> Config:
    """A copy of ``config`` (a path or a Config) with :func:`drop_pretrained` applied."""
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    drop_pretrained(cfg)
    return cfg


def config_from_checkpoint(checkpoint: dict, source: str) -> Config:
    """The config a checkpoint written by mmengine's Runner carries (``message_hub`` or ``meta``)."""
    text = (checkpoint.get('message_hub') or {}).get('runtime_info', {}).get('cfg') \
        or (checkpoint.get('meta') or {}).get('cfg')
    if not text:
        raise ValueError(f'{source} carries no config (it was not written by a training run); pass the config.')
    return Config.fromstring(text, file_format='.py')


def load_model_weights(model: nn.Module, checkpoint: dict, source: str, fuse: bool = False) -> nn.Module:
    """Load a trained detector's / segmentor's weights into ``model`` strictly and return the model.

    Accepts what ``tools/train.py`` writes, the officially released models (their backbone layout is converted in
    memory) and fused checkpoints (``meta.fused``: the model is folded before they load). Keys that do not match
    raise :class:`CheckpointError` naming them; nothing is ever left at random initialisation. ``fuse`` folds the
    re-parameterisable branches afterwards (same outputs in eval mode, faster).
    """
    state = extract_state_dict(checkpoint, source=source)
    state, _ = convert_released_state(model, state)
    if (checkpoint.get('meta') or {}).get('fused'):
        model = fuse_model(model.eval())
    check_state_dict(model, state, source=f'Checkpoint {source!r}')
    model.load_state_dict(state, strict=True)
    return fuse_model(model.eval()) if fuse else model


def init_model(config: Union[str, Config], checkpoint: str, device: str = 'cpu', fuse: bool = False,
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of ``config`` (mmdet or mmseg), load ``checkpoint`` (path or URL) strictly, and return it in
    eval mode on ``device``, with ``model.cfg`` and ``model.dataset_meta`` (from the checkpoint, if it has one)."""
    from mmengine.registry import MODELS, init_default_scope
    if not checkpoint:
        raise CheckpointError('init_model needs the trained weights (a path or URL): predictions of a randomly '
                              'initialised model mean nothing.')
    cfg = config_without_pretrained(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loaded = read_checkpoint(checkpoint)
    model = load_model_weights(MODELS.build(cfg.model), loaded, checkpoint, fuse=fuse)
    model.cfg = cfg
    dataset_meta = (loaded.get('meta') or {}).get('dataset_meta')
    if dataset_meta:
        model.dataset_meta = dataset_meta
    return model.to(device).eval()
