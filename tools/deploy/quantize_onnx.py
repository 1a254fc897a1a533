"""Quantize an exported whole model to INT8 (onnxruntime, QDQ) and compare it with the float model.

    python tools/deploy/quantize_onnx.py CONFIG MODEL.onnx [--out MODEL_int8.onnx] [--calibration-images 32]
        [--split train|val] [--per-tensor] [--reduce-range auto|on|off] [--check-images 4] [--overwrite]

MODEL.onnx is what ``tools/deploy/export_onnx.py CONFIG CKPT --mode model`` wrote. The activation ranges are
calibrated on ``--calibration-images`` images of the config's training set (``--split``), spread over the whole
set and passed through the test pipeline (mmlightvit/deploy/quantize.py says what is quantized and how). Then both
files run on ``--check-images`` images of the validation set: the tool prints their median latency and how far
the INT8 outputs are from the float ones. The metric of each form comes from tools/test.py:

    python tools/test.py CONFIG MODEL.onnx
    python tools/test.py CONFIG MODEL_int8.onnx

``--out`` (default: MODEL_int8.onnx beside MODEL.onnx) is never replaced unless ``--overwrite`` is given, and never
when it is an input. Errors (missing files, a file that is no whole model, an empty data set) exit with status 2.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

import numpy as np

from mmlightvit.deploy.onnx_export import median_ms, ort_session
from mmlightvit.deploy.quantize import calibration_feeds, quantize_onnx
from mmlightvit.deploy.runtime import ExportedModelError, exported_metadata
from mmlightvit.engine.setup import read_data_config
from mmlightvit.utils.cli import USER_ERRORS
from mmlightvit.utils.files import check_output, replace_file_atomically

REDUCE_RANGE = {'auto': 'auto', 'on': True, 'off': False}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config the model was exported from (its data pipeline)')
    parser.add_argument('model', help='the exported whole model (.onnx, from export_onnx.py --mode model)')
    parser.add_argument('--out', help='the INT8 model (default: MODEL_int8.onnx)')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists (never an input)')
    parser.add_argument('--calibration-images', type=int, default=32, help='images the ranges are calibrated on')
    parser.add_argument('--split', choices=('train', 'val'), default='train', help='where the calibration images '
                        'come from')
    parser.add_argument('--per-tensor', action='store_true', help='one weight scale per tensor (default: per '
                        'output channel)')
    parser.add_argument('--reduce-range', choices=tuple(REDUCE_RANGE), default='auto',
                        help='7-bit weights (auto: on CPUs without VNNI)')
    parser.add_argument('--check-images', type=int, default=4, help='validation images both forms are compared on')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs per image (the median is reported)')
    parser.add_argument('--threads', type=int, help='onnxruntime intra-op threads (default: PyTorch\'s)')
    args = parser.parse_args(argv)
    if args.calibration_images <= 0 or args.check_images < 0 or args.repeat <= 0:
        parser.error('--calibration-images and --repeat must be positive, --check-images not negative.')
    return args


def compare(float_file: str, int8_file: str, feeds, repeat: int, threads: Optional[int]) -> str:
    """A markdown table: per output, the largest INT8 - float difference relative to the output's scale (labels:
    the share that agree), then the median latency of both forms."""
    sessions = [ort_session(f, threads) for f in (float_file, int8_file)]
    names = [o.name for o in sessions[0].get_outputs()]
    rows, integer, times = {name: [] for name in names}, {}, [[], []]
    for feed in feeds:
        results = [session.run(None, feed) for session in sessions]
        for name, ref, got in zip(names, *results):
            integer[name] = np.issubdtype(ref.dtype, np.integer)
            if ref.shape != got.shape:  # no agreement, an unbounded difference
                value = 0.0 if integer[name] else float('inf')
            elif integer[name]:
                value = float((ref == got).mean()) if ref.size else 1.0
            else:
                value = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)) if ref.size else 0.0
            rows[name].append(value)
        for form, session in enumerate(sessions):
            times[form].append(median_ms(lambda: session.run(None, feed), 1, repeat))
    lines = ['| output | INT8 vs float |', '| --- | --- |']
    for name, values in rows.items():
        lines.append(f'| {name} | ' + (f'{min(values):.2%} equal (worst image)' if integer[name] else
                                       f'max rel diff {max(values):.3g}') + ' |')
    float_ms, int8_ms = float(np.median(times[0])), float(np.median(times[1]))
    lines += ['', '| form | latency (ms, median) | speed-up |', '| --- | --- | --- |',
              f'| float32 | {float_ms:.1f} | 1.00 |', f'| INT8 | {int8_ms:.1f} | {float_ms / max(int8_ms, 1e-9):.2f} |']
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out = args.out or osp.splitext(args.model)[0] + '_int8.onnx'
    try:
        check_output(out, '--out', inputs=[args.config, args.model], overwrite=args.overwrite)
        exported_metadata(args.model)  # a readable exported file, before the data is read
        cfg = read_data_config(args.config)
        input_names = [i.name for i in ort_session(args.model, args.threads).get_inputs()]
        feeds = calibration_feeds(cfg, args.calibration_images, input_names, args.split)
        chosen = {}
        replace_file_atomically(out, lambda tmp: chosen.update(quantize_onnx(
            args.model, tmp, feeds, per_channel=not args.per_tensor, reduce_range=REDUCE_RANGE[args.reduce_range])))
        print(f'wrote {out}: {chosen["calibration_images"]} calibration images, per-channel weights '
              f'{chosen["per_channel"]}, 7-bit weights {chosen["reduce_range"]}')
        if args.check_images:
            check_feeds = calibration_feeds(cfg, args.check_images, input_names, 'val')
            print(f'\nINT8 vs float32 on {len(check_feeds)} validation images (onnxruntime, CPU):\n')
            print(compare(args.model, out, check_feeds, args.repeat, args.threads))
    except USER_ERRORS + (ExportedModelError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'\nmetrics: python tools/test.py {args.config} {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
