"""Fixtures shared by the test modules: short demo trainings (trained once per test session), tool runs, config
reading, one intra-op thread for the backbone tests."""
import copy
import fcntl
import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tests.forked_tools import ForkedTools

ROOT = Path(__file__).resolve().parents[1]
DET_CONFIG = ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py'
SEG_CONFIG = ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py'
NO_WORKERS = ['num_workers=0', 'persistent_workers=False']
NO_VAL = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
TRAIN_OPTIONS = {
    DET_CONFIG: ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=8'],
    SEG_CONFIG: ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=2'],
}


FORKED_TOOLS = ForkedTools()


def pytest_configure(config):
    if os.environ.get('PYTEST_XDIST_WORKER'):
        # pytest-xdist's workers share the cores: one intra-op thread each, in the worker and in the tools it runs
        # (OMP_NUM_THREADS is read when a process imports torch)
        os.environ['OMP_NUM_THREADS'] = '1'
        torch.set_num_threads(1)


def run_python(args, check=True, cwd=ROOT, env=None, fresh=False, timeout=600) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` (the repository root) with ``env`` added to the environment, output captured;
    fails the test with the output unless ``check`` is False.

    A script (``tools/train.py ...``) runs forked from a process that has the stack imported already (see
    tests/forked_tools.py), and so do the scripts it starts with ``sys.executable``; ``fresh=True``, and ``-c`` /
    ``-m``, start a new interpreter: for tests of what a new process imports or registers.
    """
    args = [str(a) for a in args]
    if fresh or args[0].startswith('-'):
        return run_command([sys.executable, *args], check, cwd, env, timeout)
    proc = FORKED_TOOLS.run(args, cwd, _environment(env), timeout)
    return _checked(proc, check)


def forked_python() -> str:
    """An interpreter for a shell script's ``PYTHON``: an executable that runs ``python SCRIPT ARGS`` (and ``-c`` /
    ``-``) forked as ``run_python`` does (see tests/forked_tools.py)."""
    return FORKED_TOOLS.launcher()


def run_output(args, **kwargs) -> str:
    """What ``run_python(ARGS, **kwargs)`` printed, stdout then stderr (the tools log to either)."""
    proc = run_python(args, **kwargs)
    return proc.stdout + proc.stderr


def run_command(args, check=True, cwd=ROOT, env=None, timeout=600) -> subprocess.CompletedProcess:
    """A command line (``bash tools/dist_train.sh ...``) as ``run_python`` runs a script, always a new process."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_environment(env), capture_output=True, text=True,
                          timeout=timeout)
    return _checked(proc, check)


def _environment(extra) -> dict:
    return dict(os.environ, PYTHONWARNINGS='ignore', **(extra or {}))


def _checked(proc, check) -> subprocess.CompletedProcess:
    if check:
        assert proc.returncode == 0, (f'{proc.args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
                                      f'{proc.stderr[-5000:]}')
    return proc


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for a test module that asks for it (``pytestmark = pytest.mark.usefixtures(
    'single_thread')``: the backbone tests): the tiny CPU workloads gain little from more, and on a small machine
    that is busy with something else multi-threaded kernels slow down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session', autouse=True)
def _close_forked_tools():
    yield
    FORKED_TOOLS.close()


def training_options(config) -> list:
    """The --cfg-options of ``short_training``: the config's few iterations, no validation, no loader workers, and
    a fixed seed, so that every run of the suite tests the same weights on a given CPU (an unseeded run draws a
    seed: a barely trained detector's near-equal scores would then differ from run to run)."""
    return TRAIN_OPTIONS[config] + NO_VAL + [f'train_dataloader.{o}' for o in NO_WORKERS] + ['randomness.seed=0']


def short_training(config, work_dir) -> str:
    run_python(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *training_options(config)])
    return (work_dir / 'last_checkpoint').read_text().strip()


def shared_training(tmp_path_factory, config, name) -> str:
    """``short_training`` once per test run: with pytest-xdist the workers share it (the first to take the lock
    trains, the others wait and read its checkpoint)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        root = root.parent  # the folder that holds every worker's base temp
    work_dir = root / name
    with open(root / f'{name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work_dir / 'last_checkpoint').exists():
            short_training(config, work_dir)
    return (work_dir / 'last_checkpoint').read_text().strip()


@pytest.fixture(scope='session')
def det_checkpoint(tmp_path_factory) -> str:
    """A RepViT-M1.1 Mask R-CNN checkpoint of the demo config (one epoch of 8 images)."""
    return shared_training(tmp_path_factory, DET_CONFIG, 'det-demo')


@pytest.fixture(scope='session')
def seg_checkpoint(tmp_path_factory) -> str:
    """A RepViT-M1.1 Semantic FPN checkpoint of the demo config (2 iterations)."""
    return shared_training(tmp_path_factory, SEG_CONFIG, 'seg-demo')


def load_tool(path: str):
    """A tool script (``tools/...py``) as a module, to call its functions in the test process."""
    spec = importlib.util.spec_from_file_location(f'tool_{Path(path).stem}', ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def _parsed_config(path: str) -> Config:
    return Config.fromfile(path)


def read_config(path) -> Config:
    """``Config.fromfile(path)`` (relative to the repository root), parsed once per test session: many tests read
    every shipped config, and parsing the mmdet / mmseg bases dominates their time. Each call returns a copy."""
    return copy.deepcopy(_parsed_config(str(ROOT / path)))
