"""Convert an official FasterViT release (``fastervit_*_224_1k.pth.tar``) to mmlightvit's ``FasterViT`` layout.

    python tools/model_converters/fastervit_to_mmlightvit.py fastervit_0_224_1k.pth.tar fastervit_0_mmlightvit.pth
    python tools/model_converters/fastervit_to_mmlightvit.py fastervit_3_224_1k.pth.tar out.pth --prefix backbone.

The file is read safely (weights only), the variant is inferred from the tensor shapes unless ``--arch`` is given,
the classifier (``head.*``, final ``norm.*``) and the size-dependent buffers (``relative_bias``,
``relative_coords_table``, ``relative_position_index``) are dropped, the result is checked by loading it strictly
into ``FasterViT(arch)`` and saved as ``{'state_dict': ..., 'meta': ...}``. Converting is optional:
``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts the official files directly.
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Optional, Sequence

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))  # run from a source checkout

from mmlightvit.models.backbones.fastervit import (HEAD_PREFIXES, FasterViT, detect_layout,  # noqa: E402
                                                   is_size_buffer, official_to_mmlightvit)
from mmlightvit.utils import check_state_dict, extract_state_dict, load_checkpoint_file  # noqa: E402


def infer_fastervit_arch(state) -> dict:
    """``dim``, ``in_dim``, ``depths``, ``num_heads`` (transformer stages) and ``layer_scale`` of a checkpoint in
    either layout."""
    if detect_layout(state) == 'official':
        state = official_to_mmlightvit(state)
    depths = []
    for i in range(4):
        blocks = {int(m.group(1)) for k in state for m in [re.match(rf'stages\.{i}\.blocks\.(\d+)\.', k)] if m}
        depths.append(max(blocks) + 1 if blocks else 0)
    heads = []
    for i in (2, 3):
        key = f'stages.{i}.blocks.0.attn.pos_emb_funct.cpb_mlp.2.weight'
        heads.append(state[key].shape[0] if key in state else None)
    return dict(dim=state['stem.3.weight'].shape[0], in_dim=state['stem.0.weight'].shape[0], depths=tuple(depths),
                transformer_heads=tuple(heads), layer_scale=any(k.endswith('.gamma3') for k in state))


def arch_name(found: dict) -> Optional[str]:
    for name, settings in FasterViT.arch_settings.items():
        if (settings['dim'], settings['in_dim'], tuple(settings['depths']), tuple(settings['num_heads'][2:]),
                settings.get('layer_scale') is not None) == (found['dim'], found['in_dim'], found['depths'],
                                                            found['transformer_heads'], found['layer_scale']):
            return name
    return None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official FasterViT checkpoint (patch_embed.*, levels.*) or one in our layout')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--arch', default=None, help="variant, e.g. '0' or 'faster_vit_3'; inferred by default")
    parser.add_argument('--prefix', default='', help="key prefix in the output, e.g. 'backbone.' (default: none)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    state = extract_state_dict(load_checkpoint_file(args.src), source=args.src)
    if any(k.startswith('backbone.') for k in state):
        state = OrderedDict((k[len('backbone.'):], v) for k, v in state.items() if k.startswith('backbone.'))
    layout = detect_layout(state)
    found = infer_fastervit_arch(state)
    arch = arch_name(found)
    if args.arch is not None:
        wanted = FasterViT.resolve_arch(args.arch)
        wanted_name = next(n for n, s in FasterViT.arch_settings.items() if s == wanted)
        if arch != wanted_name:
            raise SystemExit(f'{args.src} holds a FasterViT with dim {found["dim"]}, in_dim {found["in_dim"]} and '
                             f'depths {found["depths"]} ({arch or "custom"}), not --arch {args.arch}.')
        arch = wanted_name
    if arch is None:
        raise SystemExit(f'{args.src}: no FasterViT variant has dim {found["dim"]}, in_dim {found["in_dim"]}, '
                         f'depths {found["depths"]}; known: {", ".join(FasterViT.arch_settings)}.')

    model = FasterViT(arch=arch)
    converted = model.convert_checkpoint(state)
    check_state_dict(model, converted, source=f'Converted {args.src!r}')
    model.load_state_dict(converted, strict=True)

    dropped = [k for k in state if (layout == 'official' and k.startswith(HEAD_PREFIXES)) or is_size_buffer(k)]
    out_state = OrderedDict((args.prefix + k, v.detach().clone().contiguous()) for k, v in converted.items())
    meta = dict(arch=arch, source=osp.basename(args.src), source_layout=layout, prefix=args.prefix,
                converter='tools/model_converters/fastervit_to_mmlightvit.py')
    torch.save({'state_dict': out_state, 'meta': meta}, args.dst)

    num_params = sum(v.numel() for k, v in converted.items() if not k.endswith(('running_mean', 'running_var',
                                                                                'num_batches_tracked')))
    print(f'{args.src} ({layout} layout) -> {args.dst}\n'
          f'  arch: FasterViT-{arch}; {len(out_state)} tensors, {num_params / 1e6:.2f}M parameters; dropped '
          f'{len(dropped)} classifier / size-dependent tensors; key prefix: {args.prefix or "(none)"}; '
          f'loads strictly into FasterViT.')
    return dict(arch=arch, layout=layout, num_keys=len(out_state), dropped=dropped, dst=args.dst)


if __name__ == '__main__':
    main()
