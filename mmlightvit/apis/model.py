"""A detector / segmentor from a config with its trained weights: what the inference API, the ONNX exporter, the
fuse and release converters and the analysis tools share.

* :func:`config_without_pretrained` - a config whose model loads no ImageNet weights when initialised;
* :func:`build_model` - the model (or a part of it) of a config, in its scope, with seeded random weights;
* :func:`checkpoint_part` / :func:`load_model_weights` - which part of the model a checkpoint fills, loaded
  strictly (released layouts converted, fused checkpoints into the folded model);
* :func:`init_model` - all of it: config + checkpoint -> model in eval mode on a device.
"""
import copy
from collections import OrderedDict
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from mmlightvit.models.layers.reparam import fuse_model
from mmlightvit.models.releases import convert_released_model
from mmlightvit.registry import build_or_explain
from mmlightvit.utils.checkpoint import (CheckpointError, backbone_state, check_state_dict, extract_state_dict,
                                         holds_whole_model, read_checkpoint, released_checkpoint_keys)


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
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    drop_pretrained(cfg)
    return cfg


def build_model(cfg: Config, module_cfg: Optional[dict] = None, seed: Optional[int] = 0) -> nn.Module:
    """Build ``module_cfg`` (default: the config's model) in the config's scope. ``seed``: random weights that are
    the same on every run (a detector with random weights then keeps the same proposals), drawn without touching
    the caller's random state; ``None`` draws from it."""
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmlightvit'))
    if seed is None:
        return build_or_explain(MODELS.build, module_cfg or cfg.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_or_explain(MODELS.build, module_cfg or cfg.model)


def checkpoint_part(model: nn.Module, checkpoint: dict, source: str,
                    allow_backbone: bool = False) -> Tuple[str, Dict[str, torch.Tensor]]:
    """Which part of ``model`` the checkpoint fills, and its state dict for that part.

    ``('model', state)`` for a whole detector / segmentor / classifier (``backbone.*`` keys; an officially
    released model's backbone layout converted; for a classifier also a released ImageNet model in its family's
    layout). With ``allow_backbone``, ``('backbone', state)`` for a checkpoint of the backbone alone, in our layout
    or any layout the backbone's ``convert_checkpoint`` knows. Without it, such a file is an error: the rest of
    the model would stay random.
    """
    state = extract_state_dict(checkpoint, source=source, preferred_keys=released_checkpoint_keys(model))
    converted, layout = convert_released_model(model, state)
    if holds_whole_model(state) or layout is not None:  # a layout alone: a released classifier in its own one
        return 'model', converted
    if not allow_backbone:
        raise CheckpointError(
            f'Checkpoint {source!r} holds no backbone.* keys: it is not a whole detector / segmentor (what '
            'tools/train.py writes or a released model), so the neck and heads would stay random.')
    backbone = model.backbone
    if callable(getattr(backbone, 'convert_checkpoint', None)):
        state = backbone.convert_checkpoint(OrderedDict(state))
    return 'backbone', state


def load_model_weights(model: nn.Module, checkpoint: dict, source: str, fuse: bool = False) -> nn.Module:
    """Load a checkpoint strictly into ``model`` (the whole model, or a backbone alone when ``model`` is one) and
    return it; a fused checkpoint (``meta.fused``) is loaded into the folded model. Keys that do not match raise
    :class:`CheckpointError` naming them: nothing is ever left at random initialisation. ``fuse`` folds the
    re-parameterisable branches afterwards (same outputs in eval mode, faster)."""
    if hasattr(model, 'backbone'):
        _, state = checkpoint_part(model, checkpoint, source)
    else:  # a backbone: its own keys, a detector's backbone.* keys, or a layout it converts
        state = extract_state_dict(checkpoint, source=source)
        if holds_whole_model(state):
            state = backbone_state(state)
        elif callable(getattr(model, 'convert_checkpoint', None)):
            state = model.convert_checkpoint(OrderedDict(state))
    if (checkpoint.get('meta') or {}).get('fused'):
        model = fuse_model(model.eval())
    check_state_dict(model, state, source=f'Checkpoint {source!r}')
    model.load_state_dict(state, strict=True)
    return fuse_model(model.eval()) if fuse else model


def init_model(config: Union[str, Config], checkpoint: str, device: str = 'cpu', fuse: bool = False,
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of ``config`` (mmdet or mmseg), load ``checkpoint`` (path or URL) strictly, and return it in
    eval mode on ``device``, with ``model.cfg`` and ``model.dataset_meta`` (from the checkpoint, if it has one)."""
    if not checkpoint:
        raise CheckpointError('init_model needs the trained weights (a path or URL): predictions of a randomly '
                              'initialised model mean nothing.')
    cfg = config_without_pretrained(config, cfg_options)
    loaded = read_checkpoint(checkpoint)
    model = load_model_weights(build_model(cfg, seed=None), loaded, checkpoint, fuse=fuse)
    model.cfg = cfg
    dataset_meta = (loaded.get('meta') or {}).get('dataset_meta')
    if dataset_meta:
        model.dataset_meta = dataset_meta
    return model.to(device).eval()
