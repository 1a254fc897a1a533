"""Convert an official FasterViT release (``fastervit_*_224_1k.pth.tar``) to mmlightvit's ``FasterViT`` layout.

    python tools/model_converters/fastervit_to_mmlightvit.py fastervit_0_224_1k.pth.tar fastervit_0_mmlightvit.pth
    python tools/model_converters/fastervit_to_mmlightvit.py fastervit_3_224_1k.pth.tar out.pth --prefix backbone.

The file is read safely (weights only), the variant is inferred from the tensor shapes unless ``--arch`` is given,
the classifier (``head.*``, final ``norm.*``) and the size-dependent buffers (``relative_bias``,
``relative_coords_table``, ``relative_position_index``) are dropped, the result is checked by loading it strictly
into ``FasterViT(arch)`` and saved as ``{'state_dict': ..., 'meta': ...}``. Converting is optional:
``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts the official files directly.
"""
from typing import Optional, Sequence

from mmlightvit.models.backbones.fastervit import (HEAD_PREFIXES, FasterViT, detect_layout,
                                                   infer_fastervit_arch, is_size_buffer)
from mmlightvit.utils.convert import convert_backbone_checkpoint, converter_arg_parser


def arch_matches(settings: dict, found: dict) -> bool:
    # Only the transformer stages (2, 3) have tensors whose shape gives the head count.
    return (settings['dim'], settings['in_dim'], tuple(settings['depths']), tuple(settings['num_heads'][2:]),
            settings.get('layer_scale') is not None) == (found['dim'], found['in_dim'], found['depths'],
                                                         found['transformer_heads'], found['layer_scale'])


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = converter_arg_parser(__doc__.split('\n\n')[0],
                                'official FasterViT checkpoint (patch_embed.*, levels.*) or one in our layout',
                                "'0' or 'faster_vit_3'").parse_args(argv)
    # No custom sizes: a FasterViT arch needs num_heads for all four stages, and only stages 2 and 3 show theirs.
    return convert_backbone_checkpoint(
        FasterViT, args.src, args.dst, args.arch, args.prefix,
        detect_layout=detect_layout, infer_arch=infer_fastervit_arch, arch_matches=arch_matches,
        head_prefixes=HEAD_PREFIXES, also_dropped=is_size_buffer, dropped_what='classifier / size-dependent',
        converter_name='tools/model_converters/fastervit_to_mmlightvit.py')


if __name__ == '__main__':
    main()
