"""Convert an official RepViT release or a timm RepViT checkpoint to mmlightvit's ``RepViT`` layout.

    python tools/model_converters/repvit_to_mmlightvit.py repvit_m1_1_distill_450e.pth repvit_m1_1_mmlightvit.pth
    python tools/model_converters/repvit_to_mmlightvit.py timm_repvit_m2_3.pth out.pth --prefix backbone.

The file is read safely (weights only), the arch is inferred from the tensor shapes unless ``--arch`` is given,
the converted weights are checked by loading them strictly into ``RepViT(arch)``, and the result is saved as
``{'state_dict': ..., 'meta': ...}`` (bare backbone keys unless ``--prefix`` is given). Converting is optional:
``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts the original files directly.
"""
from typing import Optional, Sequence

from mmlightvit.models.backbones.repvit import HEAD_PREFIXES, RepViT, detect_layout, infer_repvit_arch
from mmlightvit.utils.convert import convert_backbone_checkpoint, converter_arg_parser


def arch_matches(settings: dict, found: dict) -> bool:
    # widths and depths fix every tensor shape; the SE placement and the rest are the same in all variants.
    return (tuple(settings['widths']), tuple(settings['depths'])) == (found['widths'], found['depths'])


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = converter_arg_parser(__doc__.split('\n\n')[0],
                                'official (features.*) or timm (stem.*, stages.*) RepViT checkpoint',
                                "'m1.1'").parse_args(argv)
    return convert_backbone_checkpoint(
        RepViT, args.src, args.dst, args.arch, args.prefix,
        detect_layout=detect_layout, infer_arch=infer_repvit_arch, arch_matches=arch_matches,
        custom_arch=dict,  # widths and depths are all RepViT needs to build a custom size
        head_prefixes=HEAD_PREFIXES, converter_name='tools/model_converters/repvit_to_mmlightvit.py')


if __name__ == '__main__':
    main()
