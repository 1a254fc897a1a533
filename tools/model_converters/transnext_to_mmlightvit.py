"""Convert an official TransNeXt checkpoint (ImageNet, or an official mmdet / mmseg model) to mmlightvit's layout.

    python tools/model_converters/transnext_to_mmlightvit.py transnext_tiny_224_1k.pth transnext_tiny_mmlightvit.pth
    python tools/model_converters/transnext_to_mmlightvit.py mask_rcnn_transnext_tiny_fpn_1x_coco_in1k.pth out.pth

The file is read safely (weights only); for a detector or segmentor the ``backbone.`` weights are taken; the head
and any non-persistent buffers are dropped; the result is checked by loading it strictly into ``TransNeXt(arch)``
and saved as ``{'state_dict': ..., 'meta': ...}``. Converting is optional: ``init_cfg=dict(type='Pretrained',
checkpoint=...)`` accepts the official files directly.
"""
from typing import Optional, Sequence

from mmlightvit.models.backbones.transnext import (TransNeXt, infer_transnext_arch,
                                                   is_official_layout, official_to_mmlightvit)
from mmlightvit.utils.convert import convert_backbone_checkpoint, converter_arg_parser


def detect_layout(state) -> str:
    return 'official' if is_official_layout(state) else 'mmlightvit'


def infer_arch(state) -> dict:
    found = infer_transnext_arch(official_to_mmlightvit(state) if is_official_layout(state) else state)
    return found or dict(widths=None, depths=None)


def arch_matches(settings: dict, found: dict) -> bool:
    # widths and depths fix every tensor shape (heads follow the widths: head dim 24 throughout).
    return (tuple(settings['widths']), tuple(settings['depths'])) == (found['widths'], found['depths'])


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = converter_arg_parser(__doc__.split('\n\n')[0],
                                'official TransNeXt checkpoint (patch_embed*, block*, norm*)', "'tiny'").parse_args(argv)
    return convert_backbone_checkpoint(
        TransNeXt, args.src, args.dst, args.arch, args.prefix,
        detect_layout=detect_layout, infer_arch=infer_arch, arch_matches=arch_matches, head_prefixes=('head.', ),
        converter_name='tools/model_converters/transnext_to_mmlightvit.py')


if __name__ == '__main__':
    main()
