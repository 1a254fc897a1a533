"""Export a backbone or a whole segmentor / classifier / DINO to ExecuTorch (XNNPACK), float32 or INT8, and check it.

    python tools/deploy/export_executorch.py CONFIG CHECKPOINT [--mode backbone|model] [--out FILE.pte] [--overwrite]
        [--shape H W] [--check-shapes H1 W1 [H2 W2 ...]] [--max-batch 4] [--max-size 1024] [--static]
        [--int8 [--calib-images 32] [--check-images 4]] [--tolerance T] [--threads N]

The exported module is the one export_onnx.py exports (mmlightvit/deploy/onnx_export.py ``build_export_target``);
mmlightvit/deploy/executorch_export.py lowers it to XNNPACK. The program's image input is the preprocessed batch;
batch (1..--max-batch), height and width (64..--max-size) are dynamic. Its metadata (kind, preprocessing, class
names, config, checkpoint, precision, bounds) is written beside it to ``FILE.pte.json``; ``tools/test.py CONFIG
FILE.pte`` and ``tools/image_demo.py ... --weights FILE.pte`` run a whole model with ExecuTorch in the config's
pipeline.

``--int8``: post-training static quantization (PT2E, XNNPACKQuantizer, symmetric, weights per channel), the
activation ranges calibrated on ``--calib-images`` images of the config's training set through its test pipeline
(the images the ONNX INT8 form is calibrated on).

After the export, ExecuTorch and PyTorch (float32, the same weights) run the same inputs and the tool prints the
differences and median latencies: float32 on random inputs at each ``--check-shapes`` size (default 224x224 and
200x328; tolerance 1e-4 relative to each output's largest magnitude); INT8 on ``--check-images`` preprocessed
validation images (tolerance 0.1, label maps agreeing on at least 90% of the pixels; what INT8 changes in the
metric is what tools/test.py measures). It exits with status 1 when a check fails, 2 on errors (missing or unsafe
checkpoint, a model that cannot be exported, e.g. a detector with NMS, an output that exists or is an input).
``--out`` and its sidecar are never replaced unless ``--overwrite`` is given, and never when they are an input.

Detectors with NMS (Mask / Cascade Mask R-CNN, RTMDet, SSDLite) are not exported: their NMS is a custom operator
the ExecuTorch runtime of the pip wheel has no kernel for (see mmlightvit/deploy/executorch_export.py); DINO (a
top-k, no NMS) exports whole at a fixed size (``--static``), with the image size as its second input, as for ONNX.
EdgeNeXt, FasterViT and TransNeXt export at a fixed size (``--static``): with size bounds, torch.export refuses the
guards their graphs record on the size (their ONNX export is dynamic).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import torch

from mmlightvit.deploy.cli import add_check_arguments, add_model_arguments, check_shapes, parity_exit_status
from mmlightvit.deploy.onnx_export import ExportError, build_export_target, compare_with_onnxruntime, format_table
from mmlightvit.deploy.runtime import ExportedModelError
from mmlightvit.utils.cli import USER_ERRORS
from mmlightvit.utils.files import check_output

FLOAT_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.1
INT8_LABEL_AGREEMENT = 0.9


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parsed arguments; ``check_shapes`` becomes the list of (H, W) sizes to compare at."""
    from mmlightvit.deploy.executorch_export import DEFAULT_MAX_BATCH, DEFAULT_MAX_SIZE
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_arguments(parser, 'segmentor / classifier / DINO detector',
                        'output .pte file (default: work_dirs/executorch/CONFIG_MODE[_int8].pte)',
                        'replace OUT and its sidecar if they exist (never an input)')
    add_check_arguments(parser, 'ExecuTorch')
    parser.add_argument('--max-batch', type=int, default=DEFAULT_MAX_BATCH, help='largest batch the program runs')
    parser.add_argument('--max-size', type=int, default=DEFAULT_MAX_SIZE,
                        help='largest input height and width the program runs (ExecuTorch plans memory for it)')
    parser.add_argument('--int8', action='store_true', help='post-training static INT8 quantization (XNNPACK)')
    parser.add_argument('--calib-images', type=int, default=32, help='--int8: training images to calibrate on')
    parser.add_argument('--check-images', type=int, default=4,
                        help='--int8: validation images to compare on (instead of random inputs)')
    parser.add_argument('--tolerance', type=float,
                        help=f'largest allowed |ExecuTorch - PyTorch| relative to the largest |PyTorch| of each '
                        f'output (default {FLOAT_TOLERANCE:g}; --int8: {INT8_TOLERANCE:g})')
    args = parser.parse_args(argv)
    args.check_shapes = check_shapes(parser, args)
    if args.max_batch <= 0 or args.calib_images <= 0 or args.check_images < 0:
        parser.error('--max-batch and --calib-images must be positive, --check-images not negative.')
    if args.tolerance is None:
        args.tolerance = INT8_TOLERANCE if args.int8 else FLOAT_TOLERANCE
    return args


def default_out(config: str, mode: str, int8: bool) -> str:
    name = f'{osp.splitext(osp.basename(config))[0]}_{mode}{"_int8" if int8 else ""}.pte'
    return osp.join('work_dirs', 'executorch', name)


def image_feeds(args, input_names: List[str], count: int, split: str) -> list:
    """``count`` preprocessed images of the config's ``split`` (see ``calibration_feeds``)."""
    from mmlightvit.deploy.quantize import calibration_feeds
    from mmlightvit.engine.setup import read_data_config
    return calibration_feeds(read_data_config(args.config, args.cfg_options), count, input_names, split)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmlightvit.deploy.executorch_export import export_executorch, sidecar_path
    from mmlightvit.deploy.runtime import ExecuTorchSession
    out = args.out or default_out(args.config, args.mode, args.int8)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if not out.endswith('.pte'):
            raise ExportError(f'--out {out!r}: an ExecuTorch program is a .pte file (the runtime tells the file type '
                              'from its name).')
        inputs = [args.config, args.checkpoint]
        notes = [check_output(path, '--out', inputs=inputs, overwrite=args.overwrite)
                 for path in (out, sidecar_path(out))]
        target = build_export_target(args.config, args.checkpoint, args.mode, args.cfg_options)
        print(f'{target.kind} ({target.backbone_type}), outputs: {", ".join(target.output_names)}')
        calibration, check_feeds = None, None
        if args.int8:
            feeds = image_feeds(args, target.input_names, args.calib_images, 'train')
            calibration = [tuple(torch.from_numpy(feed[name]) for name in target.input_names) for feed in feeds]
            if not args.no_check and args.check_images:
                check_feeds = image_feeds(args, target.input_names, args.check_images, 'val')
        note = f'{len(calibration)} training images through the test pipeline' if calibration else ''
        metadata = export_executorch(target, out, tuple(args.shape), dynamic=not args.static,
                                     max_batch=args.max_batch, max_size=args.max_size, calibration=calibration,
                                     calibration_note=note)
        for replaced in filter(None, notes):
            print(replaced)
        bounds = (f'fixed input {metadata["input_shape"]}' if args.static else
                  f'dynamic batch 1..{args.max_batch}, height and width {metadata["min_size"]}..{args.max_size}')
        print(f'exported {out} ({metadata["precision"]}, XNNPACK; {bounds}); metadata: {sidecar_path(out)}')
        results = []
        if not args.no_check and (check_feeds or not args.int8):
            session = ExecuTorchSession(out, args.threads)
            agreement = INT8_LABEL_AGREEMENT if args.int8 else 0.999
            results = compare_with_onnxruntime(target, out, args.check_shapes, args.batch, args.tolerance,
                                               args.warmup, args.repeat, args.threads, session=session,
                                               feeds=check_feeds, label_agreement=agreement)
    except USER_ERRORS + (ExportError, ExportedModelError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    if results:
        inputs = f'{len(results)} validation images' if args.int8 else 'random inputs'
        print(f'\nExecuTorch (XNNPACK, {metadata["precision"]}) vs PyTorch eager (float32) on {inputs}, median of '
              f'{args.repeat} runs after {args.warmup} warm-up runs:')
        print(format_table(results, args.tolerance, runtime='ExecuTorch'))
    return parity_exit_status(results, args.tolerance, target.kind, 'inputs')


if __name__ == '__main__':
    sys.exit(main())
