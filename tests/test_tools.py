"""tools/train.py, tools/test.py and the distributed scripts on the CPU, with a tiny Mask R-CNN on demo data."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmlightvit.engine import DatasetNotFoundError, check_dataset_paths
from mmlightvit.utils import load_checkpoint_file
from tests.conftest import forked_python, run_command, run_python

ROOT = Path(__file__).resolve().parents[1]
ITER_CONFIG = ROOT / 'tests/data/configs/mask-rcnn_tiny-resnet_iter.py'
# Eight validation images keep the evaluation runs short.
SMALL_TEST = ['test_dataloader.dataset.indices=8', 'test_dataloader.batch_size=2']


def train(work_dir, *extra):
    return run_python(['tools/train.py', str(ITER_CONFIG), '--work-dir', str(work_dir), *extra])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """4 iterations, checkpoints at 2 and 4."""
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    train(work_dir)
    return work_dir


def test_resume_matches_uninterrupted_run(trained, tmp_path):
    # Stop after 2 iterations (its checkpoint is the one the uninterrupted run wrote), resume in a fresh work dir.
    train(tmp_path, '--resume', str(trained / 'iter_2.pth'))
    resumed = load_checkpoint_file(str(tmp_path / 'iter_4.pth'))
    reference = load_checkpoint_file(str(trained / 'iter_4.pth'))
    assert resumed['meta']['iter'] == reference['meta']['iter'] == 4
    assert resumed['state_dict'].keys() == reference['state_dict'].keys()
    for key, value in reference['state_dict'].items():
        assert torch.equal(resumed['state_dict'][key], value), key
    # the resumed run really trained: its weights moved away from the iteration-2 checkpoint
    start = load_checkpoint_file(str(trained / 'iter_2.pth'))['state_dict']
    assert any(not torch.equal(start[k], v) for k, v in reference['state_dict'].items())


def test_resume_auto_finds_latest(trained, tmp_path):
    # '--resume' without a path resumes from the work dir's last checkpoint; there is nothing left to train.
    for name in ('iter_4.pth', 'last_checkpoint'):
        (tmp_path / name).write_bytes((trained / name).read_bytes())
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    proc = train(tmp_path, '--resume')
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr


def _predictions(path):
    with open(path, 'rb') as f:
        results = pickle.load(f)
    return {r['img_id']: r for r in results}


def test_dist_test_matches_single_process(trained, tmp_path):
    checkpoint = str(trained / 'iter_4.pth')
    single = run_python(['tools/test.py', str(ITER_CONFIG), checkpoint, '--work-dir',
                         str(tmp_path / 'single'), '--out', str(tmp_path / 'single.pkl'), '--cfg-options', *SMALL_TEST])
    dist = run_command(['bash', 'tools/dist_test.sh', str(ITER_CONFIG), checkpoint, '2', '--work-dir',
                        str(tmp_path / 'dist'), '--out', str(tmp_path / 'dist.pkl'), '--cfg-options', *SMALL_TEST],
                       env={'PYTHON': sys.executable, 'PYTHON_EXEC': forked_python(), 'PORT': '29533'})
    one, two = _predictions(tmp_path / 'single.pkl'), _predictions(tmp_path / 'dist.pkl')
    assert len(one) == 8 and one.keys() == two.keys()
    for img_id, pred in one.items():
        a, b = pred['pred_instances'], two[img_id]['pred_instances']
        np.testing.assert_allclose(a['bboxes'].numpy(), b['bboxes'].numpy(), atol=1e-4)
        np.testing.assert_array_equal(a['labels'].numpy(), b['labels'].numpy())
    assert sum(len(p['pred_instances']['labels']) for p in one.values()) > 0

    def metrics(proc):
        line = next(line for line in (proc.stdout + proc.stderr).splitlines() if 'coco/bbox_mAP:' in line)
        return line[line.index('coco/bbox_mAP:'):].split('data_time')[0].split()

    assert metrics(single) == metrics(dist)


def test_dist_train_on_cpu_through_the_multi_node_path(tmp_path):
    # One node of a multi-node job: node rank, node count and the master's address given explicitly, as a
    # cluster's launcher would on each node.
    proc = run_command(['bash', 'tools/dist_train.sh', ITER_CONFIG, '2', '--work-dir', tmp_path, '--cfg-options',
                        'train_cfg.max_iters=2'],
                       env={'PYTHON': sys.executable, 'PYTHON_EXEC': forked_python(), 'NNODES': '1', 'NODE_RANK': '0',
                            'MASTER_ADDR': '127.0.0.1', 'PORT': '29534'})
    checkpoint = load_checkpoint_file(str(tmp_path / 'iter_2.pth'))
    assert checkpoint['meta']['iter'] == 2
    assert 'Distributed training: True' in proc.stdout + proc.stderr


# Stand-ins for Slurm's commands: srun starts --ntasks copies of the command with the variables a Slurm task has
# (and records its options); scontrol resolves the node list to this machine.
FAKE_SRUN = """#!/usr/bin/env bash
echo "$@" > "$SRUN_RECORD"
ntasks=1
while [[ $# -gt 0 && "$1" == -* ]]; do
    case "$1" in --ntasks=*) ntasks=${1#*=} ;; -p) shift ;; esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$ntasks SLURM_LOCALID=$i SLURM_NODELIST='cpu-node[01]' "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[[ "$1 $2 $3" == "show hostnames cpu-node[01]" ]] && echo 127.0.0.1
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / 'slurm-bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / 'srun-options.txt'
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'SRUN_RECORD': str(record), 'PYTHON': forked_python(),
           'GPUS': '2', 'GRES': '', 'CPUS_PER_TASK': '1'}
    return env, record


def test_slurm_train_and_test_on_cpu(fake_slurm, trained, tmp_path):
    env, record = fake_slurm
    work_dir = tmp_path / 'work'
    run_command(['bash', 'tools/slurm_train.sh', 'cpu-partition', 'tiny-job', str(ITER_CONFIG), str(work_dir),
                 '--cfg-options', 'train_cfg.max_iters=2'], env=dict(env, MASTER_PORT='29535'))
    assert load_checkpoint_file(str(work_dir / 'iter_2.pth'))['meta']['iter'] == 2
    options = record.read_text().split()
    assert options[:6] == ['-p', 'cpu-partition', '--job-name=tiny-job', '--ntasks=2', '--ntasks-per-node=2',
                           '--cpus-per-task=1']
    assert not any(o.startswith('--gres') for o in options) and options[-2:] == ['--launcher', 'slurm']

    proc = run_command(['bash', 'tools/slurm_test.sh', 'cpu-partition', 'tiny-test', ITER_CONFIG,
                        trained / 'iter_4.pth', '--work-dir', tmp_path / 'test', '--cfg-options', *SMALL_TEST],
                       env=dict(env, MASTER_PORT='29536'))
    assert 'coco/bbox_mAP:' in proc.stdout + proc.stderr


def test_slurm_launcher_outside_srun_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('with CUDA, mmengine runs the slurm launcher itself')
    if 'SLURM_PROCID' in os.environ:
        pytest.skip('running inside a Slurm task')
    proc = run_python(['tools/train.py', str(ITER_CONFIG), '--work-dir', str(tmp_path), '--launcher',
                       'slurm'], check=False)
    assert proc.returncode != 0 and '--launcher slurm outside an srun task: SLURM_PROCID' in proc.stderr


def test_show_dir_writes_images(trained, tmp_path):
    run_python(['tools/test.py', ITER_CONFIG, trained / 'iter_4.pth', '--work-dir', tmp_path, '--show-dir',
                tmp_path / 'vis', '--cfg-options', 'test_dataloader.dataset.indices=2'])
    assert len(list((tmp_path / 'vis').rglob('*.jpg'))) == 2


def test_missing_dataset_names_path_and_remedy(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/coco_instance.py'))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere/')
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset_paths(cfg)
    message = str(info.value)
    assert str(tmp_path / 'nowhere') in message and 'train_dataloader.dataset.data_root' in message
    assert 'cocodataset.org' in message and 'demo' in message

    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/ade20k.py'))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'ade/')
    with pytest.raises(DatasetNotFoundError, match='ADEChallengeData2016'):
        check_dataset_paths(cfg)

    # VOC's training set is a ConcatDataset of VOC train and the SBD part: the message names the SBD set and how
    # to build it, and gives an override for each of the two
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/pascal_voc12_aug.py'))
    for dataset in cfg.train_dataloader.dataset.datasets:
        dataset.data_root = str(tmp_path / 'VOCdevkit/VOC2012')
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset_paths(cfg)
    message = str(info.value)
    assert 'train_dataloader.dataset.datasets.0.data_root' in message and str(tmp_path / 'VOCdevkit') in message
    assert 'VOC 2012' in message and 'SBD' in message and 'voc_aug.py' in message
    assert 'SegmentationClassAug' in message and 'ImageSets/Segmentation/aug.txt' in message
    assert 'train_dataloader.dataset.datasets.1.data_root=PATH' in message

    proc = run_python(['tools/train.py', str(ITER_CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
                       'train_dataloader.dataset.type=CocoDataset',
                       f'train_dataloader.dataset.data_root={tmp_path}/coco/'], check=False)
    assert proc.returncode == 2 and f'{tmp_path}/coco' in proc.stderr and 'Traceback' not in proc.stderr


def test_unknown_model_type_lists_registries(tmp_path):
    proc = run_python(['tools/train.py', str(ITER_CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
                       'model.backbone.type=NoSuchNet'], check=False)
    assert proc.returncode != 0
    assert "Unknown model type 'NoSuchNet': looked in the registries mmdet::model -> mmengine::model" in proc.stderr


def test_amp_on_cpu_trains_in_bfloat16(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('on a GPU --amp selects mmengine\'s AmpOptimWrapper')
    proc = run_python(['tools/train.py', str(ITER_CONFIG), '--work-dir', str(tmp_path), '--amp',
                       '--cfg-options', 'train_cfg.max_iters=2'])
    assert "type='mmlightvit.CPUBFloat16OptimWrapper'" in proc.stdout + proc.stderr
    checkpoint = load_checkpoint_file(str(tmp_path / 'iter_2.pth'))
    assert checkpoint['meta']['iter'] == 2
    assert all(v.dtype != torch.bfloat16 for v in checkpoint['state_dict'].values())  # weights stay float32


def test_cpu_bfloat16_wrapper_autocasts_only_named_children():
    from mmlightvit.engine import CPUBFloat16OptimWrapper

    class Detector(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Linear(4, 4)
            self.head = torch.nn.Linear(4, 1)
            self.seen = []

        def forward(self, x):
            features = self.backbone(x)
            self.seen.append((features.dtype, self.head(features).dtype))
            return self.head(features).sum()

    model = Detector()
    inside = []  # registered before the wrapper's hooks, so it sees the backbone's own output
    model.backbone.register_forward_hook(lambda module, args, output: inside.append(output.dtype))
    wrapper = CPUBFloat16OptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                      autocast_modules=['backbone'])
    before = model.backbone.weight.detach().clone()
    with wrapper.optim_context(model):
        wrapper.update_params(model(torch.randn(2, 4)))
    model(torch.randn(2, 4))  # outside a training step (validation): float32 throughout
    # in the step the backbone computed in bfloat16 and handed float32 to the head, which ran in float32
    assert inside == [torch.bfloat16, torch.float32]
    assert model.seen == [(torch.float32, torch.float32)] * 2
    # the float32 weights were updated through the bfloat16 computation
    assert model.backbone.weight.dtype == torch.float32 and not torch.equal(model.backbone.weight, before)

    whole = CPUBFloat16OptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with whole.optim_context(model):
        model(torch.randn(2, 4))
    assert model.seen[-1] == (torch.bfloat16, torch.bfloat16)


def test_segmentation_out_writes_label_maps(tmp_path):
    """--out DIR for a segmentor writes one label PNG per test image, as mmseg 1.x's test.py, beside the metric."""
    from PIL import Image

    from mmlightvit.apis.model import build_model, config_without_pretrained
    config = ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py'
    cfg = config_without_pretrained(str(config))
    torch.save({'state_dict': build_model(cfg).state_dict()}, tmp_path / 'weights.pth')
    proc = run_python(['tools/test.py', str(config), str(tmp_path / 'weights.pth'), '--work-dir',
                       str(tmp_path / 'work'), '--out', str(tmp_path / 'maps'), '--cfg-options',
                       'test_dataloader.dataset.indices=3'])
    assert 'mIoU:' in proc.stdout + proc.stderr
    maps = sorted((tmp_path / 'maps').glob('*.png'))
    assert len(maps) == 3
    label = np.array(Image.open(maps[0]))
    assert label.ndim == 2 and label.max() <= cfg.model.decode_head.num_classes  # 1..K after reduce_zero_label
    proc = run_python(['tools/test.py', str(ITER_CONFIG), str(tmp_path / 'weights.pth'), '--out',
                       str(tmp_path / 'det-maps')], check=False)
    assert proc.returncode != 0 and 'must be a .pkl or .pickle file for a detector' in proc.stderr
