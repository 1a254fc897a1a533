r"""Latency and throughput of mmlightvit backbones and whole models, as a markdown table (and a PNG plot).

    # backbones (all four stage outputs) at 224x224, batch 1 and 16, eager and re-parameterised
    python tools/analysis/benchmark.py RepViT:m1.1 EdgeNeXt:small
    # against timm / fastervit on the same input and weights, in the same run
    python tools/analysis/benchmark.py RepViT:m1.1 FasterViT:0 --compare
    # whole detector / segmentor (predict mode, post-processing included) at the task's input size
    python tools/analysis/benchmark.py configs/repvit/mask-rcnn_repvit-m1.1_coco.py --batch 1
    # the backbones of several configs, plotted against the paper's box AP from the metafiles
    python tools/analysis/benchmark.py configs/*/mask-rcnn_*_coco.py --backbone-only --plot work_dirs/ap.png
    # RepViT as trained against re-parameterised, at several sizes
    python tools/analysis/benchmark.py RepViT:m0.9 RepViT:m1.1 --shapes 224x224 800x1280 --batch 1
    # CUDA, fp32 + fp16 + bf16 (autocast), plus torch.compile
    python tools/analysis/benchmark.py RepViT:m1.1 --device cuda --dtype fp32 fp16 bf16 --compile
    # the deployable CPU forms of a backbone against timm's re-parameterised model
    python tools/analysis/benchmark.py RepViT:m1.1 --compare --deploy-forms --compile --shape 800 1280 --batch 1
    # where a whole detector's predict time goes (backbone, neck, RPN, RoI heads, post-processing)
    python tools/analysis/benchmark.py configs/repvit/mask-rcnn_repvit-m1.1_coco.py --profile --batch 1
    # TransNeXt's attention paths at detection sizes, with the CPU peak memory of each (a process per form)
    python tools/analysis/benchmark.py TransNeXt:tiny --attention-paths efficient flash --memory \
        --shapes 320x512 800x1280 --batch 1 --backbone-options img_size=800
    # a training step (forward + backward) instead of inference
    python tools/analysis/benchmark.py TransNeXt:tiny --attention-paths reference efficient --train --batch 2

Forms timed per target (see ``mmlightvit/analysis/benchmark.py``): ``eager``; ``fused`` (re-parameterised, where
anything folds); with ``--compile``, ``torch.compile`` of the last of those; with ``--compare``, the reference
implementation's trunk (``forward_features``) with the same weights; with ``--attention-paths`` (TransNeXt), the
given attention code paths instead of eager. Each form runs ``--warmup`` times untimed, then ``--repeat``
interleaved rounds; with ``--settle N`` (default 1 with ``--deploy-forms``, else 0) each timed run comes right after
N untimed runs of the same form, so that PyTorch's still-spinning threads do not slow a form that another runtime
(onnxruntime) runs. The table gives medians, images/s = batch / latency, ``first / form`` (> 1: faster than the
first form, eager or the first attention path), the peak memory of one run (CUDA: always; CPU: with ``--memory``,
the resident-set peak of the form's first run in a process of its own), the largest output difference against the
first form, and the target's MACs (the project's counter, at the input size) with the achieved GMAC/s (= GFLOP/s in
the project's convention, one multiply-add = one FLOP). ``--deploy-forms`` adds, for backbones on the CPU,
``channels-last``, ``oneDNN`` (a frozen TorchScript graph with oneDNN fusions) and the runtimes' float32 and INT8
forms of the fused model (``--deploy-runtimes``: onnxruntime, OpenVINO, ExecuTorch with XNNPACK); on CUDA, TensorRT
engines of it in float32, float16 and INT8 (built for the timed batch sizes at each input size; they need the
``tensorrt`` package). ``--compare`` sets our eager model against the reference's and our deployable forms against
the reference's re-parameterised model (timm's ``reparameterize_model``) where it has one. ``--profile`` (whole
models) breaks the eager predict time down by stage. Numbers depend on the machine, its load and the thread count:
compare ratios from one run, not numbers across runs.
"""
import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict

import torch
from mmengine.config import DictAction

from mmlightvit.analysis import benchmark as bench
from mmlightvit.analysis.complexity import config_scope, default_shape, predict_batch
from mmlightvit.apis.model import build_model, config_without_pretrained
from mmlightvit.deploy.runtime import BACKENDS

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('targets', nargs='+', help='FAMILY:ARCH (e.g. RepViT:m1.1) or mmdet / mmseg config files')
    parser.add_argument('--shapes', nargs='+', metavar='HxW', help='several input sizes, e.g. 224x224 800x1280')
    parser.add_argument('--shape', type=int, nargs='+', metavar='N',
                        help='input H W (or one number for a square); default 224x224 for backbones, the '
                        "task's size for whole models (800x1280 mmdet, 512x512 mmseg)")
    parser.add_argument('--batch', type=int, nargs='+', default=None,
                        help='batch sizes (default: 1 16 for backbones, 1 2 for whole models)')
    parser.add_argument('--backbone-only', action='store_true', help="time each config's backbone alone")
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--dtype', nargs='+', default=['fp32'], choices=sorted(bench.DTYPES),
                        help='fp16 / bf16 run under autocast (fp16 on CUDA only)')
    parser.add_argument('--no-fuse', action='store_true', help='skip the re-parameterised form')
    parser.add_argument('--compile', action='store_true', help='add a torch.compile form (first call timed apart)')
    parser.add_argument('--compile-backend', default='inductor', help='torch.compile backend (default inductor)')
    parser.add_argument('--deploy-forms', action='store_true',
                        help='backbones (FAMILY:ARCH, or configs with --backbone-only): on the CPU add channels-last, '
                        'oneDNN (TorchScript), onnxruntime, OpenVINO and ExecuTorch (XNNPACK) forms, float32 and INT8; '
                        'on CUDA, TensorRT engines in float32, float16 and INT8')
    parser.add_argument('--deploy-runtimes', nargs='+', choices=BACKENDS, default=list(BACKENDS),
                        help='--deploy-forms on the CPU: the runtimes timed (default: all; ExecuTorch\'s lowering '
                        'takes a minute or more per program)')
    parser.add_argument('--profile', action='store_true',
                        help='whole models: time the stages of predict (backbone, neck, heads, post-processing)')
    parser.add_argument('--no-macs', action='store_true', help='skip counting MACs (large models take a while)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='config targets: override settings, e.g. model.test_cfg.rcnn.score_thr=0 (with random '
                        'weights a detector keeps no boxes; a threshold of 0 keeps max_per_img, as a trained one)')
    parser.add_argument('--attention-paths', nargs='+', metavar='PATH',
                        choices=sorted(bench.ATTENTION_PATHS) + sorted(bench.DEPRECATED_ATTENTION_PATHS),
                        help=f'TransNeXt targets: time these attention paths, of {sorted(bench.ATTENTION_PATHS)}, '
                        "as the forms (the first is the baseline; 'fused', the former name of 'flash', still works "
                        'for one release, with a deprecation warning)')
    parser.add_argument('--backbone-options', nargs='+', action=DictAction, default={},
                        help='FAMILY:ARCH targets: constructor arguments, e.g. img_size=800 extrapolation=True')
    parser.add_argument('--train', action='store_true',
                        help='backbones: time a training step (train mode, forward + backward) instead of inference')
    parser.add_argument('--memory', action='store_true',
                        help='CPU: measure the peak resident memory of each form, each in a fresh process')
    parser.add_argument('--memory-worker', help=argparse.SUPPRESS)
    parser.add_argument('--compare', action='store_true',
                        help='add the reference implementation (timm: RepViT, EdgeNeXt; fastervit: FasterViT)')
    parser.add_argument('--repeat', type=int, default=10, help='timed rounds (median reported)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs of each form first')
    parser.add_argument('--settle', type=int, default=None,
                        help='untimed runs of a form right before each of its timed runs (default: 1 with '
                        '--deploy-forms, whose onnxruntime form would otherwise find the cores still busy with '
                        "PyTorch's threads, else 0)")
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    parser.add_argument('--out', help='also write the table to this markdown file (and the numbers to .json)')
    parser.add_argument('--plot', help='PNG: latency of each config against its paper metric from the metafiles')
    parser.add_argument('--metric', default=None,
                        help="metric for --plot (default: 'box AP' for mmdet, 'mIoU' for mmseg configs)")
    args = parser.parse_args(argv)
    if args.shape is not None and args.shapes:
        parser.error('give --shape or --shapes, not both')
    if args.shapes:
        try:
            args.shapes = [tuple(int(n) for n in text.lower().split('x')) for text in args.shapes]
        except ValueError:
            parser.error(f'--shapes takes HxW sizes, e.g. 224x224; got {args.shapes}')
        if any(len(shape) != 2 for shape in args.shapes):
            parser.error(f'--shapes takes HxW sizes, e.g. 224x224; got {args.shapes}')
    if args.shape is not None:
        if len(args.shape) not in (1, 2):
            parser.error('--shape takes H W or a single size')
        args.shape = tuple(args.shape) * (3 - len(args.shape))
    sizes = [args.shape] if args.shape is not None else args.shapes or []
    if any(n <= 0 for size in sizes for n in size):
        parser.error(f'input sizes must be positive, got {" ".join("x".join(map(str, s)) for s in sizes)}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    if args.device == 'cpu' and 'fp16' in args.dtype:
        parser.error('fp16 autocast is for CUDA; on the CPU use --dtype bf16')
    if args.compare and any(bench.parse_arch_target(t) is None for t in args.targets):
        parser.error('--compare times backbones: give FAMILY:ARCH targets')
    if args.deploy_forms and args.device == 'cuda':
        from mmlightvit.deploy.tensorrt import TensorRTError, import_tensorrt
        try:
            import_tensorrt()
        except TensorRTError as err:
            parser.error(f'--deploy-forms on CUDA are TensorRT engines: {err}')
    if args.deploy_forms and not args.backbone_only and any(bench.parse_arch_target(t) is None for t in args.targets):
        parser.error('--deploy-forms time backbones: give FAMILY:ARCH targets, or configs with --backbone-only')
    arch_only = [name for name in ('attention_paths', 'backbone_options', 'train') if getattr(args, name)]
    if arch_only and any(bench.parse_arch_target(t) is None for t in args.targets):
        parser.error(f'--{arch_only[0].replace("_", "-")} is for backbones: give FAMILY:ARCH targets')
    if args.attention_paths and any(not t.startswith('TransNeXt:') for t in args.targets):
        parser.error('--attention-paths are TransNeXt\'s: give TransNeXt:ARCH targets')
    if args.attention_paths:  # former names: their current ones, with a deprecation warning
        args.attention_paths = [bench.attention_path(path) for path in args.attention_paths]
    if args.train and (args.deploy_forms or args.compile):
        parser.error('--train times training steps: the deploy and compiled forms are inference forms')
    if args.settle is None:
        args.settle = 1 if args.deploy_forms else 0
    return args


def build_target(target: str, args, shape=None):
    """-> (forms, example input builder(batch), shape, whole_model)."""
    from mmlightvit.registry import MODELS
    arch_target = bench.parse_arch_target(target)
    if arch_target is not None:
        family, arch = arch_target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = MODELS.build(
                dict(type=f'mmlightvit.{family}', arch=arch, out_indices=(0, 1, 2, 3), **args.backbone_options))
        # the reference forms load their weights into ours first, so every form computes the same function
        fuse = not (args.no_fuse or args.train)  # re-parameterised forms are for inference
        references = bench.reference_forms(family, arch, backbone, fuse=fuse) if args.compare else []
        shape = shape or (224, 224)
        if args.attention_paths:
            forms = bench.attention_path_forms(backbone, args.attention_paths)
        else:
            forms = bench.backbone_forms(backbone, fuse=fuse)
        if args.deploy_forms:
            forms += deploy_forms(forms[-1], shape, family, args)
        forms += references
        if args.train:
            forms = bench.as_training_steps(forms)
        return forms, (lambda batch: torch.rand(batch, 3, *shape)), shape, False

    cfg = config_without_pretrained(target, args.cfg_options)
    if args.backbone_only:
        backbone = build_model(cfg, cfg.model.backbone, init_weights=True)
        shape = shape or (224, 224)
        forms = bench.backbone_forms(backbone, fuse=not args.no_fuse)
        if args.deploy_forms:
            forms += deploy_forms(forms[-1], shape, type(backbone).__name__, args)
        return forms, (lambda batch: torch.rand(batch, 3, *shape)), shape, False
    model = build_model(cfg, init_weights=True)
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # training only
    shape = shape or default_shape(cfg)
    forms = bench.model_forms(model, fuse=not args.no_fuse)
    return forms, (lambda batch: predict_batch(forms[0].module, config_scope(cfg), shape, batch)), shape, True


def deploy_forms(base: bench.Form, shape, backbone_type: str, args) -> list:
    """The deployed forms of ``base`` (the fused backbone where it folds): on the CPU channels-last, oneDNN and the
    runtimes' fp32 / INT8 forms; on CUDA the TensorRT engines."""
    import tempfile
    work_dir = tempfile.mkdtemp(prefix='benchmark-deploy-')
    if args.device == 'cuda':
        return bench.tensorrt_forms(base, shape, args.batch or [1, 16], backbone_type, work_dir)
    forms = [bench.channels_last_form(base), bench.onednn_form(base, torch.rand(1, 3, *shape))]
    return forms + bench.runtime_forms(base, shape, backbone_type, work_dir, args.deploy_runtimes,
                                       max_batch=max(args.batch or [16]))


def count_target_macs(target: str, forms, shape, whole_model: bool, args) -> int:
    """MACs per image of the target at ``shape``, from the project's counter (the eager form)."""
    from mmlightvit.analysis.complexity import count_backbone, count_model
    if whole_model or args.backbone_only:
        return count_model(config_without_pretrained(target, args.cfg_options), shape,
                           backbone_only=args.backbone_only).macs
    return count_backbone(forms[0].module, shape).macs


def metafile_metrics(metric: str = None) -> dict:
    """config path (relative to the repository) -> (metric name, value) from configs/*/metafile.yml."""
    from mmlightvit.apis.model_index import load_metafiles
    metrics = {}
    for metafile in load_metafiles().values():
        for model in metafile.get('Models', []):
            for result in model.get('Results') or []:
                values = result.get('Metrics') or {}
                name = metric or ('box AP' if 'box AP' in values else 'mIoU')
                if name in values:
                    metrics[os.path.normpath(model['Config'])] = (name, float(values[name]))
    return metrics


def plot_series(measurements, known: dict) -> dict:
    """{series: [(config, family, latency ms, metric), ...]} for the configs with a metafile metric (``known``,
    see :func:`metafile_metrics`): one series per form and precision (``fused``, ``onnxruntime int8 (fused)``,
    ``fused bf16``, ...), at the smallest batch measured; eager and fused are one series, ``PyTorch``, with the
    faster of the two."""
    batch = min(m.batch for m in measurements)
    series = {}
    for m in measurements:
        key = os.path.normpath(os.path.relpath(os.path.abspath(m.target), ROOT))
        if m.batch != batch or key not in known:
            continue
        name = 'PyTorch' if m.form in ('eager', 'fused') else m.form
        name += '' if m.dtype == 'fp32' else f' {m.dtype}'
        points = series.setdefault(name, {})
        if key not in points or m.median_ms < points[key][2]:
            points[key] = (key, key.split(os.sep)[1], m.median_ms, known[key][1])
    return {name: sorted(points.values(), key=lambda p: p[2]) for name, points in series.items()}


def plot(measurements, path: str, metric: str = None) -> int:
    """Latency against the metafile metric: one line per form and precision (:func:`plot_series`), one marker
    per family; returns the number of configs plotted."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    known = metafile_metrics(metric)
    series = plot_series(measurements, known)
    if not series:
        raise SystemExit(f'--plot: none of the configs has a {metric or "box AP / mIoU"} result in the metafiles')
    families = sorted({p[1] for points in series.values() for p in points})
    markers = dict(zip(families, 'osD^vP*X'))
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, points in series.items():
        line, = ax.plot([p[2] for p in points], [p[3] for p in points], label=name, alpha=0.8)
        for p in points:
            ax.plot(p[2], p[3], marker=markers[p[1]], color=line.get_color(), linestyle='none')
    for family in families:  # the marker legend
        ax.plot([], [], marker=markers[family], color='grey', linestyle='none', label=family)
    first = measurements[0]
    ax.set_xlabel(f'latency (ms), {first.device}, batch {min(x.batch for x in measurements)}')
    first_config = next(iter(series.values()))[0][0]
    ax.set_ylabel(f'{known[first_config][0]} (paper)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    return len({p[0] for points in series.values() for p in points})


def build_forms(target: str, args, shape):
    forms, make_input, shape, whole_model = build_target(target, args, shape)
    if args.compile:  # of the re-parameterised model where there is one
        base = next((form for form in forms if form.name == 'fused'), forms[0])
        forms.append(bench.compiled_form(base, whole_model, backend=args.compile_backend))
    bench.move(forms, args.device)
    return forms, make_input, shape, whole_model


def memory_worker(args) -> None:
    """In a fresh process: the peak memory of one form's first run (``--memory-worker`` is the request)."""
    request = json.loads(args.memory_worker)
    forms, make_input, shape, _ = build_forms(request['target'], args, tuple(request['shape']))
    form = next(form for form in forms if form.name == request['form'])
    del forms
    inputs = bench.batch_to(make_input(request['batch']), args.device)
    peak = bench.first_run_peak_mb(form, inputs, args.device, request['dtype'])
    print('RESULT ' + json.dumps(peak))


def measure_memory_apart(argv, measurement, timeout: float = 3600) -> float:
    """The CPU peak memory of one measured form, from a process of its own (NaN if that process failed)."""
    request = dict(target=measurement.target, shape=measurement.shape, batch=measurement.batch,
                   dtype=measurement.dtype, form=measurement.form)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, '--memory-worker', json.dumps(request)],
                          capture_output=True, text=True, timeout=timeout)
    line = next((line for line in proc.stdout.splitlines() if line.startswith('RESULT ')), None)
    if line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
        print(f'memory of {measurement.form} failed: {tail[0]}', file=sys.stderr)
        return float('nan')
    return json.loads(line[len('RESULT '):])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        return memory_worker(args)
    measurements, profiles = [], []
    runs = [(target, shape) for target in args.targets for shape in (args.shapes or [args.shape])]
    for target, shape in runs:
        forms, make_input, shape, whole_model = build_forms(target, args, shape)
        macs = None if args.no_macs else count_target_macs(target, forms, shape, whole_model, args)
        for batch in args.batch or ([1, 2] if whole_model else [1, 16]):
            inputs = bench.batch_to(make_input(batch), args.device)
            for dtype in args.dtype:
                rows = bench.time_forms(forms, inputs, args.device, dtype, args.repeat, args.warmup, target, shape,
                                        batch, macs, settle=args.settle)
                if args.memory and args.device == 'cpu':
                    for row in rows:
                        if not row.form.startswith('compiled'):  # its first run is the compilation
                            row.peak_memory_mb = measure_memory_apart(argv, row)
                measurements += rows
                print(f'done: {target} batch {batch} {dtype}', file=sys.stderr, flush=True)
            if args.profile and whole_model:
                profiles.append((target, shape, batch, bench.profile_predict(forms[0].module, inputs, args.device,
                                                                             args.repeat, args.warmup)))

    threads = torch.get_num_threads() if args.device == 'cpu' else None
    table = bench.markdown_table(measurements)
    print(f'torch {torch.__version__}, {args.device}' + (f' ({threads} threads)' if threads else '')
          + f'; median of {args.repeat} interleaved rounds after {args.warmup} warm-up runs'
          + (f', each timed run after {args.settle} untimed' if args.settle else '') + '; '
          + ('training steps (train mode, forward + backward).\n' if args.train else 'eval, no_grad.\n'))
    print(table)
    ratios = bench.reference_ratios(measurements)
    if ratios:
        print('\n' + '\n'.join(ratios))
    profile_tables = [bench.profile_table(*profile) for profile in profiles]
    for profile_table in profile_tables:
        print('\n' + profile_table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(table + '\n' + ''.join('\n' + line for line in ratios) + '\n'
                    + ''.join('\n' + t + '\n' for t in profile_tables))
        with open(os.path.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump([asdict(m) for m in measurements], f, indent=1)
    if args.plot:
        count = plot(measurements, args.plot, args.metric)
        print(f'\nplot of {count} configs: {args.plot}')
    return measurements


if __name__ == '__main__':
    main()
