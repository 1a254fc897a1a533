"""Checkpoints load with weights_only=True and an allowlist: payloads never run, bad files fail clearly."""
import os
import pickle
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.runner import load_checkpoint

from mmlightvit.models.weights import resolve_state
from mmlightvit.utils import CheckpointError, extract_state_dict, install_safe_checkpoint_loading, load_checkpoint_file

install_safe_checkpoint_loading()  # what the tools do: mmengine's load_checkpoint below goes through it


class _CreatesFile:
    """Unpickling this would create a file: the payload of the malicious checkpoints below."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path, ))


@pytest.mark.parametrize('zip_format', [True, False])
def test_pickled_callable_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / 'payload-ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': _CreatesFile(str(marker))}, path,
               _use_new_zipfile_serialization=zip_format)
    for load in (load_checkpoint_file, lambda p: load_checkpoint(nn.Linear(1, 1), p)):
        with pytest.raises(CheckpointError, match='Refusing to load checkpoint') as info:
            load(str(path))
        assert str(path) in str(info.value)
        assert 'makedirs' in str(info.value)
    assert not marker.exists()


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / 'notes.pth'
    text.write_text('this is not a checkpoint\n')
    for path in (truncated, text):
        with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint') as info:
            load_checkpoint_file(str(path))
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_file(str(tmp_path / 'missing.pth'))


def test_runner_checkpoint_contents_are_allowlisted(tmp_path):
    """What mmengine's Runner saves (message hub with HistoryBuffers, numpy data) loads safely."""
    hub = MessageHub.get_instance('safety-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', np.float32(0.5))
    hub.update_info('iter', np.int64(3))
    path = tmp_path / 'runner.pth'
    torch.save({'meta': {'message_hub': hub.state_dict(), 'seed': np.int64(0), 'dtype': np.dtype('float32')},
                'state_dict': {'w': torch.ones(1)}, 'rng': np.random.get_state()}, path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['meta']['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(1.0)
    assert loaded['meta']['message_hub']['log_scalars']['train/loss'].current() == pytest.approx(0.5)
    assert loaded['meta']['seed'] == 0 and loaded['meta']['dtype'] == np.float32
    # the default statistics work after loading, custom functions are not pickled
    restored = pickle.loads(pickle.dumps(loaded['meta']['message_hub']['log_scalars']['train/loss']))
    assert restored.statistics('mean') == pytest.approx(1.0)


def test_state_dict_unwrapping_and_strict_errors():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    state = model.state_dict()
    for wrapped in (state, {'state_dict': state}, {'model': state, 'optimizer': {}},
                    {'model_ema': {f'module.{k}': v for k, v in state.items()}}):
        assert list(extract_state_dict(wrapped)) == list(state)
    with pytest.raises(CheckpointError, match='no state dict found'):
        extract_state_dict({'epoch': 3, 'config': 'x'})

    missing = {k: v for k, v in state.items() if k != '0.bias'}
    with pytest.raises(CheckpointError, match=r'missing keys: 0\.bias'):
        resolve_state(model, missing, 'ckpt')
    extra = dict(state, **{'head.weight': torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r'unexpected keys: head\.weight'):
        resolve_state(model, extra, 'ckpt')
    wrong = dict(state, **{'1.weight': torch.zeros(5)})
    with pytest.raises(CheckpointError, match=r'wrong shapes: 1\.weight \(checkpoint \(5,\), model \(4,\)\)'):
        resolve_state(model, wrong, 'ckpt')
    resolve_state(model, state, 'ckpt')  # a full match passes


def test_importing_the_package_changes_nothing_in_mmengine():
    """``import mmlightvit`` (and its subpackages) registers modules and the config package name, nothing else:
    mmengine's checkpoint loaders and HistoryBuffer stay as they were until a tool asks for the safe loading."""
    import subprocess
    import sys
    script = textwrap.dedent('''
        from mmengine.config import utils as config_utils
        from mmengine.logging import HistoryBuffer
        from mmengine.runner.checkpoint import CheckpointLoader
        before = (dict(CheckpointLoader._schemes), HistoryBuffer.__getstate__, dict(config_utils.MODULE2PACKAGE))
        import mmlightvit, mmlightvit.apis, mmlightvit.datasets, mmlightvit.deploy, mmlightvit.engine  # noqa
        import mmlightvit.models  # noqa
        after = (dict(CheckpointLoader._schemes), HistoryBuffer.__getstate__, dict(config_utils.MODULE2PACKAGE))
        assert after[0] == before[0], 'checkpoint loaders changed'
        assert after[1] is before[1], 'HistoryBuffer changed'
        assert after[2] == dict(before[2], mmlightvit='mmlightvit'), 'MODULE2PACKAGE'
        from mmlightvit.utils import install_safe_checkpoint_loading
        install_safe_checkpoint_loading()
        assert CheckpointLoader._schemes != before[0] and HistoryBuffer.__getstate__ is not before[1]
        print('ok')
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', proc.stderr[-3000:]
