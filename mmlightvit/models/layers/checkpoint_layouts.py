"""What a backbone family declares about checkpoints: the layouts it reads, how to read its variant from tensor
shapes, which keys are classifier-side, and the one conversion that every family shares.

:class:`~mmlightvit.models.layers.LightBackbone` inherits it; a family overrides :meth:`detect_layout`,
:meth:`infer_arch` and its one conversion hook, :meth:`to_own_layout` (and :meth:`to_official_layout` back);
:meth:`CheckpointLayouts.convert_checkpoint` does the rest the same way for every family. The weights resolver
(:mod:`mmlightvit.models.weights`) and ``tools/model_converters/to_mmlightvit.py`` read these declarations.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch

from mmlightvit.utils.checkpoint import CheckpointError

OWN_LAYOUT = 'mmlightvit'  # the layout of this project's state dicts


def describe_arch(found: dict) -> str:
    """``widths (..), depths (..), bn_hs=False`` for a result of ``infer_arch``."""
    return ', '.join(f'{k} {v}' if isinstance(v, tuple) else f'{k}={v}' for k, v in found.items())


class CheckpointLayouts:
    """Checkpoint declarations of a backbone family (a mixin of ``nn.Module`` subclasses with ``arch_settings``)."""

    #: wrapper keys of a checkpoint file tried first when loading (``None``: the default order of
    #: :func:`~mmlightvit.utils.checkpoint.extract_state_dict`).
    checkpoint_keys: Optional[Sequence[str]] = None
    #: source keys that belong to the classifier (dropped by :meth:`convert_checkpoint`).
    head_prefixes: Sequence[str] = ('head.', )
    #: released classifiers' head keys (official and timm layouts) -> the keys of the project's ImageNet head
    #: (``mmlightvit.LightClsHead``: ``pre_norm``, ``norm``, ``classifier.{norm,fc}``, ``classifier_dist.*``),
    #: by key prefix; the longest matching prefix wins.
    classifier_key_map: Dict[str, str] = {'head.': 'classifier.fc.'}
    #: the settings that fix every tensor shape: :meth:`infer_arch` reads them from a checkpoint, and a variant
    #: matches a checkpoint when :meth:`arch_signature` of its settings equals them.
    arch_fields: Sequence[str] = ('widths', 'depths')
    #: whether the official layout names the optional output norms as we do (``norm{i}``), so that
    #: :meth:`to_official_state_dict` keeps them; in any case a foreign file need not have them
    #: (:meth:`optional_keys`).
    official_out_norms: bool = False

    @classmethod
    def detect_layout(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        """The layout of a backbone state dict: ``'mmlightvit'`` or one of the family's foreign layout names."""
        return OWN_LAYOUT

    def to_own_layout(self, state_dict: Dict[str, torch.Tensor], layout: str) -> 'OrderedDict[str, torch.Tensor]':
        """The family's one conversion hook: a state dict in the foreign ``layout`` (classifier-side keys already
        left out) on this model's keys. Keys it does not know keep their names, so the strict check names them."""
        raise NotImplementedError(f'{type(self).__name__} reads no {layout!r} layout.')

    def to_official_layout(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
        """The reverse of :meth:`to_own_layout` for the official layout (our optional output norms already left
        out): what :meth:`to_official_state_dict` writes."""
        raise NotImplementedError(f'{type(self).__name__} writes no official layout.')

    @classmethod
    def infer_arch(cls, state_dict: Dict[str, torch.Tensor]) -> dict:
        """The ``arch_fields`` of a backbone state dict in any layout the family reads (plus any further settings
        the shapes reveal, for :meth:`custom_arch`). Raises ``KeyError`` / ``ValueError`` when ``state_dict`` is not
        a complete backbone."""
        raise NotImplementedError(f'{cls.__name__} cannot read its variant from a checkpoint.')

    @classmethod
    def arch_signature(cls, settings: dict) -> dict:
        """What :meth:`infer_arch` would read from a checkpoint of the variant with ``settings``."""
        return {field: tuple(settings[field]) if isinstance(settings[field], (list, tuple)) else settings[field]
                for field in cls.arch_fields}

    @classmethod
    def custom_arch(cls, found: dict) -> Optional[dict]:
        """An arch dict for a checkpoint of no named variant, or None where the shapes do not tell enough."""
        return None

    @classmethod
    def is_dropped_on_conversion(cls, key: str, layout: str) -> bool:
        """Whether a source key of ``layout`` is left out by :meth:`convert_checkpoint` (the classifier-side keys
        of a foreign layout by default; our own layout has none)."""
        return layout != OWN_LAYOUT and key.startswith(tuple(cls.head_prefixes))

    @classmethod
    def arch_matches(cls, settings: dict, found: dict) -> bool:
        """Whether weights with ``found`` (the result of :meth:`infer_arch`) are of the variant with ``settings``."""
        return cls.arch_signature(settings) == {field: found.get(field) for field in cls.arch_fields}

    @classmethod
    def matching_arch(cls, found: dict) -> Optional[str]:
        """The named variant whose settings give ``found``, if any."""
        return next((name for name, settings in cls.arch_settings.items() if cls.arch_matches(settings, found)),
                    None)

    @classmethod
    def convert_classifier_head(cls, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The classifier head of a released ImageNet model on ``LightClsHead``'s keys (without ``head.``).

        Only the classifier-side source keys (``head_prefixes``) are read; those that no prefix of
        ``classifier_key_map`` covers are returned under their own names, so that a strict check reports them.
        """
        prefixes = sorted(cls.classifier_key_map, key=len, reverse=True)
        head = OrderedDict()
        for key, value in state_dict.items():
            if not key.startswith(tuple(cls.head_prefixes)):
                continue
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            head[key if prefix is None else cls.classifier_key_map[prefix] + key[len(prefix):]] = value
        return head

    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
        """A backbone state dict in any layout the family reads, on this model's keys.

        The layout is detected (:meth:`detect_layout`), the source keys it does not keep are left out
        (:meth:`is_dropped_on_conversion`); in a foreign layout, the variant the tensors are of must be this
        model's (:meth:`check_arch`) and the family's :meth:`to_own_layout` maps them. The keys a foreign layout
        cannot hold (:meth:`optional_keys`) are not added: the loader leaves them as initialised.
        """
        layout = self.detect_layout(state_dict)
        state = OrderedDict((k, v) for k, v in state_dict.items() if not self.is_dropped_on_conversion(k, layout))
        if layout == OWN_LAYOUT:
            return state
        self.check_arch(state, layout)
        return self.to_own_layout(state, layout)

    def check_arch(self, state_dict: Dict[str, torch.Tensor], layout: str) -> None:
        """Raise :class:`CheckpointError` when ``state_dict`` (in ``layout``) holds another variant than this
        model; an incomplete backbone passes, for the strict check to name its keys."""
        try:
            found = self.infer_arch(state_dict)
        except (KeyError, ValueError, IndexError):
            return
        own = self.infer_arch(self.state_dict())
        found, own = ({f: d.get(f) for f in self.arch_fields} for d in (found, own))
        if found != own:
            name = type(self).__name__
            raise CheckpointError(f'The {layout} {name} checkpoint has {describe_arch(found)}, but this {name} has '
                                  f'{describe_arch(own)} (wrong arch?).')

    def optional_keys(self, layout: str) -> List[str]:
        """The keys of this model that a checkpoint in ``layout`` need not hold: the optional output norms
        (``out_norm_cfg``), which released backbones lack (a file that has them loads them)."""
        if layout == OWN_LAYOUT:
            return []
        return [key for key in self.state_dict() if re.match(r'norm\d\.', key)]

    def to_official_state_dict(self, state_dict: Optional[Dict[str, torch.Tensor]] = None) -> 'OrderedDict':
        """This model's weights (or ``state_dict`` in our layout) in the official release layout, without the
        classifier (and without the optional output norms unless ``official_out_norms``)."""
        state = self.state_dict() if state_dict is None else state_dict
        if not self.official_out_norms:
            state = OrderedDict((k, v) for k, v in state.items() if not re.match(r'norm\d\.', k))
        return self.to_official_layout(state)
