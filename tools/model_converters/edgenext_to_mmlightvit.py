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
import re
from typing import Optional, Sequence

from mmlightvit.models.backbones.edgenext import (HEAD_PREFIXES, EdgeNeXt, detect_layout,
                                                  infer_edgenext_arch, mmpretrain_to_mmlightvit,
                                                  official_to_mmlightvit)
from mmlightvit.utils.convert import convert_backbone_checkpoint, converter_arg_parser


def infer_arch(state) -> dict:
    # infer_edgenext_arch reads our key names: rename the official and mmpretrain layouts first.
    layout = detect_layout(state)
    if layout == 'official':
        state = official_to_mmlightvit(state)
    elif layout == 'mmpretrain':
        state = mmpretrain_to_mmlightvit(state)
    return infer_edgenext_arch(state)


def arch_matches(settings: dict, found: dict) -> bool:
    # The norm type tells 'small' from 'small-bn-hs', which have the same widths and depths.
    return (tuple(settings['widths']), tuple(settings['depths']), settings.get('bn_hs', False)) == (
        found['widths'], found['depths'], found['bn_hs'])


def custom_arch(found: dict) -> Optional[dict]:
    # The SDTA head counts are read from the XCA temperatures: without SDTA blocks they cannot be known.
    if 'num_heads' not in found:
        return None
    return {k: found[k] for k in ('widths', 'depths', 'bn_hs', 'num_heads', 'kernel_sizes') if k in found}


def is_mmpretrain_norm(key: str) -> bool:
    # mmpretrain's norm{i} over the pooled features: classifier-side, dropped by EdgeNeXt.convert_checkpoint.
    return re.match(r'norm\d+\.', key) is not None


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = converter_arg_parser(__doc__.split('\n\n')[0],
                                'official (downsample_layers.*), timm (stem.*, stages.*.blocks.*) or '
                                'mmpretrain EdgeNeXt checkpoint', "'small' or 'small-bn-hs'").parse_args(argv)
    return convert_backbone_checkpoint(
        EdgeNeXt, args.src, args.dst, args.arch, args.prefix,
        detect_layout=detect_layout, infer_arch=infer_arch, arch_matches=arch_matches, custom_arch=custom_arch,
        head_prefixes=HEAD_PREFIXES, also_dropped=is_mmpretrain_norm,
        converter_name='tools/model_converters/edgenext_to_mmlightvit.py')


if __name__ == '__main__':
    main()
