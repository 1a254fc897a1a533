"""A detector / segmentor from a config with its trained weights: what the inference API, the ONNX exporter, the
fuse and release converters and the analysis tools share.

* :func:`config_without_pretrained` - a config whose model loads no ImageNet weights when initialised;
* :func:`build_model` - the model (or a part of it) of a config, in its scope, with seeded random weights;
* :func:`init_model` - config + checkpoint -> model in eval mode on a device, the weights loaded strictly by
  :func:`~mmlightvit.models.weights.load_model_weights` (released layouts converted, fused checkpoints into the
  folded model).
"""
import copy
import logging
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmlightvit.models.weights import load_model_weights
from mmlightvit.registry import build_or_explain
from mmlightvit.utils.checkpoint import CheckpointError, read_checkpoint
from mmlightvit.utils.config import read_config


def drop_pretrained(cfg) -> None:
    """Make the model of ``cfg`` (changed in place) load no ImageNet weights when it is initialised: trained
    weights replace them, and counting or timing needs none."""
    if not isinstance(cfg.get('model'), dict) or 'type' not in cfg.model:
        raise ValueError(f'{getattr(cfg, "filename", "the config")}: not a config with a model')
    cfg.model.pop('pretrained', None)
    if isinstance(cfg.model.get('backbone'), dict):
        cfg.model.backbone.init_cfg = None


def config_without_pretrained(config: Union[str, Config], cfg_options: Optional[dict] = None) -> Config:
    """A copy of ``config`` (a path or a Config; the caller's is not changed) with :func:`drop_pretrained`."""
    if isinstance(config, str):
        cfg = read_config(config, cfg_options)
    else:
        cfg = copy.deepcopy(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    drop_pretrained(cfg)
    return cfg


def build_model(cfg: Config, module_cfg: Optional[dict] = None, seed: Optional[int] = 0,
                init_weights: bool = False) -> nn.Module:
    """Build ``module_cfg`` (default: the config's model) in the config's scope. ``seed``: random weights that are
    the same on every run (a detector with random weights then keeps the same proposals), drawn without touching
    the caller's random state; ``None`` draws from it. ``init_weights``: also run the modules' ``init_weights``,
    which gives the weights training starts from; a model that will not load a checkpoint needs it, because some
    modules create parameters uninitialised and fill them there (DINO's level embeddings would otherwise hold
    whatever the memory held, NaN at times)."""
    from mmengine.registry import MODELS, init_default_scope

    def build() -> nn.Module:
        model = build_or_explain(MODELS.build, module_cfg or cfg.model)
        if init_weights:
            # mmengine logs every parameter's initialisation at INFO level (pages of output); warnings still show
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)
            try:
                model.init_weights()
            finally:
                logger.setLevel(level)
        return model

    init_default_scope(cfg.get('default_scope', 'mmlightvit'))
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def init_model(config: Union[str, Config], checkpoint: str, device: str = 'cpu', fuse: bool = False,
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of ``config`` (mmdet or mmseg), load ``checkpoint`` (path or URL) strictly, and return it in
    eval mode on ``device``, with ``model.cfg`` and ``model.dataset_meta`` (from the checkpoint, if it has one)."""
    if not checkpoint:
        raise CheckpointError('init_model needs the trained weights (a path or URL): predictions of a randomly '
                              'initialised model mean nothing.')
    cfg = config_without_pretrained(config, cfg_options)
    loaded = read_checkpoint(checkpoint)
    model = load_model_weights(build_model(cfg, seed=None), loaded, f'Checkpoint {checkpoint!r}', fuse=fuse)
    model.cfg = cfg
    dataset_meta = (loaded.get('meta') or {}).get('dataset_meta')
    if dataset_meta:
        model.dataset_meta = dataset_meta
    return model.to(device).eval()
