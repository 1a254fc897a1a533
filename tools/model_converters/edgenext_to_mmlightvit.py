"""Convert an official EdgeNeXt release, a timm or an mmpretrain EdgeNeXt checkpoint to mmlightvit's layout.

    python tools/model_converters/edgenext_to_mmlightvit.py edgenext_small.pth edgenext_small_mmlightvit.pth
    python tools/model_converters/edgenext_to_mmlightvit.py edgenext_xx_small_bn_hs.pth out.pth --prefix backbone.

The file is read safely (weights only); official training checkpoints hold both ``model`` and ``model_ema`` and
the EMA weights (those the published accuracies come from) are taken, as ``init_cfg`` loading does. The arch is
inferred from the tensor shapes unless ``--arch`` is given, the converted weights are checked by loading them
strictly into ``EdgeNeXt(arch)``, and the result is saved as ``{'state_dict': ..., 'meta': ...}`` (bare backbone
keys unless ``--prefix`` is given). Converting is optional: ``init_cfg=dict(type='Pretrained', checkpoint=...)``
accepts the original files directly.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Optional, Sequence

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))  # run from a source checkout

from mmlightvit.models.backbones.edgenext import (EdgeNeXt, detect_layout, infer_edgenext_arch,  # noqa: E402
                                                  mmpretrain_to_mmlightvit, official_to_mmlightvit)
from mmlightvit.utils import check_state_dict, extract_state_dict, load_checkpoint_file  # noqa: E402


def arch_name(arch: dict) -> Optional[str]:
    """The variant name whose widths, depths and norm type match ``arch``, if any."""
    for name, settings in EdgeNeXt.arch_settings.items():
        if (tuple(settings['widths']), tuple(settings['depths']), settings.get('bn_hs', False)) == (
                arch['widths'], arch['depths'], arch['bn_hs']):
            return name
    return None


def to_our_keys(state, layout: str):
    if layout == 'official':
        return official_to_mmlightvit(state)
    if layout == 'mmpretrain':
        return mmpretrain_to_mmlightvit(state)
    return state


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official (downsample_layers.*), timm (stem.*, stages.*.blocks.*) or '
                        'mmpretrain EdgeNeXt checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--arch', default=None,
                        help="variant, e.g. 'small' or 'small-bn-hs'; inferred from the weights by default")
    parser.add_argument('--prefix', default='', help="key prefix in the output, e.g. 'backbone.' (default: none)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    state = extract_state_dict(load_checkpoint_file(args.src), source=args.src,
                               preferred_keys=EdgeNeXt.checkpoint_keys)
    if any(k.startswith('backbone.') for k in state):
        state = OrderedDict((k[len('backbone.'):], v) for k, v in state.items() if k.startswith('backbone.'))
    layout = detect_layout(state)
    inferred = infer_edgenext_arch(to_our_keys(state, layout))
    arch = arch_name(inferred)
    if arch is None:  # a custom size: build it from the shapes
        arch = {k: inferred[k] for k in ('widths', 'depths', 'bn_hs', 'num_heads', 'kernel_sizes') if k in inferred}
        if 'num_heads' not in arch:
            raise SystemExit(f'{args.src}: custom EdgeNeXt size without SDTA blocks; pass --arch.')
    if args.arch is not None:
        wanted = EdgeNeXt.resolve_arch(args.arch)
        if (tuple(wanted['widths']), tuple(wanted['depths']), wanted.get('bn_hs', False)) != (
                inferred['widths'], inferred['depths'], inferred['bn_hs']):
            raise SystemExit(f'{args.src} holds an EdgeNeXt with widths {inferred["widths"]}, depths '
                             f'{inferred["depths"]} and bn_hs={inferred["bn_hs"]} '
                             f'({arch if isinstance(arch, str) else "custom"}), not --arch {args.arch}.')
        arch = args.arch

    model = EdgeNeXt(arch=arch)
    converted = model.convert_checkpoint(state)
    check_state_dict(model, converted, source=f'Converted {args.src!r}')
    model.load_state_dict(converted, strict=True)

    dropped = sorted(set(to_our_keys(state, layout)) - set(converted))
    out_state = OrderedDict((args.prefix + k, v.detach().clone().contiguous()) for k, v in converted.items())
    meta = dict(
        arch=arch if isinstance(arch, str) else {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()},
        source=osp.basename(args.src),
        source_layout=layout,
        prefix=args.prefix,
        converter='tools/model_converters/edgenext_to_mmlightvit.py')
    torch.save({'state_dict': out_state, 'meta': meta}, args.dst)

    num_params = sum(p.numel() for p in model.parameters())
    print(f'{args.src} ({layout} layout) -> {args.dst}\n'
          f'  arch: {meta["arch"]}; {len(out_state)} tensors, {num_params / 1e6:.2f}M parameters; '
          f'dropped {len(dropped)} classifier tensors; key prefix: {args.prefix or "(none)"}; '
          f'loads strictly into EdgeNeXt.')
    return dict(arch=meta['arch'], layout=layout, num_keys=len(out_state), dropped=dropped, dst=args.dst)


if __name__ == '__main__':
    main()
