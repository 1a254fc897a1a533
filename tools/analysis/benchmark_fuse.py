"""Latency of the RepViT backbone as trained (unfused) vs re-parameterised (fused), as a markdown table.

    python tools/analysis/benchmark_fuse.py [--archs m0.9 m1.1] [--shapes 224x224 800x1280] [--repeat 20]
        [--warmup 3] [--threads 4] [--devices cpu cuda]

Batch 1, eval mode, ``torch.no_grad()``. Each repeat runs the unfused and the fused model once each, in
alternating order, so both forms see the same background load; the table gives the median over repeats (warm-up
runs excluded) and the ratio unfused / fused (> 1: folding helps). The last column is the largest difference
between the two forms' outputs relative to the output's scale (a sanity check; folding is exact up to float
rounding). This is a benchmark, not a test: numbers depend on the machine, its load and the thread count.
"""
import argparse
import copy
import statistics
import time

import torch

from mmlightvit.models.backbones.repvit import RepViT
from mmlightvit.models.layers import fuse_model


def parse_shape(text: str):
    height, _, width = text.lower().partition('x')
    return int(height), int(width or height)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--archs', nargs='+', default=['m0.9', 'm1.0', 'm1.1', 'm1.5', 'm2.3'])
    parser.add_argument('--shapes', nargs='+', default=['224x224', '800x1280'], help='H x W, e.g. 800x1280')
    parser.add_argument('--repeat', type=int, default=20, help='timed runs of each form (median reported)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs of each form first')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    parser.add_argument('--devices', nargs='+', default=None,
                        help='cpu and/or cuda (default: cpu, plus cuda when available)')
    args = parser.parse_args(argv)
    args.shapes = [parse_shape(s) for s in args.shapes]
    if args.devices is None:
        args.devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    return args


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so the equivalence column checks real folding, not identity BNs."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def run_once(model, x, device) -> float:
    if device == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    model(x)
    if device == 'cuda':
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


@torch.no_grad()
def benchmark(arch, shape, device, repeat, warmup):
    unfused = RepViT(arch=arch, out_indices=(0, 1, 2, 3)).eval()
    randomise_bn(unfused)
    fused = fuse_model(copy.deepcopy(unfused).eval())
    unfused, fused = unfused.to(device), fused.to(device)
    x = torch.randn(1, 3, *shape, device=device)

    out_u, out_f = unfused(x), fused(x)
    rel_diff = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item() for a, b in zip(out_u, out_f))

    for _ in range(warmup):
        run_once(unfused, x, device)
        run_once(fused, x, device)
    times = {'unfused': [], 'fused': []}
    for r in range(repeat):
        # Alternate which form goes first, so neither always runs right after the other (caches, clocks).
        order = ('unfused', 'fused') if r % 2 == 0 else ('fused', 'unfused')
        for name in order:
            times[name].append(run_once(unfused if name == 'unfused' else fused, x, device))
    n_unfused = sum(p.numel() for p in unfused.parameters())
    n_fused = sum(p.numel() for p in fused.parameters())
    return statistics.median(times['unfused']), statistics.median(times['fused']), rel_diff, n_unfused, n_fused


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'RepViT backbone (4 outputs), batch 1, eval, no_grad; median of {args.repeat} interleaved runs after '
          f'{args.warmup} warm-up runs; torch {torch.__version__}, {torch.get_num_threads()} CPU threads.\n')
    print('| variant | input (H x W) | device | params unfused / fused (M) | unfused (ms) | fused (ms) '
          '| unfused / fused | max rel. output diff |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    rows = []
    for device in args.devices:
        for arch in args.archs:
            for shape in args.shapes:
                t_u, t_f, diff, n_u, n_f = benchmark(arch, shape, device, args.repeat, args.warmup)
                rows.append(dict(arch=arch, shape=shape, device=device, unfused_ms=t_u, fused_ms=t_f, diff=diff))
                print(f'| {arch.upper()} | {shape[0]} x {shape[1]} | {device} | {n_u / 1e6:.2f} / {n_f / 1e6:.2f} '
                      f'| {t_u:.1f} | {t_f:.1f} | {t_u / t_f:.2f} | {diff:.1e} |', flush=True)
    return rows


if __name__ == '__main__':
    main()
