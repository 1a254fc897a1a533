"""The shared body of the ``tools/model_converters/<family>_to_mmlightvit.py`` command-line tools.

Every converter does the same thing: read a checkpoint safely, unwrap it, keep a detector's ``backbone.*`` keys,
find the variant from the tensor shapes, check it against ``--arch``, convert with the backbone's own
``convert_checkpoint``, check the result strictly and save ``{'state_dict', 'meta'}``. Only the family-specific
pieces (layout detection, arch inference and matching, which source keys are classifier-side) are passed in, so
a tool stays a thin CLI and the conversion itself lives in one place.
"""
import argparse
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence, Type

import torch

from .checkpoint import check_state_dict, extract_state_dict, load_checkpoint_file, strip_prefix

# Buffers, not parameters: left out of the parameter count printed in the summary.
_BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def converter_arg_parser(description: str, src_help: str, arch_example: str) -> argparse.ArgumentParser:
    """The command line every converter tool accepts: ``src dst [--arch ARCH] [--prefix PREFIX]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help='output file')
    parser.add_argument('--arch', default=None,
                        help=f'variant, e.g. {arch_example}; inferred from the weights by default')
    parser.add_argument('--prefix', default='', help="key prefix in the output, e.g. 'backbone.' (default: none)")
    return parser


def _describe(found: dict) -> str:
    return ', '.join(f'{key} {value}' for key, value in found.items())


def _plain(arch):
    # meta must hold plain lists (not tuples) for a custom size, so that it reads back the same from any loader.
    if isinstance(arch, str):
        return arch
    return {key: list(value) if isinstance(value, tuple) else value for key, value in arch.items()}


def convert_backbone_checkpoint(backbone_cls: Type,
                                src: str,
                                dst: str,
                                arch: Optional[str] = None,
                                prefix: str = '',
                                *,
                                detect_layout: Callable[[Dict[str, torch.Tensor]], str],
                                infer_arch: Callable[[Dict[str, torch.Tensor]], dict],
                                arch_matches: Callable[[dict, dict], bool],
                                head_prefixes: Sequence[str],
                                converter_name: str,
                                custom_arch: Optional[Callable[[dict], Optional[dict]]] = None,
                                also_dropped: Optional[Callable[[str], bool]] = None,
                                dropped_what: str = 'classifier') -> dict:
    """Convert the checkpoint ``src`` to ``backbone_cls``'s layout, check it strictly and save it to ``dst``.

    Args:
        backbone_cls: a ``LightBackbone`` subclass (its ``arch_settings``, ``resolve_arch``, ``checkpoint_keys``
            and ``convert_checkpoint`` are used).
        arch: the variant asked for on the command line; an error unless the weights are of that variant.
        prefix: key prefix of the saved weights (e.g. ``'backbone.'``).
        detect_layout: ``state -> layout name`` (``'official'``, ``'timm'``, ..., ``'mmlightvit'``).
        infer_arch: ``state -> dict`` of the size read from the shapes, for a state dict in any layout.
        arch_matches: ``(arch_settings entry, infer_arch result) -> bool``.
        head_prefixes: source keys dropped as the classifier (only reported: ``convert_checkpoint`` drops them).
        converter_name: the tool's path, recorded in ``meta``.
        custom_arch: ``infer_arch result -> arch dict`` for a size that is no named variant, or None where it
            cannot be built from the weights alone; None (the default): custom sizes are an error.
        also_dropped: other source keys that are dropped (reported with the classifier).
        dropped_what: what the dropped keys are, for the printed summary.

    Returns:
        ``dict(arch, layout, num_keys, dropped, dst)``: ``arch`` as saved in ``meta``, ``dropped`` the source
        keys left out, in file order.
    """
    state = extract_state_dict(load_checkpoint_file(src), source=src, preferred_keys=backbone_cls.checkpoint_keys)
    if any(k.startswith('backbone.') for k in state):  # a whole detector / segmentor / classifier
        state = strip_prefix(state, 'backbone.')
    layout = detect_layout(state)
    found = infer_arch(state)
    name = next((n for n, settings in backbone_cls.arch_settings.items() if arch_matches(settings, found)), None)
    if arch is not None:
        # resolve_arch accepts aliases ('xxs', 'faster_vit_0'); the canonical name is what is built and saved.
        wanted = backbone_cls.resolve_arch(arch)
        if not arch_matches(wanted, found):
            raise SystemExit(f'{src} holds {backbone_cls.__name__} weights with {_describe(found)} '
                             f'({name or "custom"}), not --arch {arch}.')
        name = next(n for n, settings in backbone_cls.arch_settings.items() if settings == wanted)
    model_arch = name
    if model_arch is None:
        model_arch = custom_arch(found) if custom_arch is not None else None
        if model_arch is None:
            raise SystemExit(f'{src}: no {backbone_cls.__name__} variant has {_describe(found)}; known: '
                             f'{", ".join(backbone_cls.arch_settings)}.')

    model = backbone_cls(arch=model_arch)
    converted = model.convert_checkpoint(state)
    check_state_dict(model, converted, source=f'Converted {src!r}')
    model.load_state_dict(converted, strict=True)

    head_prefixes = tuple(head_prefixes)
    dropped = [k for k in state if k.startswith(head_prefixes) or (also_dropped is not None and also_dropped(k))]
    # Cloned and contiguous: converted tensors may be views sharing storage with the dropped ones, which
    # torch.save would otherwise write out too.
    out_state = OrderedDict((prefix + k, v.detach().clone().contiguous()) for k, v in converted.items())
    meta = dict(arch=_plain(model_arch), source=osp.basename(src), source_layout=layout, prefix=prefix,
                converter=converter_name)
    torch.save({'state_dict': out_state, 'meta': meta}, dst)

    num_params = sum(v.numel() for k, v in converted.items() if not k.endswith(_BN_STATS))
    print(f'{src} ({layout} layout) -> {dst}\n'
          f'  arch: {meta["arch"]}; {len(out_state)} tensors, {num_params / 1e6:.2f}M parameters; '
          f'dropped {len(dropped)} {dropped_what} tensors; key prefix: {prefix or "(none)"}; '
          f'loads strictly into {backbone_cls.__name__}.')
    return dict(arch=meta['arch'], layout=layout, num_keys=len(out_state), dropped=dropped, dst=dst)
