"""Where weights are loaded: every path that puts a checkpoint's tensors into a model goes through
:func:`resolve_state` (and :func:`load_model_weights`, which also loads them).

Callers: a backbone's ``init_cfg=dict(type='Pretrained', ...)`` (:meth:`LightBackbone.init_weights`), the inference
API (``init_model``, the inferencers), the Runner's :class:`~mmlightvit.engine.StrictLoadHook` (``tools/test.py``,
``load_from``, ``--resume``), the ONNX exporter and the converter tools. The steps are always the same:

1. extract: the tensors of the file, whatever wraps them (``state_dict``, ``model``, ``model_ema``, ...);
2. detect and convert: a whole model in our layout is taken as it is; an officially released detector, segmentor
   or classifier (backbone in its official module tree, the FasterViT DINO release) is mapped onto our keys; a
   backbone file in any layout its family reads goes through the family's
   :meth:`~mmlightvit.models.layers.LightBackbone.convert_checkpoint`;
3. check: every key of the model must be filled, none left over, every shape equal, with one error format
   (:func:`format_mismatches`); the only exception are the keys a foreign backbone layout cannot hold
   (``LightBackbone.optional_keys``: the optional output norms, which keep their initialisation).

Reading the file (weights only, allowlist, downloads) is below this, in :mod:`mmlightvit.utils.checkpoint`.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmlightvit.utils.checkpoint import CheckpointError, extract_state_dict
from .dino_release import convert_idea_dino_state, is_idea_dino_state
from .layers.checkpoint_layouts import OWN_LAYOUT
from .layers.reparam import fuse_model

#: which part of a model a checkpoint fills: the whole model, its backbone, or whichever the file holds
PARTS = ('model', 'backbone', 'any')


# ----------------------------------------------------------------------------------------------------------------
# State-dict keys


def strip_prefix(state: Dict[str, torch.Tensor], prefix: str) -> 'OrderedDict[str, torch.Tensor]':
    """Keep only the keys under ``prefix`` (e.g. ``backbone.`` of a detector checkpoint), without it."""
    return OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))


def holds_whole_model(state: Dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` is a whole detector / segmentor / classifier (it has ``backbone.*`` keys)."""
    return any(k.startswith('backbone.') for k in state)


def backbone_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The backbone's tensors: a whole model's ``backbone.*`` keys without the prefix, else ``state`` itself."""
    return strip_prefix(state, 'backbone.') if holds_whole_model(state) else state


def backbone_tensors(checkpoint: dict, source: str, preferred_keys: Optional[Sequence[str]] = None,
                     prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The backbone's tensors in a loaded file: under ``prefix``, else a whole model's ``backbone.*`` keys, else
    all of them (``preferred_keys``: see :func:`~mmlightvit.utils.checkpoint.extract_state_dict`)."""
    state = extract_state_dict(checkpoint, source=source, preferred_keys=preferred_keys)
    return strip_prefix(state, prefix) if prefix else backbone_state(state)


def _summarise(keys: List[str], limit: int = 12) -> str:
    shown = ', '.join(keys[:limit])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > limit else shown


def state_dict_mismatches(model: nn.Module, state: Dict[str, torch.Tensor],
                          optional: Sequence[str] = ()) -> Dict[str, List[str]]:
    """The keys of ``state`` that do not fit ``model``: {'missing keys': [...], 'unexpected keys': [...],
    'wrong shapes': ['key (checkpoint (..), model (..))', ...]}, empty kinds left out. Keys in ``optional`` may be
    missing."""
    expected = model.state_dict()
    optional = set(optional)
    mismatches = {
        'missing keys': [k for k in expected if k not in state and k not in optional],
        'unexpected keys': [k for k in state if k not in expected],
        'wrong shapes': [f'{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})'
                         for k in expected if k in state and state[k].shape != expected[k].shape],
    }
    return {kind: keys for kind, keys in mismatches.items() if keys}


def format_mismatches(mismatches: Dict[str, List[str]]) -> str:
    """'missing keys: a, b; wrong shapes: ...' for the result of :func:`state_dict_mismatches`."""
    return '; '.join(f'{kind}: {_summarise(keys)}' for kind, keys in mismatches.items())


# ----------------------------------------------------------------------------------------------------------------
# Released whole models


def _convert_released(model: nn.Module, state: Dict[str, torch.Tensor]) -> Tuple[Dict, Optional[str]]:
    """``(state, layout)``: a released detector's, segmentor's or classifier's tensors on ``model``'s keys and the
    layout they came in; ``layout`` None: not a release in a foreign layout (``state`` returned as it is).

    The FasterViT DINO release is an IDEA-Research DINO training checkpoint (:mod:`.dino_release`). The other
    releases (RepViT's and TransNeXt's mmdet 2.x / mmseg 0.x and 3.x / 1.x files) keep the heads under the names
    mmdet 3.3 / mmseg 1.2 use, but the backbone in the official module tree: the ``backbone.*`` keys go through
    the backbone's ``convert_checkpoint``. Released ImageNet classifiers (no ``backbone.`` prefix) go to an
    mmpretrain ``ImageClassifier``: the backbone keys through ``convert_checkpoint``, the classifier keys through
    the family's ``convert_classifier_head``.
    """
    backbone = getattr(model, 'backbone', None)
    if not callable(getattr(backbone, 'convert_checkpoint', None)):
        return state, None
    if is_idea_dino_state(state):
        return convert_idea_dino_state(state, model), (
            'IDEA-Research DINO training-checkpoint layout (80 of its 91 category-id classes, its shared decoder '
            'heads copied into every layer)')
    if holds_whole_model(state):
        source = backbone_state(state)
        result = OrderedDict((k, v) for k, v in state.items() if not k.startswith('backbone.'))
    elif hasattr(model, 'head') and hasattr(backbone, 'convert_classifier_head'):
        source = state
        result = OrderedDict(('head.' + k, v) for k, v in backbone.convert_classifier_head(state).items())
    else:
        return state, None
    layout = backbone.detect_layout(source)
    if layout == OWN_LAYOUT:
        return state, None
    result.update(('backbone.' + k, v) for k, v in backbone.convert_checkpoint(source).items())
    return result, f'official {type(backbone).__name__} layout'


# ----------------------------------------------------------------------------------------------------------------
# The resolver


@dataclass
class ResolvedWeights:
    """A checkpoint's tensors on the keys of ``target`` (the model, or its backbone)."""
    state: 'OrderedDict[str, torch.Tensor]'
    target: nn.Module
    part: str  # 'model' or 'backbone'
    layout: Optional[str] = None  # the foreign layout the tensors were converted from; None: ours
    optional: Tuple[str, ...] = ()  # keys of target the layout cannot hold (they keep their initialisation)
    mismatches: Dict[str, List[str]] = field(default_factory=dict)  # see state_dict_mismatches

    def load(self) -> None:
        """Load the tensors into ``target`` (the optional keys it lacks keep their initialisation)."""
        self.target.load_state_dict(self.state, strict=not self.optional)


def _backbone_weights(backbone: nn.Module, state: Dict[str, torch.Tensor], part: str) -> ResolvedWeights:
    """A backbone's own keys, or any layout its family converts (``convert_checkpoint``)."""
    if not callable(getattr(backbone, 'convert_checkpoint', None)):  # not one of ours: its own keys only
        return ResolvedWeights(OrderedDict(state), backbone, part)
    layout = backbone.detect_layout(state)
    state = backbone.convert_checkpoint(state)
    if layout == OWN_LAYOUT:
        return ResolvedWeights(state, backbone, part)
    return ResolvedWeights(state, backbone, part, layout, tuple(backbone.optional_keys(layout)))


def resolve_state(model: nn.Module, checkpoint: dict, source: str, part: str = 'model',
                  prefix: Optional[str] = None, strict: bool = True) -> ResolvedWeights:
    """The tensors of ``checkpoint`` (a loaded file) for ``model``: extracted, converted and checked.

    Args:
        model: a detector / segmentor / classifier (it has ``.backbone``) or a backbone.
        source: names the file in errors (``"Checkpoint 'x.pth'"``).
        part: ``'model'``: the whole model (a file without ``backbone.*`` keys is an error for a model with a
            backbone: the neck and heads would stay random); ``'backbone'``: the model's backbone (a whole model's
            ``backbone.*`` keys, or the backbone alone); ``'any'``: the whole model if the file holds one, else
            the backbone.
        prefix: for a backbone, the key prefix to take (default: ``backbone.`` when the file has such keys).
        strict: raise :class:`CheckpointError` on any mismatch; False leaves them in ``.mismatches``.
    """
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    backbone = getattr(model, 'backbone', None)
    family = backbone if backbone is not None else model
    preferred_keys = getattr(family, 'checkpoint_keys', None)
    if backbone is None or part == 'backbone':
        state = backbone_tensors(checkpoint, source, preferred_keys, prefix)
        weights = _backbone_weights(family, state, 'backbone' if backbone is not None else 'model')
    else:
        state = extract_state_dict(checkpoint, source=source, preferred_keys=preferred_keys)
        converted, layout = _convert_released(model, state)
        whole = holds_whole_model(state) or layout is not None
        if whole or part == 'model':
            if not whole and strict:
                raise CheckpointError(
                    f'{source} holds backbone weights only (no backbone.* keys): it is not a whole detector / '
                    'segmentor / classifier (what tools/train.py writes or a released model), so the neck and '
                    'heads would stay random.')
            weights = ResolvedWeights(OrderedDict(converted), model, 'model', layout)
        else:
            weights = _backbone_weights(backbone, state, 'backbone')
    weights.mismatches = state_dict_mismatches(weights.target, weights.state, weights.optional)
    if strict and weights.mismatches:
        raise CheckpointError(f'{source} does not match {type(weights.target).__name__}: '
                              f'{format_mismatches(weights.mismatches)}.')
    return weights


def load_model_weights(model: nn.Module, checkpoint: dict, source: str, part: str = 'model',
                       prefix: Optional[str] = None, fuse: bool = False) -> nn.Module:
    """Load ``checkpoint`` strictly into ``model`` (see :func:`resolve_state` for ``part`` and ``prefix``) and
    return it. A fused checkpoint (``meta.fused``, ``tools/model_converters/fuse_checkpoint.py``) is loaded into
    the folded model; ``fuse`` folds the re-parameterisable branches afterwards (same outputs in eval mode)."""
    if (checkpoint.get('meta') or {}).get('fused'):
        model = fuse_model(model.eval())
    resolve_state(model, checkpoint, source, part, prefix).load()
    return fuse_model(model.eval()) if fuse else model
