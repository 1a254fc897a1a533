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
from typing import Optional, Sequence

from mmlightvit.models.backbones import FAMILIES
from mmlightvit.utils.convert import convert_backbone_checkpoint, find_family, read_backbone_state
from mmlightvit.utils.cli import exit_on_user_error
from mmlightvit.utils.files import check_output


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


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    note = check_output(args.dst, 'dst', inputs=[args.src], overwrite=args.overwrite)
    named = next(cls for cls in FAMILIES if cls.__name__ == args.family) if args.family else None
    family = find_family(read_backbone_state(args.src), FAMILIES, args.src, named)
    summary = convert_backbone_checkpoint(family, args.src, args.dst, args.arch, args.prefix)
    if note:
        print(note)
    return summary


if __name__ == '__main__':
    with exit_on_user_error():
        main()
