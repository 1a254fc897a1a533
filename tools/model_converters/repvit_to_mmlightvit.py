"""Convert an official RepViT release or a timm RepViT checkpoint to mmlightvit's ``RepViT`` layout.

    python tools/model_converters/repvit_to_mmlightvit.py repvit_m1_1_distill_450e.pth repvit_m1_1_mmlightvit.pth
    python tools/model_converters/repvit_to_mmlightvit.py timm_repvit_m2_3.pth out.pth --prefix backbone.

The file is read safely (weights only), the arch is inferred from the tensor shapes unless ``--arch`` is given,
the converted weights are checked by loading them strictly into ``RepViT(arch)``, and the result is saved as
``{'state_dict': ..., 'meta': ...}`` (bare backbone keys unless ``--prefix`` is given). Converting is optional:
``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts the original files directly.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Optional, Sequence

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))  # run from a source checkout

from mmlightvit.models.backbones.repvit import HEAD_PREFIXES, RepViT, infer_repvit_arch  # noqa: E402
from mmlightvit.utils import check_state_dict, extract_state_dict, load_checkpoint_file  # noqa: E402


def detect_layout(state) -> str:
    if any(k.startswith('features.') for k in state):
        return 'official'
    if any(k.startswith('head.') for k in state):
        return 'timm'
    return 'mmlightvit'


def arch_name(arch: dict) -> Optional[str]:
    for name, settings in RepViT.arch_settings.items():
        if tuple(settings['widths']) == tuple(arch['widths']) and tuple(settings['depths']) == tuple(arch['depths']):
            return name
    return None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official (features.*) or timm (stem.*, stages.*) RepViT checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--arch', default=None, help="variant, e.g. 'm1.1'; inferred from the weights by default")
    parser.add_argument('--prefix', default='', help="key prefix in the output, e.g. 'backbone.' (default: none)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    state = extract_state_dict(load_checkpoint_file(args.src), source=args.src)
    if any(k.startswith('backbone.') for k in state):
        state = OrderedDict((k[len('backbone.'):], v) for k, v in state.items() if k.startswith('backbone.'))
    layout = detect_layout(state)
    inferred = infer_repvit_arch(state)
    arch = arch_name(inferred) or inferred
    if args.arch is not None:
        wanted = RepViT.resolve_arch(args.arch)
        if (tuple(wanted['widths']), tuple(wanted['depths'])) != (inferred['widths'], inferred['depths']):
            raise SystemExit(f'{args.src} holds a RepViT with widths {inferred["widths"]} and depths '
                             f'{inferred["depths"]} ({arch if isinstance(arch, str) else "custom"}), '
                             f'not --arch {args.arch}.')
        arch = args.arch

    model = RepViT(arch=arch)
    converted = model.convert_checkpoint(state)
    check_state_dict(model, converted, source=f'Converted {args.src!r}')
    model.load_state_dict(converted, strict=True)

    dropped = [k for k in state if k.startswith(HEAD_PREFIXES)]
    out_state = OrderedDict((args.prefix + k, v.detach().clone().contiguous()) for k, v in converted.items())
    meta = dict(
        arch=arch if isinstance(arch, str) else dict(widths=list(arch['widths']), depths=list(arch['depths'])),
        source=osp.basename(args.src),
        source_layout=layout,
        prefix=args.prefix,
        converter='tools/model_converters/repvit_to_mmlightvit.py')
    torch.save({'state_dict': out_state, 'meta': meta}, args.dst)

    num_params = sum(v.numel() for k, v in converted.items() if not k.endswith(('running_mean', 'running_var',
                                                                                'num_batches_tracked')))
    print(f'{args.src} ({layout} layout) -> {args.dst}\n'
          f'  arch: {meta["arch"]}; {len(out_state)} tensors, {num_params / 1e6:.2f}M parameters; '
          f'dropped {len(dropped)} classifier tensors; key prefix: {args.prefix or "(none)"}; '
          f'loads strictly into RepViT.')
    return dict(arch=meta['arch'], layout=layout, num_keys=len(out_state), dropped=dropped, dst=args.dst)


if __name__ == '__main__':
    main()
