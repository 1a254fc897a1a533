"""Nothing lost, nothing silently wrong: each test does what a careless or unlucky user did.

Crash-safe checkpoints and resume, strict loading, exact resume with DataLoader workers, killed trainers, data
paths and evaluators, data errors that name the file, the demo generator with --force, and the smaller checks.
"""
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmlightvit.engine import (DatasetNotFoundError, check_dataset_paths, check_feature_channels,
                               find_resume_checkpoint, load_config)
from mmlightvit.utils import CheckpointError, load_checkpoint_file
from tests.conftest import run_command, run_python

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'tests/data/configs'


# ------------------------------------------------------------------------------------- a toy run, in process
class NoisyPoints(Dataset):
    """Eight points whose loading adds random noise: the stand-in for a random augmentation."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        point = torch.tensor([index, 1.0]) + torch.from_numpy(np.random.randn(2)).float()
        return dict(inputs=point, target=torch.tensor([float(index % 3)]))


class LinearModel(BaseModel):

    def __init__(self, hidden=4):
        super().__init__()
        self.body = nn.Linear(2, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, inputs, target, mode='tensor'):
        out = self.head(torch.relu(self.body(torch.stack(inputs))))
        if mode == 'loss':
            # a random draw in the model, as proposal sampling in a detector
            weight = torch.rand(out.shape[0], 1)
            return dict(loss=(weight * (out - torch.stack(target))**2).mean())
        return out


_runs = iter(range(10**6))


class Interrupt(Hook):
    """Stops the run (as Ctrl-C would) when epoch (or iteration) ``at`` is about to start, after the checkpoints
    before it."""

    def __init__(self, at, by_epoch=True):
        self.at, self.by_epoch = at, by_epoch

    def before_train_epoch(self, runner):
        if self.by_epoch and runner.epoch == self.at:
            raise KeyboardInterrupt

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if not self.by_epoch and runner.iter == self.at:
            raise KeyboardInterrupt


class ImprovingScore(BaseMetric):
    """A validation metric that improves at every evaluation in this process (resumed runs included), so every
    epoch writes a new best checkpoint."""

    evaluations = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        ImprovingScore.evaluations += 1
        return dict(score=float(ImprovingScore.evaluations))


def toy_runner(work_dir, max_epochs=3, num_workers=0, resume=False, load_from=None, model=None, seed=3,
               allow_partial=False, interrupt_at=None, save_best=False, max_iters=None):
    """A toy run of ``max_epochs`` epochs, or of ``max_iters`` iterations (infinite sampler, a checkpoint every
    4 iterations)."""
    by_epoch = max_iters is None
    validation = dict(
        val_dataloader=dict(dataset=NoisyPoints(), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=4),
        val_evaluator=[ImprovingScore()],
        val_cfg=dict(type='ValLoop')) if save_best else {}
    torch.manual_seed(0)  # the same initial weights in every run of this process
    runner = Runner(
        model=model or LinearModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy-{os.getpid()}-{next(_runs)}',
        train_dataloader=dict(
            dataset=NoisyPoints(),
            sampler=dict(type='mmlightvit.SeededSampler' if by_epoch else 'mmlightvit.SeededInfiniteSampler',
                         shuffle=True),
            batch_size=2,
            num_workers=num_workers,
            persistent_workers=num_workers > 0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=[dict(type='MultiStepLR', milestones=[2] if by_epoch else [6], by_epoch=by_epoch)],
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1) if by_epoch else dict(
            by_epoch=False, max_iters=max_iters, val_interval=100),
        default_hooks=dict(
            checkpoint=dict(type='mmlightvit.AtomicCheckpointHook', interval=1 if by_epoch else 4, by_epoch=by_epoch,
                            max_keep_ckpts=1, save_best='score' if save_best else None, rule='greater'),
            logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[dict(type='mmlightvit.RNGStateHook'),
                      dict(type='mmlightvit.StrictLoadHook', allow_partial=allow_partial)],
        randomness=dict(seed=seed),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine',
        **validation)
    if interrupt_at is not None:
        runner.register_hook(Interrupt(interrupt_at, by_epoch))
    return runner


def final_weights(work_dir, epoch=3):
    return load_checkpoint_file(str(Path(work_dir) / f'epoch_{epoch}.pth'))['state_dict']


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    """An uninterrupted toy run of 3 epochs, single process."""
    work_dir = tmp_path_factory.mktemp('toy-uninterrupted')
    toy_runner(work_dir).train()
    return work_dir


def test_augmentation_seeds_do_not_depend_on_workers_or_interruption(toy_run, tmp_path):
    # 2 persistent workers: the same weights as loading in the main process
    toy_runner(tmp_path / 'workers', num_workers=2).train()
    assert_same_weights(final_weights(tmp_path / 'workers'), final_weights(toy_run))
    # interrupted after epoch 1, resumed by a new runner with fresh workers
    interrupted = tmp_path / 'interrupted'
    with pytest.raises(KeyboardInterrupt):
        toy_runner(interrupted, num_workers=2, interrupt_at=1).train()
    toy_runner(interrupted, num_workers=2, resume=True, load_from=str(interrupted / 'epoch_1.pth')).train()
    assert_same_weights(final_weights(interrupted), final_weights(toy_run))
    # and the run learned something that depends on the seeds: another seed gives other weights
    toy_runner(tmp_path / 'other-seed', seed=4).train()
    assert not torch.equal(final_weights(tmp_path / 'other-seed')['head.weight'], final_weights(toy_run)['head.weight'])


def dies_while_writing(monkeypatch, name_part):
    """Make the next write of a file whose name contains ``name_part`` stop half way, as a kill would."""
    from mmengine.fileio import LocalBackend
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        if name_part in osp.basename(str(filepath)):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            monkeypatch.setattr(LocalBackend, 'put', real_put)
            raise KeyboardInterrupt(f'killed while writing {filepath}')
        real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)


def pth_files(work_dir):
    return sorted(p.name for p in Path(work_dir).iterdir() if p.name.endswith('.pth') or '.tmp' in p.name)


def test_iteration_based_resume_with_workers_is_exact(tmp_path):
    """The infinite sampler of iteration-based configs (mmseg's): interrupted at iteration 8 and resumed with fresh
    workers, the run ends where an uninterrupted one does."""
    toy_runner(tmp_path / 'reference', max_iters=12, num_workers=2).train()
    with pytest.raises(KeyboardInterrupt):
        toy_runner(tmp_path / 'interrupted', max_iters=12, num_workers=2, interrupt_at=8).train()
    toy_runner(tmp_path / 'interrupted', max_iters=12, num_workers=2, resume=True,
               load_from=str(tmp_path / 'interrupted/iter_8.pth')).train()
    reference, resumed = (load_checkpoint_file(str(tmp_path / run / 'iter_12.pth'))['state_dict']
                          for run in ('reference', 'interrupted'))
    assert_same_weights(resumed, reference)


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        toy_runner(tmp_path, interrupt_at=2).train()
    previous = (tmp_path / 'epoch_2.pth').read_bytes()
    dies_while_writing(monkeypatch, 'epoch_3')
    with pytest.raises(KeyboardInterrupt, match='killed while writing'):
        toy_runner(tmp_path, resume=True, load_from=str(tmp_path / 'epoch_2.pth')).train()
    # max_keep_ckpts=1, yet the previous checkpoint is whole and still named by last_checkpoint; no partial file
    assert pth_files(tmp_path) == ['epoch_2.pth']
    assert (tmp_path / 'epoch_2.pth').read_bytes() == previous
    assert (tmp_path / 'last_checkpoint').read_text().endswith('epoch_2.pth')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    # the next save works and removes the outdated checkpoint only once the new one is complete
    toy_runner(tmp_path, resume=True, load_from=str(tmp_path / 'epoch_2.pth')).train()
    assert pth_files(tmp_path) == ['epoch_3.pth']


def test_kill_while_writing_a_new_best_keeps_the_previous_best(tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        toy_runner(tmp_path, interrupt_at=2, save_best=True).train()
    assert pth_files(tmp_path) == ['best_score_epoch_2.pth', 'epoch_2.pth']
    previous_best = (tmp_path / 'best_score_epoch_2.pth').read_bytes()
    dies_while_writing(monkeypatch, 'best_score_epoch_3')
    with pytest.raises(KeyboardInterrupt, match='killed while writing'):
        toy_runner(tmp_path, resume=True, load_from=str(tmp_path / 'epoch_2.pth'), save_best=True).train()
    assert (tmp_path / 'best_score_epoch_2.pth').read_bytes() == previous_best  # mmengine had deleted it first
    toy_runner(tmp_path, resume=True, load_from=str(tmp_path / 'epoch_3.pth'), max_epochs=4, save_best=True).train()
    assert pth_files(tmp_path) == ['best_score_epoch_4.pth', 'epoch_4.pth']


def test_resume_without_last_checkpoint_takes_the_newest_complete_one(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None  # nothing to resume: start from the beginning
    for epoch in (1, 2, 3):
        torch.save({'meta': {'epoch': epoch}}, tmp_path / f'epoch_{epoch}.pth')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_3.pth')  # last_checkpoint is missing
    # a truncated newest file (killed by an older writer) is passed over, with the reason logged
    data = (tmp_path / 'epoch_3.pth').read_bytes()
    (tmp_path / 'epoch_3.pth').write_bytes(data[:len(data) // 2])
    messages = []
    logger = type('Logger', (), {'warning': lambda self, msg: messages.append(msg)})()
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    assert find_resume_checkpoint(str(tmp_path), logger) == str(tmp_path / 'epoch_2.pth')
    assert 'missing or incomplete' in messages[0]
    # a work dir moved elsewhere: last_checkpoint names the old place, the file beside it is taken
    (tmp_path / 'last_checkpoint').write_text('/old/place/epoch_2.pth')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    # checkpoints that are all incomplete are never silently replaced by a new run
    for epoch in (1, 2):
        (tmp_path / f'epoch_{epoch}.pth').write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(CheckpointError, match='none is complete'):
        find_resume_checkpoint(str(tmp_path))


def test_auto_resume_after_deleting_last_checkpoint(toy_run, tmp_path):
    """`--resume` without a path when last_checkpoint is gone: tools/train.py resumes, never trains over."""
    shutil.copy(toy_run / 'epoch_3.pth', tmp_path / 'epoch_3.pth')
    config = tmp_path / 'iter.py'
    config.write_text(f"_base_ = '{CONFIGS / 'mask-rcnn_tiny-resnet_iter.py'}'\n")
    proc = run_python(['tools/train.py', str(config), '--work-dir', str(tmp_path), '--resume'],
                      check=False)
    # the toy checkpoint is not this config's model: the resume stops with the keys, it does not start over
    assert proc.returncode != 0
    assert f'Resuming from {tmp_path / "epoch_3.pth"}' in proc.stdout + proc.stderr
    assert 'cannot be resumed' in proc.stderr or 'does not match' in proc.stderr
    assert (tmp_path / 'epoch_3.pth').read_bytes() == (toy_run / 'epoch_3.pth').read_bytes()
    assert not (tmp_path / 'iter_2.pth').exists()


def _without(checkpoint, *keys):
    return {k: v for k, v in checkpoint.items() if k not in keys}


def test_resume_is_strict(toy_run, tmp_path):
    checkpoint = load_checkpoint_file(str(toy_run / 'epoch_3.pth'))
    cases = {
        'no-head': (dict(checkpoint, state_dict=_without(checkpoint['state_dict'], 'head.weight', 'head.bias')),
                    'missing keys: head.weight, head.bias'),
        'no-hub': (_without(checkpoint, 'message_hub'), 'lacks message_hub'),
        'no-optimizer': (_without(checkpoint, 'optimizer'), 'lacks optimizer'),
    }
    for name, (bad, message) in cases.items():
        path = tmp_path / f'{name}.pth'
        torch.save(bad, path)
        with pytest.raises(CheckpointError, match=message):
            toy_runner(tmp_path / name, resume=True, load_from=str(path)).train()
        assert not (tmp_path / name / 'epoch_3.pth').exists()
    # another model: the shapes and the optimizer's parameter groups name the difference
    with pytest.raises(CheckpointError, match=r'wrong shapes: body.weight \(checkpoint \(4, 2\), model \(8, 2\)\)'):
        toy_runner(tmp_path / 'wider', resume=True, load_from=str(toy_run / 'epoch_3.pth'),
                   model=LinearModel(hidden=8)).train()


def test_evaluation_refuses_a_partial_checkpoint(toy_run, tmp_path):
    checkpoint = load_checkpoint_file(str(toy_run / 'epoch_3.pth'))
    partial = tmp_path / 'partial.pth'
    torch.save(dict(checkpoint, state_dict=_without(checkpoint['state_dict'], 'head.weight')), partial)

    def evaluate(allow_partial):  # what Runner.test() does before its loop
        toy_runner(tmp_path, load_from=str(partial), allow_partial=allow_partial).load_or_resume()

    with pytest.raises(CheckpointError, match='missing keys: head.weight.*partly random'):
        evaluate(False)
    evaluate(True)  # explicitly allowed: loads, and logs what stayed random


# ------------------------------------------------------------------------------- the tools on demo data
def test_test_tool_stops_before_evaluating_a_mismatched_checkpoint(tmp_path):
    proc = run_python(['tools/train.py', str(CONFIGS / 'mask-rcnn_tiny-resnet_iter.py'), '--work-dir',
                       str(tmp_path), '--cfg-options', 'train_cfg.max_iters=2'])
    checkpoint = load_checkpoint_file(str(tmp_path / 'iter_2.pth'))
    state = {k: v for k, v in checkpoint['state_dict'].items() if not k.startswith('roi_head.mask_head.')}
    torch.save({'state_dict': state}, tmp_path / 'no-mask-head.pth')
    proc = run_python(['tools/test.py', str(CONFIGS / 'mask-rcnn_tiny-resnet_iter.py'),
                       str(tmp_path / 'no-mask-head.pth'), '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                       'test_dataloader.dataset.indices=2'], check=False)
    assert proc.returncode != 0
    assert 'missing keys: roi_head.mask_head.' in proc.stderr and 'partly random' in proc.stderr
    assert 'coco/bbox_mAP' not in proc.stdout + proc.stderr  # nothing was evaluated


def _children(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_gone(processes, timeout=20):
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def test_killed_multi_worker_run_resumes_exactly_and_leaves_no_workers(tmp_path):
    """SIGKILL during epoch 2 of a run with the shipped loader settings (2 persistent workers, random flips and
    resizes, no fixed seed), then --resume: the final weights equal those of an uninterrupted run with the same
    seed, bit for bit, and the killed trainer's workers are gone."""
    config = str(CONFIGS / 'mask-rcnn_tiny-resnet_epoch-workers.py')
    work_dir = tmp_path / 'killed'
    with open(tmp_path / 'killed.log', 'w') as log:
        proc = subprocess.Popen([sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (work_dir / 'last_checkpoint').exists():
        assert proc.poll() is None and time.time() < deadline, (tmp_path / 'killed.log').read_text()[-3000:]
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2  # the persistent DataLoader workers
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not _wait_gone(workers), 'DataLoader workers outlived their trainer'
    assert not (work_dir / 'epoch_3.pth').exists()

    run_python(['tools/train.py', config, '--work-dir', str(work_dir), '--resume'])
    seed = load_checkpoint_file(str(work_dir / 'epoch_3.pth'))['meta']['seed']
    reference = tmp_path / 'uninterrupted'
    run_python(['tools/train.py', config, '--work-dir', str(reference), '--cfg-options',
                f'randomness.seed={seed}'])
    assert_same_weights(final_weights(work_dir), final_weights(reference))
    assert [p.name for p in work_dir.glob('*.pth')] == ['epoch_3.pth']


def test_sigterm_ends_the_trainer_and_its_workers(tmp_path):
    """SIGTERM while a checkpoint is written (mmengine formats the config then, inside a bare ``except:`` that would
    turn an exception raised by a Python-level handler into a SyntaxError): the trainer ends by the signal itself,
    its DataLoader workers with it, and the next run in the work dir starts cleanly."""
    log_path = tmp_path / 'train.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([
            sys.executable, 'tools/train.py', str(CONFIGS / 'mask-rcnn_tiny-resnet_epoch-workers.py'),
            '--work-dir', str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=50'
        ], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while len(_children(proc.pid)) < 2 or 'Saving checkpoint at 1 epochs' not in log_path.read_text():
        assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.01)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM, log_path.read_text()[-3000:]
    assert not _wait_gone(workers)
    assert 'Traceback' not in log_path.read_text()


def test_data_root_override_moves_the_evaluator_too(tmp_path):
    config = str(ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco.py')
    copy = tmp_path / 'coco'
    for part in ('train2017', 'val2017', 'annotations'):
        (copy / part).mkdir(parents=True)
    for name in ('instances_train2017.json', 'instances_val2017.json'):
        (copy / 'annotations' / name).write_text('{}')
    # the missing-data message gives an override for every split; used as given, the check passes
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset_paths(load_config(config, {'train_dataloader.dataset.data_root': str(tmp_path / 'none/')}))
    hint = str(info.value).split('--cfg-options ')[1].split(' (the evaluators')[0]
    options = dict(item.replace('PATH', str(copy)).split('=') for item in hint.split())
    assert set(options) == {f'{split}_dataloader.dataset.data_root' for split in ('train', 'val', 'test')}
    cfg = load_config(config, options)
    check_dataset_paths(cfg)
    for split in ('val', 'test'):
        assert cfg[f'{split}_evaluator'].ann_file == str(copy / 'annotations/instances_val2017.json')
    # only the test set moved: the test evaluator follows it, the validation one stays with its own dataset
    cfg = load_config(config, {'test_dataloader.dataset.data_root': str(copy)})
    assert cfg.test_evaluator.ann_file == str(copy / 'annotations/instances_val2017.json')
    assert cfg.val_evaluator.ann_file == 'data/coco/annotations/instances_val2017.json'
    # an evaluator file given explicitly is kept
    cfg = load_config(config, {'test_dataloader.dataset.data_root': str(copy), 'test_evaluator.ann_file': 'x.json'})
    assert cfg.test_evaluator.ann_file == 'x.json'


# --------------------------------------------------------------------------------------------- data errors
@pytest.fixture
def coco_copy(tmp_path):
    from mmlightvit.datasets import generate_demo_coco
    return Path(generate_demo_coco(str(tmp_path / 'coco'), num_train=6, num_val=2, image_size=(64, 64)))


def build_coco(root, **kwargs):
    from mmengine.registry import init_default_scope
    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
    return DATASETS.build(
        dict(type='mmlightvit.CocoDataset', data_root=str(root), ann_file='annotations/instances_train.json',
             data_prefix=dict(img='train/'), metainfo=dict(classes=('circle', 'rectangle', 'triangle', 'star')),
             pipeline=pipeline, **kwargs))


def test_malformed_annotation_file_is_named(coco_copy):
    ann = coco_copy / 'annotations/instances_train.json'
    ann.write_text(ann.read_text()[:-40])
    from mmlightvit.datasets import DatasetError
    with pytest.raises(DatasetError, match=f"{ann}.* is not valid JSON"):
        build_coco(coco_copy)


def test_empty_image_list_names_the_split(coco_copy):
    ann = coco_copy / 'annotations/instances_train.json'
    coco = json.loads(ann.read_text())
    ann.write_text(json.dumps(dict(coco, images=[], annotations=[])))
    from mmlightvit.datasets import DatasetError
    with pytest.raises(DatasetError, match='instances_train.json.*lists no samples'):
        build_coco(coco_copy)


def test_zero_byte_image_is_named_by_a_worker(coco_copy):
    from torch.utils.data import DataLoader

    from mmlightvit.datasets import DatasetError
    image = coco_copy / 'train/000003.jpg'
    image.write_bytes(b'')
    dataset = build_coco(coco_copy)
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=lambda batch: batch)
    with pytest.raises(DatasetError, match=f'img_id=3, img_path={image} \\(an empty, zero-byte file\\)'):
        list(loader)


def test_missing_voc_split_names_the_sbd_layout(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    from mmlightvit.datasets import DatasetError
    init_default_scope('mmseg')
    root = tmp_path / 'VOC2012'
    (root / 'JPEGImages').mkdir(parents=True)
    (root / 'ImageSets/Segmentation').mkdir(parents=True)
    (root / 'ImageSets/Segmentation/aug.txt').write_text('2008_000002\n')
    # VOC is there, the SBD part is not converted yet: mmseg would stop on a bare assert
    with pytest.raises(DatasetError) as info:
        DATASETS.build(dict(type='mmlightvit.PascalVOCDataset', data_root=str(root),
                            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
                            ann_file='ImageSets/Segmentation/aug.txt', pipeline=[]))
    message = str(info.value)
    assert f"seg_map_path={str(root / 'SegmentationClassAug')!r} does not exist" in message
    assert 'ann_file' not in message.split(' does not exist')[0]  # the list is there: only the missing is named
    assert 'SBD' in message and 'tools/dataset_converters/voc_aug.py' in message


def test_degenerate_annotations_are_counted(coco_copy, monkeypatch):
    import mmlightvit.datasets.checked as checked
    logged = []
    monkeypatch.setattr(checked, 'print_log', lambda message, **kwargs: logged.append(message))
    ann = coco_copy / 'annotations/instances_train.json'
    coco = json.loads(ann.read_text())
    coco['annotations'][0]['bbox'][2] = 0  # zero width
    coco['annotations'][1]['segmentation'] = [[1.0, 1.0, 5.0, 5.0]]  # two points
    ann.write_text(json.dumps(coco))
    dataset = build_coco(coco_copy)
    message, = logged
    assert f'{ann}: 2 of {len(coco["annotations"])} annotations are not used for training' in message
    assert f'1 boxes of zero width / height / area or outside their image (ids {coco["annotations"][0]["id"]})' in \
        message
    assert 'polygons with fewer than 3 points' in message
    assert len(dataset) > 0


# ------------------------------------------------------------------------------------ demo data generator
def test_generator_force_never_removes_user_data(tmp_path):
    from mmlightvit.datasets import generate_demo_coco
    user = tmp_path / 'my-coco'
    (user / 'train2017').mkdir(parents=True)
    (user / 'train2017/000000000009.jpg').write_bytes(b'a real image')
    proc = run_python(['tools/misc/generate_demo_data.py', '--force', '--coco-root', str(user),
                       '--ade-root', str(tmp_path / 'ade')], check=False)
    assert proc.returncode != 0 and f'Refusing to replace {user}' in proc.stderr
    assert (user / 'train2017/000000000009.jpg').read_bytes() == b'a real image'
    assert sorted(os.listdir(tmp_path)) == ['my-coco']  # nothing generated, no temporary directory left

    # a generated set that someone added files to is kept as well; a pristine one is regenerated
    kw = dict(num_train=2, num_val=1, image_size=(32, 32))
    demo = str(tmp_path / 'demo')
    generate_demo_coco(demo, **kw)
    (tmp_path / 'demo/annotations/instances_train2017.json').write_text('{}')
    with pytest.raises(RuntimeError, match='holds files the generator did not write: '
                       'annotations/instances_train2017.json'):
        generate_demo_coco(demo, overwrite=True, **kw)
    os.remove(tmp_path / 'demo/annotations/instances_train2017.json')
    generate_demo_coco(demo, seed=5, overwrite=True, **kw)
    assert json.loads((tmp_path / 'demo/demo_meta.json').read_text())['seed'] == 5


# ---------------------------------------------------------------------------------------- smaller checks
def test_neck_channels_are_checked_when_the_model_is_built():
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py'))
    cfg.model.backbone.arch = 'm0.9'  # 48/96/192/384 channels; the neck still expects M1.1's
    model = MODELS.build(cfg.model)
    with pytest.raises(ValueError, match=r'model.neck.in_channels is \[64, 128, 256, 512\], but the backbone '
                       r'\(RepViT, out_indices \(0, 1, 2, 3\)\) gives \[48, 96, 192, 384\]'):
        check_feature_channels(model)
    cfg.model.neck.in_channels = [48, 96, 192, 384]
    check_feature_channels(MODELS.build(cfg.model))


@pytest.mark.parametrize('script, args', [('dist_test.sh', ['cfg.py', 'ckpt.pth']), ('dist_train.sh', ['cfg.py']),
                                          ('slurm_train.sh', ['partition', 'job', 'cfg.py']),
                                          ('slurm_test.sh', ['partition', 'job', 'cfg.py'])])
def test_launch_scripts_print_their_usage(script, args):
    proc = run_command(['bash', f'tools/{script}', *args], check=False)
    assert proc.returncode == 2 and proc.stderr.startswith('usage:') and f'tools/{script}' in proc.stderr


def test_downloads_are_cached_per_url_and_checked_against_their_hash(tmp_path):
    from mmlightvit.utils.checkpoint import _load_from_http, http_cache_path
    one = 'https://example.org/a/model_20240101-0123abcd.pth'
    two = 'https://example.org/b/model_20240101-0123abcd.pth'
    assert http_cache_path(one, str(tmp_path)) != http_cache_path(two, str(tmp_path))
    assert http_cache_path(one, str(tmp_path)).endswith('model_20240101-0123abcd.pth')
    cached = http_cache_path(one, str(tmp_path))
    torch.save({'state_dict': {'w': torch.ones(1)}}, cached)  # not the file whose hash the name gives
    with pytest.raises(CheckpointError, match='does not match the hash in its name'):
        _load_from_http(one, model_dir=str(tmp_path))


def test_distributed_runs_end_cleanly_every_time(tmp_path):
    """The process group is destroyed after a barrier: repeated 2-rank runs all exit 0 without an abort."""
    script = tmp_path / 'ranks.py'
    script.write_text('from mmengine.config import Config\n'
                      'from mmlightvit.engine import finish_distributed, setup_cpu_distributed\n'
                      "setup_cpu_distributed(Config(dict()), 'pytorch')\n"
                      'import torch.distributed as dist\n'
                      'dist.all_reduce(__import__("torch").ones(1))\n'
                      'results = [None, None]\n'
                      "dist.all_gather_object(results, {'metric': dist.get_rank()})\n"
                      'finish_distributed()\n')
    for attempt in range(4):
        proc = run_python(['-m', 'torch.distributed.run', '--nproc_per_node=2',
                           f'--master_port={29570 + attempt}', str(script)], check=False)
        assert proc.returncode == 0 and 'terminate called' not in proc.stderr, proc.stderr[-3000:]
