"""Fixtures shared by the test modules: short demo trainings (trained once per test session) and tool loading."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DET_CONFIG = ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py'
SEG_CONFIG = ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py'
NO_WORKERS = ['num_workers=0', 'persistent_workers=False']
NO_VAL = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
TRAIN_OPTIONS = {
    DET_CONFIG: ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=8'],
    SEG_CONFIG: ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=2'],
}


def run_python(args, check=True, **kwargs) -> subprocess.CompletedProcess:
    """``python ARGS`` in the repository root, output captured; fails the test with the output unless ``check``
    is False."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'), **kwargs)
    if check:
        assert proc.returncode == 0, f'{args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}'
    return proc


def short_training(config, work_dir) -> str:
    options = TRAIN_OPTIONS[config] + NO_VAL + [f'train_dataloader.{o}' for o in NO_WORKERS]
    run_python(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *options])
    return (work_dir / 'last_checkpoint').read_text().strip()


@pytest.fixture(scope='session')
def det_checkpoint(tmp_path_factory) -> str:
    """A RepViT-M1.1 Mask R-CNN checkpoint of the demo config (one epoch of 8 images)."""
    return short_training(DET_CONFIG, tmp_path_factory.mktemp('det'))


@pytest.fixture(scope='session')
def seg_checkpoint(tmp_path_factory) -> str:
    """A RepViT-M1.1 Semantic FPN checkpoint of the demo config (2 iterations)."""
    return short_training(SEG_CONFIG, tmp_path_factory.mktemp('seg'))


def load_tool(path: str):
    """A tool script (``tools/...py``) as a module, to call its functions in the test process."""
    spec = importlib.util.spec_from_file_location(f'tool_{Path(path).stem}', ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
