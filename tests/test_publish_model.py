"""tools/model_converters/publish_model.py: a training checkpoint becomes a file that plain ``torch.load`` and the
stock mmdet / mmseg loaders read, named after its sha256; inputs and existing files are never overwritten."""
import argparse
import hashlib
import pickle
import runpy
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

from mmlightvit.apis.model import build_model, config_without_pretrained
from mmlightvit.utils import checkpoint as checkpoint_module
from mmlightvit.utils.cli import exit_on_user_error
from tests.conftest import DET_CONFIG, ROOT, SEG_CONFIG, load_tool, read_config

TOOL = 'tools/model_converters/publish_model.py'
publish = load_tool(TOOL)
CLASSES = ('circle', 'rectangle', 'triangle', 'star')
PALETTE = [(220, 20, 60), (0, 120, 255), (0, 170, 30), (250, 170, 30)]


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_tool(argv) -> dict:
    """The tool as its command line runs it: a user's error ends in SystemExit(2) and one line on stderr."""
    with exit_on_user_error():
        return publish.main([str(a) for a in argv])


def save_training_checkpoint(path, state: dict, cfg_text: str = '') -> None:
    """``state`` in a checkpoint as tools/train.py writes one: with the message hub, optimizer, schedulers and meta
    of mmengine's Runner."""
    hub = MessageHub.get_instance('publish-model-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', np.int64(4))
    meta = dict(
        epoch=1, iter=4, cfg=cfg_text, seed=np.int64(7), experiment_name='demo_20260101_000000',
        mmengine_version='0.10.7', dataset_meta=dict(classes=CLASSES, palette=np.array(PALETTE)),
        hook_msgs=dict(best_score=np.float64(0.25), last_ckpt='epoch_1.pth'),
        args=argparse.Namespace(lr=0.1))  # allowlisted by the safe loader, but not plain data
    checkpoint = dict(
        meta=meta, state_dict=state, message_hub=hub.state_dict(),
        optimizer=dict(state={0: dict(step=torch.tensor(4.0), exp_avg=torch.zeros(3))},
                       param_groups=[dict(lr=1e-3, params=[0])]),
        param_schedulers=[dict(base_lrs=[1e-3], last_epoch=4)])
    # HistoryBuffer pickled as tools/train.py pickles it (install_safe_checkpoint_loading), not in this process
    with mock.patch.object(HistoryBuffer, '__getstate__', checkpoint_module._history_buffer_state):
        torch.save(checkpoint, path)


def trained_state(config) -> dict:
    """The state_dict of ``config``'s model, changed as if trained, with one non-contiguous tensor."""
    state = build_model(config_without_pretrained(config)).state_dict()
    for value in state.values():
        if value.is_floating_point():
            value += 1.0  # unlike any fresh initialisation
    key = next(k for k, v in state.items() if v.dim() >= 2 and min(v.shape[-2:]) > 1)
    state[key] = state[key].transpose(-1, -2).contiguous().transpose(-1, -2)  # torch.save keeps the strides
    assert not state[key].is_contiguous()
    return state


@pytest.fixture(scope='module')
def det_training(tmp_path_factory):
    """(path, state_dict) of a training checkpoint of the demo Mask R-CNN."""
    config = read_config(DET_CONFIG)
    state = trained_state(config)
    path = tmp_path_factory.mktemp('det') / 'epoch_1.pth'
    save_training_checkpoint(path, state, config.pretty_text)
    return path, state


@pytest.fixture
def small_training(tmp_path):
    """A training checkpoint of a few tensors, for the tests of paths and errors."""
    path = tmp_path / 'inputs' / 'epoch_1.pth'
    path.parent.mkdir()
    save_training_checkpoint(path, {'conv.weight': torch.randn(4, 3, 3, 3), 'bn.num_batches_tracked': torch.tensor(3)})
    return path


def stock_mmengine_loading():
    """mmengine's own local loader (plain torch.load), even where a test before installed the safe one."""
    return mock.patch.dict(CheckpointLoader._schemes, {'': load_from_local})


def assert_same_weights(published: dict, original: dict):
    assert list(published) == list(original)
    for key, value in original.items():
        assert torch.equal(published[key], value) and published[key].dtype == value.dtype, key


def test_published_file_holds_weights_and_plain_meta_under_its_hash(det_training, tmp_path, capsys):
    training, state = det_training
    with pytest.raises(pickle.UnpicklingError):  # why publishing is needed: the training file is not plain data
        torch.load(training)

    summary = run_tool([training, tmp_path / 'mask-rcnn.pth'])
    out = Path(summary['out'])
    assert out == tmp_path / f'mask-rcnn-{sha256(out)[:8]}.pth' and summary['sha256'] == sha256(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left
    printed = capsys.readouterr().out
    assert str(out) in printed and summary['sha256'] in printed and 'MB' in printed

    published = torch.load(out)  # plain torch.load: weights only
    assert sorted(published) == ['meta', 'state_dict']
    assert_same_weights(published['state_dict'], state)
    assert all(value.is_contiguous() for value in published['state_dict'].values())
    meta = published['meta']
    assert meta['dataset_meta'] == dict(classes=list(CLASSES), palette=[list(color) for color in PALETTE])
    assert type(meta['seed']) is int and meta['seed'] == 7
    assert meta['hook_msgs'] == dict(best_score=0.25, last_ckpt='epoch_1.pth')
    assert (meta['epoch'], meta['iter'], meta['mmengine_version']) == (1, 4, '0.10.7')
    assert meta['cfg'].startswith('auto_scale_lr') and 'args' not in meta
    assert summary['dropped'] == ['message_hub', 'optimizer', 'param_schedulers', 'meta.args']
    assert 'meta.args' in printed


def test_stock_mmdet_and_mmseg_loaders_read_the_published_file(det_training, tmp_path):
    from mmdet.apis import init_detector
    from mmseg.apis import init_model
    training, state = det_training
    with stock_mmengine_loading():
        detector = init_detector(read_config(DET_CONFIG), run_tool([training, tmp_path / 'det.pth'])['out'],
                                 device='cpu')
    assert_same_weights(detector.state_dict(), state)
    assert detector.dataset_meta['classes'] == list(CLASSES)

    seg_config = read_config(SEG_CONFIG)
    seg_state = trained_state(seg_config)
    save_training_checkpoint(tmp_path / 'iter_2.pth', seg_state)
    with stock_mmengine_loading():
        segmentor = init_model(seg_config, run_tool([tmp_path / 'iter_2.pth', tmp_path / 'seg.pth'])['out'],
                               device='cpu')
    assert_same_weights(segmentor.state_dict(), seg_state)
    assert segmentor.dataset_meta['classes'] == list(CLASSES)


def test_existing_files_and_the_input_are_never_overwritten(small_training, tmp_path, capsys):
    training_digest = sha256(small_training)
    out = tmp_path / 'model.pth'
    published = run_tool([small_training, out])['out']
    published_time = Path(published).stat().st_mtime_ns

    with pytest.raises(SystemExit) as exit_info:  # the same weights again: the same hashed name
        run_tool([small_training, out])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith('error: ') and f'{published!r} already exists' in error and '--overwrite' in error
    assert Path(published).stat().st_mtime_ns == published_time
    assert run_tool([small_training, out, '--overwrite'])['out'] == published
    assert 'replacing the existing' in capsys.readouterr().out

    # OUT_FILE is the input: refused before any work, --overwrite or not
    with pytest.raises(SystemExit) as exit_info:
        run_tool([small_training, small_training, '--overwrite'])
    assert exit_info.value.code == 2 and f'{str(small_training)!r} is the input' in capsys.readouterr().err
    # a published file published again under the same OUT_FILE: its hashed name is the input
    with pytest.raises(SystemExit) as exit_info:
        run_tool([published, out, '--overwrite'])
    assert exit_info.value.code == 2 and f'{published!r} is the input' in capsys.readouterr().err
    assert sha256(small_training) == training_digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ['inputs', Path(published).name]


def test_unusable_inputs_end_in_one_line_and_status_2(small_training, tmp_path, capsys):
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(small_training.read_bytes()[:1024])
    unsafe = tmp_path / 'mmengine.pth'

    def mmengine_state(buffer):  # mmengine's own pickling of a HistoryBuffer: its statistics functions too
        return {**buffer.__dict__, 'statistics_methods': buffer._statistics_methods}

    with mock.patch.object(HistoryBuffer, '__getstate__', mmengine_state):  # which the safe loader refuses
        torch.save({'state_dict': {'w': torch.ones(1)}, 'message_hub': {'loss': HistoryBuffer([1.0], [1])}}, unsafe)
    no_weights = tmp_path / 'no_weights.pth'
    torch.save({'meta': {'epoch': 1}, 'optimizer': {}}, no_weights)
    cases = {truncated: 'not a readable PyTorch checkpoint', unsafe: 'Refusing to load checkpoint',
             no_weights: 'holds no state_dict', tmp_path / 'missing.pth': 'does not exist'}
    for source, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            run_tool([source, tmp_path / 'out.pth'])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in error and str(source) in error, error
        assert len(error.strip().splitlines()) == 1, error
    assert not list(tmp_path.glob('out*')) and not list(tmp_path.glob('.out*'))

    # the script's own __main__ (in this process: a new one would spend seconds importing torch)
    with mock.patch.object(sys, 'argv', [TOOL, str(truncated), str(tmp_path / 'out.pth')]):
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / TOOL), run_name='__main__')
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith('error: ') and str(truncated) in error
