"""Params and MACs of detectors / segmentors from configs, or of a backbone alone, as one markdown table.

    # whole models at their task's default input (mmdet 800x1280 (H x W), mmseg 512x512), one row per config
    python tools/analysis/get_flops.py configs/repvit/*.py [--shape H W] [--fused]
    # the backbone of each config at 224x224
    python tools/analysis/get_flops.py configs/repvit/*.py --backbone-only
    # a backbone without a config, with a 1000-class BN+Linear head, re-parameterised: the paper's table
    python tools/analysis/get_flops.py --arch RepViT:m0.9 --arch RepViT:m1.1 --with-classifier --fused

Counts are MACs (one multiply-add = one FLOP, the fvcore / mmengine convention); see
``mmlightvit/analysis/complexity.py`` for what is counted, attention included. Files that are not configs with a
model are skipped with a note on stderr.
"""
import argparse
import os
import sys
from collections import Counter

from mmlightvit.apis.model import config_without_pretrained
from mmlightvit.analysis.complexity import config_scope, count_arch, count_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='*', help='mmdet / mmseg / mmpretrain config files')
    parser.add_argument('--shape', type=int, nargs='+', metavar='N',
                        help='input size: H W, or one number for a square (default: by task, see above)')
    parser.add_argument('--backbone-only', action='store_true', help="count each config's backbone alone")
    parser.add_argument('--fused', action='store_true',
                        help='count the re-parameterised (deploy) model: conv-BN and RepVGG branches folded')
    parser.add_argument('--arch', action='append', default=[], metavar='FAMILY:ARCH',
                        help='count an mmlightvit backbone without a config, e.g. RepViT:m1.1 (repeatable)')
    parser.add_argument('--with-classifier', action='store_true',
                        help='with --arch: add global pooling + BN + Linear to 1000 classes (BN folded if --fused)')
    args = parser.parse_args(argv)
    if bool(args.arch) == bool(args.configs):
        parser.error('give either config files or --arch FAMILY:ARCH')
    if args.with_classifier and not args.arch:
        parser.error('--with-classifier goes with --arch')
    if args.shape is not None:
        if len(args.shape) not in (1, 2):
            parser.error('--shape takes H W or a single size')
        args.shape = tuple(args.shape) * (3 - len(args.shape))  # (S,) -> (S, S)
        if min(args.shape) <= 0:
            parser.error(f'--shape must be positive, got {args.shape[0]} {args.shape[1]}')
    return args


def _type_name(module_cfg) -> str:
    name = str(module_cfg.get('type', '?'))
    return name.split('.')[-1]  # 'mmlightvit.RepViT' -> 'RepViT'


def _model_name(cfg, backbone_only: bool) -> str:
    backbone = cfg.model.get('backbone')
    backbone_name = ''
    if backbone is not None:
        arch = backbone.get('arch')
        backbone_name = _type_name(backbone) + (f'-{arch}' if isinstance(arch, str) else '')
    if backbone_only:
        return backbone_name
    return f'{_type_name(cfg.model)} + {backbone_name}' if backbone_name else _type_name(cfg.model)


def _row(cells) -> str:
    return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def _numbers(result):
    height, width = result.input_shape
    return [f'{height} x {width}', f'{result.params / 1e6:.2f}', f'{result.macs / 1e9:.2f}']


def main(argv=None):
    args = parse_args(argv)
    form = 'fused (deploy) model' if args.fused else 'model as trained (BN not folded; eval-mode BN counted)'
    uncounted = Counter()
    lines = []
    if args.arch:
        what = 'backbone + BN/Linear head (1000 classes)' if args.with_classifier else 'backbone'
        lines += [_row(['model', 'input (H x W)', 'params (M)', 'MACs (G)']), _row(['---'] * 4)]
        for family_arch in args.arch:
            result = count_arch(family_arch, args.shape or (224, 224), args.with_classifier, args.fused)
            uncounted.update(result.uncounted)
            lines.append(_row([family_arch, *_numbers(result)]))
    else:
        what = 'backbone only' if args.backbone_only else 'whole model, tensor mode (RoI heads on the proposals shown)'
        header = ['config', 'model', 'input (H x W)', 'params (M)', 'MACs (G)']
        if not args.backbone_only:
            header.append('proposals')
        lines += [_row(header), _row(['---'] * len(header))]
        for path in args.configs:
            try:
                cfg = config_without_pretrained(path)
                config_scope(cfg)
            except Exception as error:  # not a config, one without a model (a dataset base), or not mmdet/mmseg
                print(f'skipped {path}: {error}', file=sys.stderr)
                continue
            result = count_model(cfg, args.shape, args.fused, args.backbone_only)
            uncounted.update(result.uncounted)
            name = os.path.splitext(os.path.basename(path))[0]
            cells = [name, _model_name(cfg, args.backbone_only), *_numbers(result)]
            if not args.backbone_only:
                cells.append(result.proposals if result.proposals is not None else '-')
            lines.append(_row(cells))

    print(f'Params and MACs (one multiply-add = 1 FLOP, fvcore/mmengine convention, so these are MACs); {what}; '
          f'{form}.')
    print()
    print('\n'.join(lines))
    if uncounted:
        print()
        print('Ops traced but not counted (element-wise ops, or ops without a handle): '
              + ', '.join(sorted(uncounted)) + '.')


if __name__ == '__main__':
    main()
