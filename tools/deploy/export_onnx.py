"""Export a backbone or a whole model (segmentor, detector, classifier) to ONNX and check it against onnxruntime.

    python tools/deploy/export_onnx.py CONFIG CHECKPOINT [--mode backbone|model] [--out FILE] [--overwrite]
        [--shape H W] [--check-shapes H1 W1 [H2 W2 ...]] [--opset N] [--tolerance T] [--static]

CHECKPOINT is a detector / segmentor checkpoint (what tools/train.py writes, fused or not), a backbone checkpoint
(``--mode backbone`` only), or ``none`` for the random initial weights. ``--mode backbone`` exports the fused
backbone (outputs: its feature maps); ``--mode model`` the whole segmentor (Mask2Former included; image -> logits at
the input size and the label map), detector (image and each image's unpadded size -> final detections after NMS, or
DINO's top-k, and masks for instance segmentation; see mmlightvit/deploy/detection.py) or classifier (image -> class
probabilities). The graph's image input is the preprocessed batch; batch, height and width are dynamic.
``tools/test.py CONFIG OUT`` evaluates the exported whole model. After the export, onnxruntime (CPU) and PyTorch run
the same random inputs at each ``--check-shapes`` size (default 224x224 and 200x328); the tool prints the
differences and median latencies and exits with status 1 when a difference exceeds ``--tolerance`` (relative to the
output's largest magnitude). Errors (missing or unsafe checkpoint, a model that cannot be exported, an output that
exists or is an input) exit with status 2. ``--out`` is never replaced unless ``--overwrite`` is given, and never
when it is an input.

Every backbone exports with dynamic height and width; FasterViT and TransNeXt compute their size-dependent tables in
the graph from the runtime size. FasterViT is traced at 225 px per side or more whatever ``--shape`` says (2 x 2
windows in both transformer stages: torch.export would fix a window count of 1 in the graph); TransNeXt in
extrapolation mode takes multiples of 32 (the check sizes are padded to them). ``--static`` writes one fixed-size
graph of the ``--shape`` size to ``OUT`` and checks it at that size (one run per size for several).
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

from mmlightvit.deploy.cli import add_check_arguments, add_model_arguments, check_shapes, parity_exit_status
from mmlightvit.deploy.onnx_export import (DEFAULT_OPSET, ExportError, build_export_target, compare_with_onnxruntime,
                                           export_onnx, format_table)
from mmlightvit.utils.cli import USER_ERRORS
from mmlightvit.utils.files import check_output, replace_file_atomically


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parsed arguments; ``check_shapes`` becomes the list of (H, W) sizes to compare at."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_arguments(parser, 'segmentor / detector / classifier',
                        'output .onnx file (default: work_dirs/onnx/CONFIG_MODE.onnx)')
    add_check_arguments(parser, 'onnxruntime')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest allowed |ORT - PyTorch| relative to the largest |PyTorch| of each output')
    args = parser.parse_args(argv)
    args.check_shapes = check_shapes(parser, args)
    return args


def default_out(config: str, mode: str) -> str:
    return osp.join('work_dirs', 'onnx', f'{osp.splitext(osp.basename(config))[0]}_{mode}.onnx')


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out = args.out or default_out(args.config, args.mode)
    try:
        note = check_output(out, '--out', inputs=[args.config, args.checkpoint], overwrite=args.overwrite)
        target = build_export_target(args.config, args.checkpoint, args.mode, args.cfg_options)
        print(f'{target.kind} ({target.backbone_type}), outputs: {", ".join(target.output_names)}'
              + (f'; inputs padded to multiples of {target.size_divisor}' if target.size_divisor > 1 else ''))
        # a fixed-size graph is traced with the check batch: its batch is fixed too
        batch = args.batch if args.static else 1
        replace_file_atomically(out, lambda tmp: export_onnx(target, tmp, tuple(args.shape), batch, args.opset,
                                                             dynamic=not args.static))
        if note:
            print(note)
        print(f'exported {out} ' + (f'(fixed size {args.shape[0]}x{args.shape[1]}, batch {batch})' if args.static
                                    else f'(dynamic batch, height and width; opset {args.opset})'))
        results = [] if args.no_check else compare_with_onnxruntime(
            target, out, args.check_shapes, args.batch, args.tolerance, args.warmup, args.repeat, args.threads)
    except USER_ERRORS + (ExportError, ) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    if results:
        print(f'\nonnxruntime (CPUExecutionProvider) vs PyTorch eager, median of {args.repeat} runs after '
              f'{args.warmup} warm-up runs:')
        print(format_table(results, args.tolerance))
    return parity_exit_status(results, args.tolerance, target.kind, 'sizes')


if __name__ == '__main__':
    sys.exit(main())
