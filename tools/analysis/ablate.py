"""Train and test a set of (ablation) configs, then collect their metrics into one table (markdown and CSV).

    # every config in a folder, one after the other, on this machine (CPU or one GPU)
    python tools/analysis/ablate.py configs/repvit/ablations/demo
    # a list of configs, 8 processes each (torchrun), with options for every run
    python tools/analysis/ablate.py configs/repvit/ablations/*.py --launcher pytorch --nproc 8
    # through Slurm (tools/slurm_train.sh / slurm_test.sh; GPUS etc. from the environment as there)
    python tools/analysis/ablate.py configs/repvit/ablations --launcher slurm --partition PARTITION
    # only (re)build the table from finished runs
    python tools/analysis/ablate.py configs/repvit/ablations/demo --collect-only
    # every config with seeds 0, 1, 2: the table shows mean ± standard deviation and the difference to the
    # baseline ± its standard error
    python tools/analysis/ablate.py configs/repvit/ablations/demo --seeds 3 --baseline NAME

Each config gets ``WORK_ROOT/<config name>/`` (default ``work_dirs/ablate``): training writes its checkpoints
there, ``test/`` holds the evaluation of the last checkpoint, and ``train.log`` / ``test.log`` the output of both
steps. A config whose test metrics already exist is not run again (``--force`` re-runs it), so an interrupted
ablation picks up where it stopped. The table lists every config with its status and the metrics of its test run
(``--metrics`` picks columns; ``--baseline`` adds the difference to one config); it is written to
``WORK_ROOT/summary.md`` and ``summary.csv`` and printed.

Two-stage ablations, as the papers run them: a config that sets ``pretrain_config = 'PATH'`` (an ImageNet classifier
config, relative to the config's folder) is fine-tuned from that classifier. The classifier is trained and tested
first, in ``WORK_ROOT/pretrain/<classifier config name>/`` (shared by every config that names it, and not run again
once it has test metrics; ``--pretrain-cfg-options`` apply to this stage); then the config is trained with its
backbone initialised from the classifier's last checkpoint (``init_cfg=dict(type='Pretrained', ...)``, loaded
strictly; the config that runs is written to ``WORK_ROOT/<config name>/finetune/<config name>.py``). The table
shows both stages: the classifier's test metrics as ``pretrain/<metric>`` beside the fine-tuned model's.

With ``--seeds N`` each config is trained N times, with ``randomness.seed`` 0 to N-1, in
``WORK_ROOT/<config name>/seed-<k>/``. The table then gives each metric as the mean over the seeds ± their sample
standard deviation, and the difference to the baseline's mean ± the standard error of that difference
(sqrt(s_a^2 / n_a + s_b^2 / n_b)): a difference within about two standard errors is not a finding.
"""
import argparse
import csv
import functools
import glob
import json
import math
import os
import re
import subprocess
import sys
import warnings
from typing import Dict, List, Optional, Tuple

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
PYTHON = sys.executable
# Logged values of a test run that are not metrics.
NOT_METRICS = {'step', 'iter', 'epoch', 'time', 'data_time', 'lr', 'memory'}
# mmengine's training log lines: 'Epoch(train)  [3][ 40/100]' or 'Iter(train) [ 40/600]'.
EPOCH_PROGRESS = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')
ITER_PROGRESS = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\]')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', help='config files and/or folders of config files')
    parser.add_argument('--work-root', default=os.path.join('work_dirs', 'ablate'),
                        help='one work dir per config under this folder (default work_dirs/ablate)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--nproc', type=int, default=1, help='processes per run with --launcher pytorch')
    parser.add_argument('--partition', help='Slurm partition with --launcher slurm')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both tools/train.py and tools/test.py for every config')
    parser.add_argument('--pretrain-cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both tools/train.py and tools/test.py for the classifiers that two-stage '
                        'configs are fine-tuned from (instead of --cfg-options)')
    parser.add_argument('--collect-only', action='store_true', help='do not run anything, only build the table')
    parser.add_argument('--force', action='store_true', help='re-run configs that already have test metrics')
    parser.add_argument('--metrics', nargs='+', help='metric columns (default: every metric of the test runs)')
    parser.add_argument('--baseline', help='config name (or path) whose metrics the others are compared with')
    parser.add_argument('--seeds', type=int, help='train each config N times (randomness.seed 0..N-1) and report '
                        'mean ± standard deviation')
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error('--seeds needs at least 1')
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    return args


def find_configs(paths: List[str]) -> List[str]:
    configs = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, '*.py')))
            if not found:
                raise SystemExit(f'{path}: no *.py configs in this folder')
            configs += found
        elif os.path.isfile(path):
            configs.append(path)
        else:
            raise SystemExit(f'{path}: no such config file or folder')
    return list(dict.fromkeys(os.path.abspath(c) for c in configs))  # in order, without repeats


def config_name(path: str) -> str:
    # not splitext: config names have dots of their own ('repvit-m1.1'), and --baseline may omit '.py'
    name = os.path.basename(path)
    return name[:-3] if name.endswith('.py') else name


def latest_test_metrics(work_dir: str) -> Optional[Dict[str, float]]:
    """Metrics of the newest finished test run under ``work_dir/test``: the last line of mmengine's
    ``test/<time>/<time>.json``, which a test run writes when it has evaluated."""
    logs = sorted(glob.glob(os.path.join(work_dir, 'test', '*', '*.json')))
    for path in reversed(logs):
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        if not lines:
            continue
        record = json.loads(lines[-1])
        metrics = {k: v for k, v in record.items() if k not in NOT_METRICS and isinstance(v, (int, float))}
        if metrics:
            return metrics
    return None


def run_dirs(work_root: str, name: str, seeds: Optional[int]) -> List[Tuple[Optional[int], str]]:
    """(seed, work dir) of each run of a config: one run in ``<name>/`` with the config's own seed, or one per
    seed in ``<name>/seed-<k>/``."""
    if seeds is None:
        return [(None, os.path.join(work_root, name))]
    return [(seed, os.path.join(work_root, name, f'seed-{seed}')) for seed in range(seeds)]


@functools.lru_cache(maxsize=None)  # asked for every seed of every config, in run_all and in collect
def pretrain_config(config: str) -> Optional[str]:
    """The classifier config a two-stage config is fine-tuned from (its ``pretrain_config``, an absolute path), or
    None."""
    from mmengine.config import Config
    if not os.path.isfile(config):  # a run collected by name only
        return None
    try:
        path = Config.fromfile(config).get('pretrain_config')
    except Exception:  # a config that does not load: its own run fails, is marked FAILED and logged, the rest go on
        return None
    if path is None:
        return None
    path = os.path.normpath(os.path.join(os.path.dirname(config), path))
    if not os.path.isfile(path):
        raise SystemExit(f'{config}: pretrain_config {path} does not exist')
    return path


def pretrain_dir(work_root: str, pretrain: str, seed: Optional[int]) -> str:
    """Where the classifier ``pretrain`` is trained (for the run with ``seed``, as :func:`run_dirs`)."""
    path = os.path.join(work_root, 'pretrain', config_name(pretrain))
    return path if seed is None else os.path.join(path, f'seed-{seed}')


def last_checkpoint(work_dir: str) -> str:
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def write_finetune_config(config: str, checkpoint: str, work_dir: str) -> str:
    """A config that is ``config`` with its backbone initialised from the classifier ``checkpoint`` (its
    ``backbone.*`` weights, loaded strictly); returns its path, ``work_dir/finetune/<config name>.py`` (the run
    itself saves the whole resolved config in ``work_dir`` as usual)."""
    path = os.path.join(work_dir, 'finetune', f'{config_name(config)}.py')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'# {config_name(config)}, fine-tuned from the classifier {checkpoint} (written by ablate.py)\n'
                f'_base_ = {os.path.abspath(config)!r}\n'
                f'model = dict(backbone=dict(init_cfg=dict(_delete_=True, type=\'Pretrained\', '
                f'checkpoint={os.path.abspath(checkpoint)!r})))\n')
    return path


def _step_command(step: str, config: str, work_dir: str, args, seed: Optional[int] = None,
                  pretraining: bool = False) -> List[str]:
    base_options = args.pretrain_cfg_options if pretraining else args.cfg_options
    cfg_options = list(base_options) + ([f'randomness.seed={seed}'] if seed is not None else [])
    options = ['--cfg-options', *cfg_options] if cfg_options else []
    if step == 'train':
        script_args = [config, '--work-dir', work_dir]
    else:
        script_args = [config, last_checkpoint(work_dir), '--work-dir', os.path.join(work_dir, 'test')]
    if args.launcher == 'pytorch':
        return ['bash', os.path.join(ROOT, 'tools', f'dist_{step}.sh'), script_args[0], str(args.nproc),
                *script_args[1:], *options]
    if args.launcher == 'slurm':  # slurm_train.sh takes the work dir as its fourth argument
        slurm_args = [config, work_dir] if step == 'train' else script_args
        return ['bash', os.path.join(ROOT, 'tools', f'slurm_{step}.sh'), args.partition,
                f'ablate-{config_name(config)}', *slurm_args, *options]
    return [PYTHON, os.path.join(ROOT, 'tools', f'{step}.py'), *script_args, *options]


def run_step(step: str, config: str, work_dir: str, args, progress, task, max_epochs: Optional[int] = None,
             seed: Optional[int] = None, pretraining: bool = False) -> bool:
    """Run train or test for one config, output to ``work_dir/<step>.log``; the progress bar follows training."""
    command = _step_command(step, config, work_dir, args, seed, pretraining)
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    with open(os.path.join(work_dir, f'{step}.log'), 'w') as log:
        log.write('$ ' + ' '.join(command) + '\n')
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1)
        for line in process.stdout:
            log.write(line)
            if step == 'train':
                _follow_training(line, progress, task, max_epochs)
        return process.wait() == 0


def _follow_training(line: str, progress, task, max_epochs: Optional[int]) -> None:
    match = EPOCH_PROGRESS.search(line)
    if match:
        epoch, done, per_epoch = map(int, match.groups())
        max_epochs = max_epochs or epoch
        progress.update(task, completed=(epoch - 1) * per_epoch + done, total=max_epochs * per_epoch)
        return
    match = ITER_PROGRESS.search(line)
    if match:
        done, total = map(int, match.groups())
        progress.update(task, completed=done, total=total)


def _max_epochs(config: str, cfg_options: List[str]) -> Optional[int]:
    """Epochs of an epoch-based config (with the command-line options), so the bar spans the whole training."""
    from mmengine.config import Config, DictAction
    try:
        cfg = Config.fromfile(config)
        options = {}
        for option in cfg_options:
            key, _, value = option.partition('=')
            options[key] = DictAction._parse_iterable(value)
        cfg.merge_from_dict(options)
        return cfg.train_cfg.get('max_epochs')
    except Exception:  # the bar then counts the iterations of the current epoch only
        return None


def run_all(configs: List[str], args) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    columns = (TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # seed by seed: an ablation stopped part way has the same number of seeds for every config
    per_config = [[(config, seed, work_dir) for seed, work_dir in run_dirs(args.work_root, config_name(config),
                                                                        args.seeds)] for config in configs]
    runs = [run for round_runs in zip(*per_config) for run in round_runs]
    with Progress(*columns) as progress:
        overall = progress.add_task('ablation', total=len(runs))
        for config, seed, work_dir in runs:
            name = config_name(config) + ('' if seed is None else f' (seed {seed})')
            if latest_test_metrics(work_dir) is not None and not args.force:
                progress.console.print(f'{name}: finished before, not run again (--force re-runs it)')
                progress.advance(overall)
                continue
            os.makedirs(work_dir, exist_ok=True)
            task = progress.add_task(f'{name}: train', total=None)
            pretrain = pretrain_config(config)
            ok = True
            if pretrain is not None:
                ok, config = _pretrain_then_finetune_config(config, pretrain, work_dir, seed, args, progress, task)
            if ok:
                progress.update(task, description=f'{name}: train')
                ok = run_step('train', config, work_dir, args, progress, task,
                              _max_epochs(config, args.cfg_options), seed)
            if ok:
                progress.update(task, description=f'{name}: test')
                ok = run_step('test', config, work_dir, args, progress, task, seed=seed)
            progress.remove_task(task)
            status = 'done' if ok else f'FAILED (see {os.path.join(work_dir, "train.log")} / test.log)'
            progress.console.print(f'{name}: {status}')
            progress.advance(overall)


def _pretrain_then_finetune_config(config: str, pretrain: str, work_dir: str, seed: Optional[int], args, progress,
                                   task) -> Tuple[bool, str]:
    """Stage 1 of a two-stage config: train and test its classifier unless done before; returns (ok, the config
    of stage 2: ``config`` with the backbone initialised from the classifier)."""
    stage_dir = pretrain_dir(args.work_root, pretrain, seed)
    if latest_test_metrics(stage_dir) is None:
        os.makedirs(stage_dir, exist_ok=True)
        progress.update(task, description=f'{config_name(pretrain)}: pre-train')
        ok = run_step('train', pretrain, stage_dir, args, progress, task,
                      _max_epochs(pretrain, args.pretrain_cfg_options), seed, pretraining=True)
        if ok:
            progress.update(task, description=f'{config_name(pretrain)}: test')
            ok = run_step('test', pretrain, stage_dir, args, progress, task, seed=seed, pretraining=True)
        if not ok:
            progress.console.print(f'{config_name(pretrain)}: FAILED (see {stage_dir}/train.log / test.log)')
            return False, config
    return True, write_finetune_config(config, last_checkpoint(stage_dir), work_dir)


def _run_metrics(config: str, work_root: str, seed: Optional[int], work_dir: str) -> Optional[Dict[str, float]]:
    """Test metrics of one run; for a two-stage config with its classifier's as ``pretrain/<metric>``."""
    metrics = latest_test_metrics(work_dir)
    pretrain = pretrain_config(config)
    if metrics is None or pretrain is None:
        return metrics
    pretrained = latest_test_metrics(pretrain_dir(work_root, pretrain, seed)) or {}
    return {**{f'pretrain/{k}': v for k, v in pretrained.items()}, **metrics}


def _run_status(work_dir: str) -> str:
    if latest_test_metrics(work_dir) is not None:
        return 'done'
    if not os.path.isdir(work_dir):
        return 'not run'
    return 'failed' if any(os.path.exists(os.path.join(work_dir, f'{s}.log')) for s in ('train', 'test')) \
        else 'incomplete'


def mean_and_std(values: List[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (None for a single value: one run has no spread to show)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def collect(configs: List[str], work_root: str, metrics: Optional[List[str]] = None,
            baseline: Optional[str] = None, seeds: Optional[int] = None) -> Tuple[List[Dict[str, object]], List[str]]:
    """One row per config: name, status and its test metrics (and differences to ``baseline``).

    With ``seeds``, a metric is the mean over the finished seeds, with ``<metric> std`` beside it and ``seeds``
    counting them; a difference to the baseline comes with ``Δ <metric> s.e.``.
    """
    rows, runs = [], {}
    for config in configs:
        name = config_name(config)
        dirs = run_dirs(work_root, name, seeds)
        statuses = [_run_status(work_dir) for _, work_dir in dirs]
        found = [m for m in (_run_metrics(config, work_root, seed, work_dir) for seed, work_dir in dirs)
                 if m is not None]
        if len(set(statuses)) == 1:
            status = statuses[0]
        else:
            status = f'{statuses.count("done")}/{len(statuses)} done' + (', failed' if 'failed' in statuses else '')
        runs[name] = found
        row = {'config': name, 'status': status}
        if seeds is not None:
            row['seeds'] = len(found)
        for metric in sorted({k for values in found for k in values}):
            row[metric], std = mean_and_std([values[metric] for values in found if metric in values])
            if seeds is not None:
                row[f'{metric} std'] = std
        rows.append(row)
    columns = metrics or sorted({k for found in runs.values() for values in found for k in values})
    base_name = config_name(baseline) if baseline else None
    if base_name is not None and base_name not in runs:
        raise SystemExit(f'--baseline {baseline}: not one of the configs ({", ".join(runs)})')
    base_row = next((row for row in rows if row['config'] == base_name), None)
    for row in rows:
        for column in columns:
            if base_row is None or column not in base_row or column not in row:
                continue
            row[f'Δ {column}'] = row[column] - base_row[column]
            spreads = (row.get(f'{column} std'), base_row.get(f'{column} std'))
            if seeds is not None and None not in spreads:
                row[f'Δ {column} s.e.'] = math.sqrt(spreads[0] ** 2 / row['seeds']
                                                     + spreads[1] ** 2 / base_row['seeds'])
    return rows, columns + ([f'Δ {c}' for c in columns] if base_name else [])


def _cell(value) -> str:
    if isinstance(value, float):
        return f'{value:.4f}'
    return '-' if value is None else str(value)


def _markdown_cell(row: dict, column: str) -> str:
    """``mean ± std`` (or ``Δ ± s.e.``) when the row has a spread for the column."""
    spread = row.get(f'{column} s.e.' if column.startswith('Δ ') else f'{column} std')
    if spread is None or row.get(column) is None:
        return _cell(row.get(column))
    sign = '+' if column.startswith('Δ ') and row[column] >= 0 else ''
    return f'{sign}{row[column]:.4f} ± {spread:.4f}'


def write_tables(rows, columns, work_root: str) -> str:
    header = ['config', 'status', *(['seeds'] if any('seeds' in row for row in rows) else []), *columns]
    markdown = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for row in rows:
        markdown.append('| ' + ' | '.join(_markdown_cell(row, c) for c in header) + ' |')
    text = '\n'.join(markdown) + '\n'
    os.makedirs(work_root, exist_ok=True)
    with open(os.path.join(work_root, 'summary.md'), 'w') as f:
        f.write(text)
    # in the CSV each number has its own column; a spread follows the column it belongs to
    csv_header = [key for column in header
                  for key in (column, f'{column} std', f'{column} s.e.') if any(key in row for row in rows)]
    with open(os.path.join(work_root, 'summary.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=csv_header, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    return text


def main(argv=None):
    warnings.filterwarnings('ignore', message='pkg_resources')  # mmengine's config loader imports it
    args = parse_args(argv)
    configs = find_configs(args.configs)
    if not args.collect_only:
        run_all(configs, args)
    rows, columns = collect(configs, args.work_root, args.metrics, args.baseline, args.seeds)
    print(write_tables(rows, columns, args.work_root))
    print(f'written: {os.path.join(args.work_root, "summary.md")}, {os.path.join(args.work_root, "summary.csv")}')
    failed = [row['config'] for row in rows if 'failed' in row['status']]
    return 1 if failed and not args.collect_only else 0


if __name__ == '__main__':
    sys.exit(main())
