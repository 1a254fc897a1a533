"""Time and peak memory of TransNeXt's attention code paths, as a markdown table.

    python tools/analysis/benchmark_transnext.py [--arch tiny] [--shapes 320x512 800x1280] [--repeat 5]
        [--modes forward train] [--paths efficient fused] [--batch 1] [--device cpu|cuda] [--threads 2]
        [--img-size 224] [--extrapolation]

Paths (``--paths BASELINE CANDIDATE``, the same weights):

* ``reference``: ``attn_impl='reference'`` (unfold, whole pooled attention matrix, bias rebuilt every forward);
* ``efficient``: ``attn_impl='efficient'`` with ``fast_inference=False``: shifted views and query chunks, the
  position bias rebuilt every forward (the inference path before the fused form, and the path of training);
* ``fused``: ``attn_impl='efficient'`` with ``fast_inference=True`` (the default): in eval mode without autograd on
  the CPU, the position-bias tables cached per input size and the pooled attention through the CPU flash-attention
  kernel. In training (``--modes train``) it is the ``efficient`` path.

For every shape and mode (``forward``: eval, ``torch.no_grad()``; ``train``: forward + backward of the summed
outputs) both paths run. Peak memory is measured in a fresh subprocess per path so the peaks do not mix:

* CUDA: ``torch.cuda.max_memory_allocated`` above what the model and input hold;
* CPU: the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) above its resident
  set just before the first run (tensor memory plus allocator overhead; a coarse but honest number). The first run
  builds whatever a path caches, so the fused path's peak includes its table cache.

Time is measured in one process on one model whose path is switched between runs: after a warm-up run of each,
``--repeat`` rounds run both paths back to back, alternating which goes first, so both see the same background
load; the table gives the medians.
The ratio columns are baseline / candidate (> 1: the candidate is faster or leaner). The last column is the
largest difference of the two paths' outputs relative to their scale. This is a benchmark, not a test: numbers
depend on the machine, its load and the thread count.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from mmlightvit.models.backbones.transnext import TransNeXt
from mmlightvit.models.layers import aggregated_attention as aa_module

#: Path name -> (attn_impl, fast_inference).
PATHS = {'reference': ('reference', False), 'efficient': ('efficient', False), 'fused': ('efficient', True)}


def parse_shape(text: str):
    height, _, width = text.lower().partition('x')
    return int(height), int(width or height)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--shapes', nargs='+', default=['320x512', '800x1280'], help='H x W, e.g. 800x1280')
    parser.add_argument('--modes', nargs='+', default=['forward'], choices=['forward', 'train'])
    parser.add_argument('--paths', nargs=2, default=['efficient', 'fused'], choices=sorted(PATHS),
                        metavar='PATH', help=f'baseline and candidate, of {sorted(PATHS)} (default: efficient fused)')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs per measurement (median reported)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    parser.add_argument('--img-size', type=int, default=224,
                        help='img_size of the model (CPB tables; the COCO Mask R-CNN config uses 800)')
    parser.add_argument('--extrapolation', action='store_true', help='extrapolation test mode')
    parser.add_argument('--chunk-elements', type=int, default=None,
                        help='query-chunk budget of the efficient path (elements of one chunk of logits; default '
                        'the library default 2**24; 0: never chunk)')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per measurement subprocess')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------
# One measurement (runs in its own process)


def _rss_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def _reset_cpu_peak() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def measure(args, path: str, mode: str, shape) -> dict:
    """Peak memory of the first run of ``path`` (tables built, gradients allocated) in this process."""
    _, run, sync = build(args, path, mode, shape)
    device = torch.device(args.device)
    if device.type == 'cuda':
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        ok = _reset_cpu_peak()
        base = _rss_kb('VmRSS') * 1024
    run()
    sync()
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kb('VmHWM') * 1024 - base if ok else float('nan')
    return dict(peak=peak)


def use_path(model: TransNeXt, path: str) -> TransNeXt:
    impl, fast = PATHS[path]
    model.set_attn_impl(impl)
    model.fast_inference = fast
    return model


def build(args, path: str, mode: str, shape):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.chunk_elements is not None:
        aa_module.MAX_CHUNK_ELEMENTS = args.chunk_elements
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = TransNeXt(args.arch, img_size=args.img_size, extrapolation=args.extrapolation)
    model = use_path(model, path).to(device).train(mode == 'train')
    x = torch.randn(args.batch, 3, *shape, generator=torch.Generator().manual_seed(1)).to(device)

    def run():
        if mode == 'train':
            model.zero_grad(set_to_none=True)
            outs = model(x)
            sum(o.float().mean() for o in outs).backward()
            return [o.detach() for o in outs]
        with torch.no_grad():
            return model(x)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    return model, run, sync


def time_both(args, mode: str, shape) -> dict:
    """Median seconds per run of each path, alternating on one model; and the output difference."""
    paths = args.paths
    model, run, sync = build(args, paths[0], mode, shape)
    outs, times = {}, {path: [] for path in paths}
    for path in paths:  # warm-up (tables, caches, allocator) and outputs
        use_path(model, path)
        outs[path] = [o.double().cpu() for o in run()]
    for i in range(args.repeat):
        for path in (paths if i % 2 == 0 else paths[::-1]):
            use_path(model, path)
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[path].append(time.perf_counter() - start)
    diff = max((a - b).abs().max().item() / max(a.abs().max().item(), 1e-12)
               for a, b in zip(outs[paths[0]], outs[paths[1]]))
    return dict(diff=diff, **{path: statistics.median(t) if t else float('nan') for path, t in times.items()})


# ----------------------------------------------------------------------------------------------------------------
# Driver


def _worker_cmd(argv, path, mode, shape):
    return [sys.executable, os.path.abspath(__file__), *argv, '--worker', f'{path}:{mode}:{shape[0]}x{shape[1]}']


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        path, mode, shape = args.worker.split(':')
        print('RESULT ' + json.dumps(measure(args, path, mode, parse_shape(shape))))
        return
    if args.paths[0] == args.paths[1]:
        raise SystemExit('--paths needs two different paths.')
    baseline, candidate = args.paths
    rows = []
    for shape in [parse_shape(s) for s in args.shapes]:
        for mode in args.modes:
            results = {}
            for path in args.paths:
                proc = subprocess.run(_worker_cmd(argv, path, mode, shape), capture_output=True, text=True,
                                      timeout=args.timeout)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')), None)
                if line is None:
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
                    results[path] = dict(error=tail[0][:80])
                else:
                    results[path] = json.loads(line[len('RESULT '):])
            if not any('error' in r for r in results.values()):
                timing = time_both(args, mode, shape)
                for path in args.paths:
                    results[path]['time'] = timing[path]
                results['diff'] = timing['diff']
            print(f'# {shape[0]}x{shape[1]} {mode}: {results}'[:200], file=sys.stderr, flush=True)
            rows.append((shape, mode, results))
    budget = aa_module.MAX_CHUNK_ELEMENTS if args.chunk_elements is None else args.chunk_elements
    print(f'\nTransNeXt-{args.arch}, batch {args.batch}, {args.device}'
          + (f', {args.threads} thread(s)' if args.threads else '')
          + f', {"extrapolation" if args.extrapolation else "interpolation"} mode, img_size {args.img_size}'
          + f', efficient chunk budget {budget} elements, median of {args.repeat} alternating runs\n')
    print(f'| input | mode | {baseline} time (s) | {candidate} time (s) | time ratio | {baseline} peak (MB) '
          f'| {candidate} peak (MB) | memory ratio | max rel diff |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for shape, mode, res in rows:
        base, cand = res[baseline], res[candidate]
        if 'error' in base or 'error' in cand:
            print(f'| {shape[0]}x{shape[1]} | {mode} | {base.get("error", "")} | {cand.get("error", "")} '
                  '| | | | | |')
            continue
        print(f'| {shape[0]}x{shape[1]} | {mode} | {base["time"]:.3f} | {cand["time"]:.3f} '
              f'| {base["time"] / cand["time"]:.2f} | {base["peak"] / 2**20:.0f} | {cand["peak"] / 2**20:.0f} '
              f'| {base["peak"] / max(cand["peak"], 1):.2f} | {res["diff"]:.1e} |')


if __name__ == '__main__':
    main()
