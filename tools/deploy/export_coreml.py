"""Convert a backbone or a whole classifier / segmentor to a Core ML ML Program (.mlpackage) with coremltools.

    python tools/deploy/export_coreml.py CONFIG CHECKPOINT [--mode backbone|model] [--shape H W]
        [--precision fp32|fp16] [--int8-weights] [--enumerated-shapes H1 W1 ...] [--size-range MIN MAX]
        [--out F.mlpackage] [--overwrite]

CHECKPOINT and ``--mode`` are those of export_onnx.py: the fused backbone (outputs: its feature maps) or the whole
classifier (class probabilities) / segmentor (logits at the input size and the label map); ``none`` converts the
random initial weights. The input is the preprocessed image (mean, std and channel order are in the package's
``mmlightvit.preprocess.*`` metadata), batch 1, ``--shape`` H x W (default 224 x 224, RepViT's iPhone protocol).
``--precision fp16`` computes in float16, what the Neural Engine runs. ``--enumerated-shapes`` / ``--size-range``
let one package accept other sizes (not FasterViT / TransNeXt, which convert at one size per file).

The tool prints the package's inputs, outputs, MIL op counts and size on disk. Running the package (parity with
PyTorch, latency) needs macOS: see tools/README.md, "Core ML on an iPhone". Whole detectors do not convert (the
error names the ops coremltools lacks). Errors (missing or unsafe checkpoint, a model that does not convert, an
output that exists or is not a .mlpackage path) exit with status 2. ``--out`` is never replaced unless
``--overwrite`` is given, and then only when it is a Core ML package.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

from mmlightvit.deploy.cli import add_model_arguments, size_pairs
from mmlightvit.deploy.coreml_export import PRECISIONS, check_package_output, convert_coreml
from mmlightvit.deploy.onnx_export import ExportError, build_export_target
from mmlightvit.utils.cli import USER_ERRORS


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parsed arguments; ``enumerated_shapes`` becomes a list of (H, W) pairs."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_arguments(parser, 'classifier / segmentor',
                        'output .mlpackage (default: work_dirs/coreml/CONFIG_MODE_HxW_PRECISION.mlpackage)',
                        'replace OUT if it is an existing Core ML package (never an input or another folder)',
                        'input height and width (batch 1)')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='compute precision: fp32, or fp16 (what the Neural Engine runs)')
    parser.add_argument('--int8-weights', action='store_true',
                        help='store weights as int8 with per-channel scales (smaller file, same compute precision)')
    parser.add_argument('--enumerated-shapes', type=int, nargs='+', metavar='H W',
                        help='pairs H W the package accepts besides --shape (ct.EnumeratedShapes)')
    parser.add_argument('--size-range', type=int, nargs=2, metavar=('MIN', 'MAX'),
                        help='accept any height and width in MIN..MAX (ct.RangeDim)')
    args = parser.parse_args(argv)
    args.enumerated_shapes = size_pairs(parser, args.enumerated_shapes, '--enumerated-shapes')
    if min(args.shape) <= 0 or min(args.size_range or [1]) <= 0:
        parser.error('--shape and --size-range must be positive.')
    if args.enumerated_shapes and args.size_range:
        parser.error('give --enumerated-shapes or --size-range, not both.')
    return args


def default_out(config: str, mode: str, shape: Sequence[int], precision: str) -> str:
    name = f'{osp.splitext(osp.basename(config))[0]}_{mode}_{shape[0]}x{shape[1]}_{precision}.mlpackage'
    return osp.join('work_dirs', 'coreml', name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out = args.out or default_out(args.config, args.mode, args.shape, args.precision)
    try:
        note = check_package_output(out, inputs=[args.config, args.checkpoint], overwrite=args.overwrite)
        target = build_export_target(args.config, args.checkpoint, args.mode, args.cfg_options)
        print(f'{target.kind} ({target.backbone_type}), outputs: {", ".join(target.output_names)}')
        summary = convert_coreml(target, out, tuple(args.shape), args.precision, args.int8_weights,
                                 args.enumerated_shapes, tuple(args.size_range) if args.size_range else None)
    except USER_ERRORS + (ExportError, ) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    if note:
        print(note)
    print(summary.format())
    print('Not run here: Core ML runs on macOS / iOS only (tools/README.md, "Core ML on an iPhone").')
    return 0


if __name__ == '__main__':
    sys.exit(main())
