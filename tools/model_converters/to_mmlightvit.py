"""Convert a backbone checkpoint of any family (official release, timm, mmpretrain, or a whole detector /
segmentor / classifier holding one) to mmlightvit's layout.

    python tools/model_converters/to_mmlightvit.py repvit_m1_1_distill_450e.pth repvit_m1_1_mmlightvit.pth
    python tools/model_converters/to_mmlightvit.py edgenext_small.pth out.pth --family EdgeNeXt --arch small
    python tools/model_converters/to_mmlightvit.py fastervit_0_224_1k.pth.tar out.pth --prefix backbone.
    python tools/model_converters/to_mmlightvit.py mask_rcnn_transnext_tiny_fpn_1x_coco_in1k.pth out.pth

The file is read safely (weights only); for a whole model the ``backbone.`` weights are taken. The family is the one
whose variants (or custom sizes) the tensor shapes fit, unless ``--family`` names it; the variant is read from the
shapes and checked against ``--arch`` if given. Classifier-side tensors are dropped, the result is checked by loading
it strictly into the backbone, and ``{'state_dict': ..., 'meta': ...}`` is saved (bare backbone keys unless
``--prefix`` is given). Converting is optional: ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts the
original files directly.
"""
import argparse
import os.path as osp
from collections import OrderedDict
from functools import partial
from typing import Dict, Optional, Sequence, Type

import torch

from mmlightvit.models.backbones import FAMILIES
from mmlightvit.models.layers.checkpoint_layouts import describe_arch
from mmlightvit.models.weights import backbone_tensors, resolve_state
from mmlightvit.utils.checkpoint import load_checkpoint_file
from mmlightvit.utils.cli import exit_on_user_error
from mmlightvit.utils.files import check_output, replace_file_atomically

# Buffers, not parameters: left out of the parameter count printed in the summary.
BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--family', choices=[cls.__name__ for cls in FAMILIES],
                        help='backbone family (default: read from the tensor shapes)')
    parser.add_argument('--arch', help="variant, e.g. 'm1.1', 'small-bn-hs', '0', 'tiny' (default: read from the "
                        'tensor shapes)')
    parser.add_argument('--prefix', default='', help="key prefix in the output, e.g. 'backbone.' (default: none)")
    parser.add_argument('--overwrite', action='store_true', help='replace dst if it exists (never src)')
    return parser.parse_args(argv)


def reads(family: Type, state: Dict[str, torch.Tensor]) -> bool:
    """Whether ``family`` reads ``state`` as one of its variants (or a custom size)."""
    try:
        found = family.infer_arch(state)
    except (KeyError, ValueError, IndexError, NotImplementedError):
        return False
    return bool(found) and (family.matching_arch(found) is not None or family.custom_arch(found) is not None)


def find_family(state: Dict[str, torch.Tensor], src: str, named: Optional[Type] = None) -> Type:
    """The one family that reads ``state`` as one of its variants (or a custom size); with ``named``
    (``--family``), that family, after checking that it reads the weights."""
    readers = [cls for cls in FAMILIES if reads(cls, state)]
    if named is not None:
        if named in readers:
            return named
        found = ', '.join(cls.__name__ for cls in readers) or 'none of ' + ', '.join(c.__name__ for c in FAMILIES)
        raise SystemExit(f'{src}: --family {named.__name__} does not read these weights (the tensor names and '
                         f'shapes fit {found}).')
    if len(readers) != 1:
        names = ', '.join(cls.__name__ for cls in FAMILIES)
        what = 'no family' if not readers else 'several families (' + ', '.join(c.__name__ for c in readers) + ')'
        raise SystemExit(f'{src}: {what} of {names} read these weights; name it with --family.')
    return readers[0]


def find_arch(family: Type, state: Dict[str, torch.Tensor], src: str, arch: Optional[str] = None):
    """The variant name (or a custom arch dict) of the weights; with ``--arch``, its canonical name, after checking
    that the weights are of that variant."""
    found = family.infer_arch(state)
    name = family.matching_arch(found)
    if arch is not None:
        # resolve_arch accepts aliases ('xxs', 'faster_vit_0'); the canonical name is what is built and saved.
        wanted = family.resolve_arch(arch)
        if not family.arch_matches(wanted, found):
            raise SystemExit(f'{src} holds {family.__name__} weights with {describe_arch(found)} '
                             f'({name or "custom"}), not --arch {arch}.')
        return next(n for n, settings in family.arch_settings.items() if settings == wanted)
    model_arch = name if name is not None else family.custom_arch(found)
    if model_arch is None:
        raise SystemExit(f'{src}: no {family.__name__} variant has {describe_arch(found)}; known: '
                         f'{", ".join(family.arch_settings)}.')
    return model_arch


def plain(arch):
    """``meta`` holds plain lists (not tuples) for a custom size, so that it reads back the same from any loader."""
    if isinstance(arch, str):
        return arch
    return {key: list(value) if isinstance(value, tuple) else value for key, value in arch.items()}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Returns ``dict(family, arch, layout, num_keys, dropped, dst)``: ``arch`` as saved in ``meta``, ``dropped``
    the source keys left out, in file order."""
    args = parse_args(argv)
    note = check_output(args.dst, 'dst', inputs=[args.src], overwrite=args.overwrite)
    checkpoint = load_checkpoint_file(args.src)
    named = next(cls for cls in FAMILIES if cls.__name__ == args.family) if args.family else None
    family = find_family(backbone_tensors(checkpoint, args.src), args.src, named)
    # the tensors as the file has them (the family's preferred wrapper first), before conversion
    source_state = backbone_tensors(checkpoint, args.src, family.checkpoint_keys)
    arch = find_arch(family, source_state, args.src, args.arch)
    model = family(arch=arch)
    weights = resolve_state(model, checkpoint, f'Converted {args.src!r}')
    weights.load()

    layout = family.detect_layout(source_state)
    dropped = [k for k in source_state if family.is_dropped_on_conversion(k, layout)]
    # Cloned and contiguous: converted tensors may be views sharing storage with the dropped ones, which
    # torch.save would otherwise write out too.
    out_state = OrderedDict((args.prefix + k, v.detach().clone().contiguous()) for k, v in weights.state.items())
    meta = dict(family=family.__name__, arch=plain(arch), source=osp.basename(args.src), source_layout=layout,
                prefix=args.prefix, converter='tools/model_converters/to_mmlightvit.py')
    replace_file_atomically(args.dst, partial(torch.save, {'state_dict': out_state, 'meta': meta}))

    num_params = sum(v.numel() for k, v in weights.state.items() if not k.endswith(BN_STATS))
    if note:
        print(note)
    print(f'{args.src} ({layout} layout) -> {args.dst}\n'
          f'  {family.__name__} arch: {meta["arch"]}; {len(out_state)} tensors, {num_params / 1e6:.2f}M '
          f'parameters; dropped {len(dropped)} classifier-side tensors; key prefix: {args.prefix or "(none)"}; '
          f'loads strictly into {family.__name__}.')
    return dict(family=family.__name__, arch=meta['arch'], layout=layout, num_keys=len(out_state),
                dropped=dropped, dst=args.dst)


if __name__ == '__main__':
    with exit_on_user_error():
        main()
