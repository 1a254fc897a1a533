"""The install routes beside tools/install.sh: mim, and the package into an environment that has the stack."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'tests/data/configs/mask-rcnn_tiny-resnet_iter.py'
MIM = Path(sys.executable).with_name('mim')


def run(args, cwd=ROOT):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, f'{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout + proc.stderr


def test_mim_train_and_test(tmp_path):
    run([MIM, 'train', 'mmlightvit', CONFIG, '--work-dir', tmp_path])
    assert (tmp_path / 'iter_4.pth').is_file()
    output = run([MIM, 'test', 'mmlightvit', CONFIG, '--checkpoint', tmp_path / 'iter_4.pth', '--work-dir',
                  tmp_path / 'test', '--cfg-options', 'test_dataloader.dataset.indices=2'])
    assert 'coco/bbox_mAP' in output


def test_mim_download_resolves_released_weights_and_configs(tmp_path, monkeypatch):
    """``mim download mmlightvit --config NAME``: the URL comes from our metafile's Weights and the config is
    dumped in full (the network fetch itself is mim's, replaced here by a local copy)."""
    import importlib
    # the module (the attribute mim.commands.download is the function)
    mim_download = importlib.import_module('mim.commands.download')
    fetched = []

    def fake_download(url, dest_path, **kwargs):
        fetched.append(url)
        Path(dest_path).write_bytes(b'weights')

    monkeypatch.setattr(mim_download, 'download_from_file', fake_download)
    names = mim_download.download('mmlightvit', ['mask-rcnn_repvit-m1.1_coco'], dest_root=str(tmp_path))
    assert fetched == ['https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_1_coco.pth']
    assert names == ['repvit_m1_1_coco.pth'] and (tmp_path / 'repvit_m1_1_coco.pth').is_file()
    dumped = (tmp_path / 'mask-rcnn_repvit-m1.1_coco.py').read_text()
    assert "type='mmlightvit.RepViT'" in dumped and 'MaskRCNN' in dumped


def test_package_installs_into_an_existing_stack(tmp_path):
    """The README's route for an environment that already has torch / mmcv / mmdet / mmseg: offline (--no-index)
    and nothing but mmlightvit itself to install, so no part of the stack would be replaced."""
    report = tmp_path / 'report.json'
    pip = [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index', '--disable-pip-version-check']
    run([*pip, '--no-deps', 'openmim==0.3.9'])
    run([*pip, '--no-build-isolation', '--report', report, '-r', ROOT / 'requirements/tools.txt', '-e', ROOT])
    installed = [item['metadata']['name'] for item in json.loads(report.read_text())['install']]
    assert installed == ['mmlightvit']
