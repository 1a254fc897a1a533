"""One table of a trained model's deployment forms: latency on this CPU and, with --metrics, the config's metric.

    python tools/deploy/deploy_report.py CONFIG CHECKPOINT --out-dir DIR [--metrics] [--calibration-images 32]
        [--repeat 10] [--warmup 3] [--threads N] [--no-executorch] [--cfg-options ...]

The forms: PyTorch eager fp32 (re-parameterised), PyTorch BF16 (autocast; a detector's backbone and neck), the whole
model exported to ONNX (export_onnx.py --mode model) on onnxruntime and on OpenVINO (float32, and BF16 on CPUs with
AVX512_BF16 / AMX), its INT8 form (quantize_onnx.py, calibrated on --calibration-images training images) on both
runtimes, and ExecuTorch programs (export_executorch.py, XNNPACK, at the validation image's size; fp32 and INT8
calibrated on the same images). A form a runtime cannot take is listed with the reason. All run in this process on
the same preprocessed validation image, one after the other, ``--warmup`` times untimed and then ``--repeat`` times
(the median is reported), with the same number of threads; the speed-up is against PyTorch fp32 in the same run.
``--metrics`` also evaluates every form with tools/test.py on the config's test set (one process per form) and adds
the metric and its change against PyTorch fp32. DIR receives model.onnx, model_int8.onnx, model.pte,
model_int8.pte, the test runs' work dirs and report.md; it must not exist yet or be empty, so nothing in it is
replaced.
"""
import argparse
import os
import os.path as osp
import platform
import subprocess
import sys
from typing import Optional, Sequence

import torch
from mmengine.config import DictAction

from mmlightvit.deploy.onnx_export import SIZE_INPUT_NAME, build_export_target, export_onnx, median_ms, short_reason
from mmlightvit.deploy.quantize import calibration_feeds, cpu_has_vnni, cpu_model_and_flags, quantize_onnx
from mmlightvit.deploy.runtime import runtime_session
from mmlightvit.engine.amp import BF16_MODULES
from mmlightvit.engine.setup import read_data_config
from mmlightvit.utils.autocast import autocast_children
from mmlightvit.utils.cli import USER_ERRORS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The first metric of each task's summary line, the one the table reports.
METRICS = {'mmdet': ('coco/bbox_mAP', 'coco/segm_mAP'), 'mmseg': ('mIoU', ), 'mmpretrain': ('accuracy/top1', )}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='the trained model (what tools/train.py writes)')
    parser.add_argument('--out-dir', required=True, help='a new (or empty) folder for the files and report.md')
    parser.add_argument('--metrics', action='store_true', help='also evaluate every form with tools/test.py')
    parser.add_argument('--calibration-images', type=int, default=32)
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, help='threads of every form (default: PyTorch\'s)')
    parser.add_argument('--no-executorch', action='store_true', help='leave the ExecuTorch forms out (their '
                        'lowering takes minutes)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')
    return parser.parse_args(argv)


def cpu_description() -> str:
    name, flags = cpu_model_and_flags()
    shown = [f for f in flags if f.startswith(('avx512f', 'avx512_bf16', 'avx512_vnni', 'avx_vnni', 'amx'))]
    return (f'{name or platform.processor() or "unknown CPU"}, {os.cpu_count()} cores, flags: '
            f'{" ".join(shown) or "no AVX-512 / VNNI / AMX"}')


def failure_reason(err: Exception, first_line: bool = False) -> str:
    """One line of ``err`` for the table: its type and its last line (where a runtime's long message ends with the
    cause), or its first (where an exporter's message starts with it: ``short_reason``)."""
    line = short_reason(err, max_lines=1) if first_line else (str(err).strip().splitlines() or [''])[-1]
    return f'{type(err).__name__}: {line[:200]}'


def test_metrics(config: str, weights: str, work_dir: str, extra: Sequence[str], cfg_options) -> dict:
    """The summary metrics of ``tools/test.py config weights`` (run in a process of its own)."""
    options = ['--cfg-options', *[f'{k}={v}' for k, v in (cfg_options or {}).items()]] if cfg_options else []
    proc = subprocess.run([sys.executable, 'tools/test.py', config, weights, '--work-dir', work_dir, *extra,
                           *options], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'tools/test.py {weights} {" ".join(extra)} failed:\n{proc.stderr[-2000:]}')
    # the summary: the last line of the test loop (Epoch(test) or, for iteration-based configs, Iter(test))
    lines = [line for line in proc.stdout.splitlines() if 'Epoch(test)' in line or 'Iter(test)' in line]
    if not lines:
        raise RuntimeError(f'tools/test.py {weights} {" ".join(extra)} printed no test summary:\n{proc.stdout[-2000:]}')
    words = lines[-1].split()
    return {key.rstrip(':'): float(value) for key, value in zip(words, words[1:]) if key.endswith(':')
            and value.replace('.', '', 1).isdigit()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if osp.exists(args.out_dir) and os.listdir(args.out_dir):
        print(f'error: --out-dir {args.out_dir} exists and is not empty; give a new folder.', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        target = build_export_target(args.config, args.checkpoint, 'model', args.cfg_options)
    except USER_ERRORS as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    cfg = read_data_config(args.config, args.cfg_options)
    float_file, int8_file = osp.join(args.out_dir, 'model.onnx'), osp.join(args.out_dir, 'model_int8.onnx')
    export_onnx(target, float_file)
    feeds = calibration_feeds(cfg, args.calibration_images, target.input_names, 'train')
    quantize_onnx(float_file, int8_file, feeds)
    feed = calibration_feeds(cfg, 1, target.input_names, 'val')[0]
    inputs = [torch.from_numpy(feed[name]) for name in target.input_names]

    module = target.module
    model = getattr(module, 'detector', None) or getattr(module, 'segmentor', None) or module.classifier
    bf16_modules = BF16_MODULES.get(cfg.get('default_scope'))

    def pytorch(bf16: bool):
        def run():
            with torch.inference_mode():
                if not bf16:
                    return module(*inputs)
                with autocast_children(model, bf16_modules, 'cpu', torch.bfloat16):
                    return module(*inputs)
        return run

    forms = [('PyTorch eager fp32', pytorch(False), args.checkpoint, []),
             ('PyTorch BF16 autocast', pytorch(True), args.checkpoint, ['--bf16'])]
    failures = {}
    runtime_forms = [('onnxruntime', 'fp32', float_file), ('onnxruntime', 'INT8', int8_file),
                     ('openvino', 'fp32', float_file), ('openvino', 'BF16', float_file),
                     ('openvino', 'INT8', int8_file)]
    for backend, precision, file in runtime_forms:
        name, bf16 = f'{backend} {precision}', precision == 'BF16'
        try:
            session = runtime_session(file, backend, args.threads, bf16)
        except Exception as err:  # a runtime that cannot compile the file (or this CPU lacks BF16): in the table
            failures[name] = failure_reason(err)
            continue
        forms.append((name, lambda s=session: s.run(None, feed), file, ['--backend', backend] + ['--bf16'] * bf16))
    if not args.no_executorch:
        # ExecuTorch programs at the validation image's size, one image (what an app on a phone runs)
        calibration = [tuple(torch.from_numpy(f[name]) for name in target.input_names) for f in feeds]
        for precision, file, observed in (('fp32', 'model.pte', None), ('INT8', 'model_int8.pte', calibration)):
            name, file = f'executorch {precision}', osp.join(args.out_dir, file)
            try:
                from mmlightvit.deploy.executorch_export import export_executorch
                export_executorch(target, file, tuple(inputs[0].shape[2:]), dynamic=False, calibration=observed,
                                  calibration_note=f'{len(feeds)} training images')
                session = runtime_session(file, 'executorch', args.threads)
            except Exception as err:  # a model ExecuTorch cannot take (a two-stage detector, ...): in the table
                failures[name] = failure_reason(err, first_line=True)
                continue
            forms.append((name, lambda s=session: s.run(None, feed), file, []))
    times = {name: median_ms(run, args.warmup, args.repeat) for name, run, _, _ in forms}
    results = {}
    if args.metrics:
        for name, _, weights, extra in forms:
            work_dir = osp.join(args.out_dir, 'test_' + name.lower().replace(' ', '_'))
            try:
                results[name] = test_metrics(args.config, weights, work_dir, extra, args.cfg_options)
            except RuntimeError as err:  # e.g. a one-size program and test images of other sizes
                results[name] = {}
                failures[f'{name} (metrics)'] = failure_reason(err)
    # those of the task's metrics the config's evaluator gives (a box-only detector: no mask AP)
    metric_names = [m for m in METRICS.get(cfg.get('default_scope'), ()) if m in results.get('PyTorch eager fp32', {})]

    size, threads = 'x'.join(str(s) for s in inputs[0].shape), torch.get_num_threads()
    lines = [f'Config {osp.basename(args.config)}, checkpoint {osp.basename(args.checkpoint)}; input {size} (one '
             f'validation image, preprocessed{", with its size" if SIZE_INPUT_NAME in feed else ""}); '
             f'{threads} thread{"s" if threads > 1 else ""}; CPU: {cpu_description()}; INT8 weights '
             f'{"8" if cpu_has_vnni() else "7"}-bit, {len(feeds)} calibration images; median of {args.repeat} runs.',
             '', '| form | latency (ms) | speed-up |' + ''.join(f' {m} | change |' for m in metric_names),
             '| --- | --- | --- |' + ' --- | --- |' * len(metric_names)]
    base_ms = times['PyTorch eager fp32']
    for name, _, _, _ in forms:
        row = f'| {name} | {times[name]:.1f} | {base_ms / times[name]:.2f} | '
        for metric in metric_names:
            value, base = results[name].get(metric, float('nan')), results['PyTorch eager fp32'][metric]
            row += f'{value:.3f} | {value - base:+.3f} | '
        lines.append(row.rstrip())
    lines += [f'| {name} | fails: {reason} |' for name, reason in failures.items()]
    report = '\n'.join(lines)
    print(report)
    with open(osp.join(args.out_dir, 'report.md'), 'w') as f:
        f.write(report + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
