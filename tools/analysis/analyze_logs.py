"""Loss / metric curves and a timing summary from training runs (mmengine's ``vis_data/scalars.json``).

    # loss curves of two runs in one figure
    python tools/analysis/analyze_logs.py plot work_dirs/run_a work_dirs/run_b --keys loss loss_mask --out loss.png
    # validation metric over training
    python tools/analysis/analyze_logs.py plot work_dirs/run_a --keys coco/bbox_mAP --out ap.png
    # seconds per iteration, iterations, last validation metrics of each run
    python tools/analysis/analyze_logs.py summary work_dirs/run_a work_dirs/run_b

A RUN is a work dir (its newest ``<time>/vis_data/scalars.json`` is read), a timestamped run folder, or a
``scalars.json`` file. Training values (loss, lr, time, ...) are plotted against the iteration; validation metrics
against mmengine's step for them (the epoch in epoch-based runs, the iteration in iteration-based runs). The
mmdet / mmseg ``analyze_logs.py`` tools expect mmengine's older per-run ``.json`` layout; this one reads the
current one and works for detection and segmentation runs alike.
"""
import argparse
import glob
import json
import os
import statistics
import sys
from typing import Dict, List, Tuple


def find_scalars(run: str) -> str:
    if os.path.isfile(run):
        return run
    candidates = sorted(glob.glob(os.path.join(run, 'vis_data', 'scalars.json'))
                        or glob.glob(os.path.join(run, '*', 'vis_data', 'scalars.json')))
    if not candidates:
        raise SystemExit(f'{run}: no vis_data/scalars.json here or in its timestamped run folders '
                         '(is it a work dir of tools/train.py?)')
    return candidates[-1]  # timestamped folders sort by time: the newest run


def load_run(run: str) -> Tuple[List[dict], List[dict]]:
    """(training records, validation records) of a run; training records are the ones with an 'iter'."""
    train, val = [], []
    with open(find_scalars(run)) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                (train if 'iter' in record else val).append(record)
    return train, val


def series(records: List[dict], key: str, x_key: str) -> Tuple[List[float], List[float]]:
    points = [(r[x_key], r[key]) for r in records if key in r and x_key in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot(runs: List[str], keys: List[str], out: str, legend: List[str] = None, title: str = None) -> Dict[str, int]:
    """One panel per key, one line per run; returns how many points each panel got."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    legend = legend or [os.path.basename(os.path.normpath(r)) for r in runs]
    if len(legend) != len(runs):
        raise SystemExit(f'--legend has {len(legend)} names for {len(runs)} runs')
    loaded = [load_run(r) for r in runs]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 3 * len(keys)), squeeze=False)
    counts = {}
    for key, ax in zip(keys, axes[:, 0]):
        counts[key] = 0
        for name, (train, val) in zip(legend, loaded):
            in_train = any(key in r for r in train)
            xs, ys = series(train, key, 'iter') if in_train else series(val, key, 'step')
            if xs:
                ax.plot(xs, ys, label=name, marker='o' if len(xs) < 30 else None)
                counts[key] += len(xs)
                ax.set_xlabel('iteration' if in_train else 'validation step (epoch or iteration)')
        if not counts[key]:
            available = sorted({k for train, val in loaded for r in train + val for k in r})
            raise SystemExit(f'no run logged {key!r}; logged keys: {", ".join(available)}')
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    return counts


def summary(runs: List[str]) -> str:
    """Markdown: per run, iterations logged, median seconds per iteration, and the last validation metrics."""
    lines = ['| run | iterations | s / iter (median) | data s / iter | last validation |',
             '| --- | --- | --- | --- | --- |']
    for run in runs:
        train, val = load_run(run)
        times = [r['time'] for r in train if 'time' in r][1:]  # the first window includes start-up
        data_times = [r['data_time'] for r in train if 'data_time' in r][1:]
        last_iter = max((r['iter'] for r in train), default=0)
        metrics = {k: v for k, v in (val[-1] if val else {}).items() if k not in ('step', 'time', 'data_time')}
        shown = ', '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}' for k, v in metrics.items())
        seconds = f'{statistics.median(times):.3f}' if times else '-'
        data_seconds = f'{statistics.median(data_times):.3f}' if data_times else '-'
        lines.append(f'| {run} | {last_iter} | {seconds} | {data_seconds} | {shown or "-"} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    plot_parser = commands.add_parser('plot', help='curves of logged values')
    plot_parser.add_argument('runs', nargs='+')
    plot_parser.add_argument('--keys', nargs='+', default=['loss'], help='logged values to plot (default: loss)')
    plot_parser.add_argument('--out', required=True, help='PNG file to write')
    plot_parser.add_argument('--legend', nargs='+', help='a name per run (default: folder names)')
    plot_parser.add_argument('--title')
    summary_parser = commands.add_parser('summary', help='timing and last validation metrics of runs')
    summary_parser.add_argument('runs', nargs='+')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'plot':
        counts = plot(args.runs, args.keys, args.out, args.legend, args.title)
        print(f'{args.out}: ' + ', '.join(f'{k} ({n} points)' for k, n in counts.items()))
    else:
        print(summary(args.runs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
