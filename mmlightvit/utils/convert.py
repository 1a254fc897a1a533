"""Backbone checkpoint conversion for every family (``tools/model_converters/to_mmlightvit.py``).

Read a checkpoint safely, unwrap it, keep a detector's ``backbone.*`` keys, find the family and variant from the
tensor shapes, check them against ``--family`` / ``--arch``, convert with the backbone's own ``convert_checkpoint``,
check the result strictly and save ``{'state_dict', 'meta'}``. What differs between families (layouts, arch
inference, classifier keys) is declared by each backbone class (see :class:`~mmlightvit.models.layers.LightBackbone`).
"""
import os.path as osp
from collections import OrderedDict
from functools import partial
from typing import Dict, Optional, Sequence, Type

import torch

from .checkpoint import backbone_state, check_state_dict, extract_state_dict, load_checkpoint_file
from .files import replace_file_atomically

# Buffers, not parameters: left out of the parameter count printed in the summary.
_BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def _describe(found: dict) -> str:
    return ', '.join(f'{key} {value}' for key, value in found.items())


def _plain(arch):
    # meta must hold plain lists (not tuples) for a custom size, so that it reads back the same from any loader.
    if isinstance(arch, str):
        return arch
    return {key: list(value) if isinstance(value, tuple) else value for key, value in arch.items()}


def read_backbone_state(src: str, backbone_cls: Optional[Type] = None) -> 'OrderedDict[str, torch.Tensor]':
    """The backbone tensors of a checkpoint file (a detector's ``backbone.*`` keys without the prefix)."""
    preferred = backbone_cls.checkpoint_keys if backbone_cls is not None else None
    return backbone_state(extract_state_dict(load_checkpoint_file(src), source=src, preferred_keys=preferred))


def _reads(cls: Type, state: Dict[str, torch.Tensor]) -> bool:
    """Whether ``cls`` reads ``state`` as one of its variants (or a custom size)."""
    try:
        found = cls.infer_arch(state)
    except (KeyError, ValueError, IndexError, NotImplementedError):
        return False
    return bool(found) and (cls.matching_arch(found) is not None or cls.custom_arch(found) is not None)


def find_family(state: Dict[str, torch.Tensor], families: Sequence[Type], src: str,
                named: Optional[Type] = None) -> Type:
    """The one family in ``families`` that reads ``state`` as one of its variants (or a custom size); with
    ``named`` (``--family``), that family, after checking that it reads the weights."""
    readers = [cls for cls in families if _reads(cls, state)]
    if named is not None:
        if named in readers:
            return named
        found = ', '.join(cls.__name__ for cls in readers) or 'none of ' + ', '.join(c.__name__ for c in families)
        raise SystemExit(f'{src}: --family {named.__name__} does not read these weights (the tensor names and '
                         f'shapes fit {found}).')
    if len(readers) != 1:
        names = ', '.join(cls.__name__ for cls in families)
        what = 'no family' if not readers else 'several families (' + ', '.join(c.__name__ for c in readers) + ')'
        raise SystemExit(f'{src}: {what} of {names} read these weights; name it with --family.')
    return readers[0]


def convert_backbone_checkpoint(backbone_cls: Type, src: str, dst: str, arch: Optional[str] = None,
                                prefix: str = '', converter_name: str = 'tools/model_converters/to_mmlightvit.py'
                                ) -> dict:
    """Convert the checkpoint ``src`` to ``backbone_cls``'s layout, check it strictly and save it to ``dst``.

    Args:
        backbone_cls: a ``LightBackbone`` subclass; its checkpoint declarations (``detect_layout``,
            ``infer_arch``, ``matching_arch``, ``custom_arch``, ``is_dropped_on_conversion``) and its own
            ``convert_checkpoint`` do the family-specific work.
        arch: the variant asked for on the command line; an error unless the weights are of that variant.
        prefix: key prefix of the saved weights (e.g. ``'backbone.'``).

    Returns:
        ``dict(family, arch, layout, num_keys, dropped, dst)``: ``arch`` as saved in ``meta``, ``dropped`` the
        source keys left out, in file order.
    """
    state = read_backbone_state(src, backbone_cls)
    layout = backbone_cls.detect_layout(state)
    found = backbone_cls.infer_arch(state)
    name = backbone_cls.matching_arch(found)
    if arch is not None:
        # resolve_arch accepts aliases ('xxs', 'faster_vit_0'); the canonical name is what is built and saved.
        wanted = backbone_cls.resolve_arch(arch)
        if not backbone_cls.arch_matches(wanted, found):
            raise SystemExit(f'{src} holds {backbone_cls.__name__} weights with {_describe(found)} '
                             f'({name or "custom"}), not --arch {arch}.')
        name = next(n for n, settings in backbone_cls.arch_settings.items() if settings == wanted)
    model_arch = name if name is not None else backbone_cls.custom_arch(found)
    if model_arch is None:
        raise SystemExit(f'{src}: no {backbone_cls.__name__} variant has {_describe(found)}; known: '
                         f'{", ".join(backbone_cls.arch_settings)}.')

    model = backbone_cls(arch=model_arch)
    converted = model.convert_checkpoint(state)
    check_state_dict(model, converted, source=f'Converted {src!r}')
    model.load_state_dict(converted, strict=True)

    dropped = [k for k in state if backbone_cls.is_dropped_on_conversion(k)]
    # Cloned and contiguous: converted tensors may be views sharing storage with the dropped ones, which
    # torch.save would otherwise write out too.
    out_state = OrderedDict((prefix + k, v.detach().clone().contiguous()) for k, v in converted.items())
    meta = dict(family=backbone_cls.__name__, arch=_plain(model_arch), source=osp.basename(src),
                source_layout=layout, prefix=prefix, converter=converter_name)
    replace_file_atomically(dst, partial(torch.save, {'state_dict': out_state, 'meta': meta}))

    num_params = sum(v.numel() for k, v in converted.items() if not k.endswith(_BN_STATS))
    print(f'{src} ({layout} layout) -> {dst}\n'
          f'  {backbone_cls.__name__} arch: {meta["arch"]}; {len(out_state)} tensors, {num_params / 1e6:.2f}M '
          f'parameters; dropped {len(dropped)} classifier-side tensors; key prefix: {prefix or "(none)"}; loads '
          f'strictly into {backbone_cls.__name__}.')
    return dict(family=backbone_cls.__name__, arch=meta['arch'], layout=layout, num_keys=len(out_state),
                dropped=dropped, dst=dst)
