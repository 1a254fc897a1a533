"""Configs ship with the package: another project inherits them as 'mmlightvit::<family>/<config>.py'."""
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A project of its own: one config that inherits ours and changes one thing, built with mmdet's and mmseg's
# registries from a directory outside the repository.
USER_CONFIGS = {
    'det.py': "_base_ = 'mmlightvit::repvit/mask-rcnn_repvit-m1.1_coco.py'\n"
              "model = dict(backbone=dict(drop_path_rate=0.05, init_cfg=None))\n",
    'seg.py': "_base_ = 'mmlightvit::edgenext/fpn_edgenext-xx-small_ade20k-512x512-40k.py'\n"
              "model = dict(backbone=dict(init_cfg=None), decode_head=dict(num_classes=19))\n",
}
BUILD = textwrap.dedent('''
    import mmlightvit
    from mmengine.config import Config
    print('package', mmlightvit.__file__)
    det = Config.fromfile('det.py')
    from mmdet.registry import MODELS as DET
    from mmdet.utils import register_all_modules as det_modules
    det_modules()
    detector = DET.build(det.model)
    print('det', type(detector.backbone).__name__, det.model.backbone.arch, det.model.backbone.drop_path_rate,
          det.optim_wrapper.optimizer.lr)
    seg = Config.fromfile('seg.py')
    from mmseg.registry import MODELS as SEG
    from mmseg.utils import register_all_modules as seg_modules
    seg_modules()
    segmentor = SEG.build(seg.model)
    print('seg', type(segmentor.backbone).__name__, segmentor.decode_head.num_classes, seg.train_cfg.max_iters)
''')


def _build_outside_repo(tmp_path: Path, pythonpath: str = '') -> str:
    project = tmp_path / 'user_project'
    project.mkdir()
    for name, text in USER_CONFIGS.items():
        (project / name).write_text(text)
    env = dict(os.environ, PYTHONWARNINGS='ignore', PYTHONPATH=pythonpath)
    proc = subprocess.run([sys.executable, '-c', BUILD], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _check_built(stdout: str, package_root: Path) -> None:
    lines = dict(line.split(' ', 1) for line in stdout.splitlines())
    assert Path(lines['package']).resolve().is_relative_to(package_root.resolve()), lines['package']
    # the inherited recipe (AdamW 2e-4) and the user's change (drop path 0.05) both arrive
    assert lines['det'].split() == ['RepViT', 'm1.1', '0.05', '0.0002']
    assert lines['seg'].split() == ['EdgeNeXt', '19', '40000']


def test_installed_package_configs_inherit_from_outside_the_repo(tmp_path):
    # the development (editable) install resolves through mmlightvit/.mim -> configs/
    _check_built(_build_outside_repo(tmp_path), ROOT / 'mmlightvit')


def test_wheel_ships_every_config(tmp_path):
    wheel_dir = tmp_path / 'wheel'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheel_dir.glob('mmlightvit-*.whl')
    shipped = {name.split('.mim/configs/', 1)[1] for name in zipfile.ZipFile(wheel).namelist()
               if '.mim/configs/' in name}
    in_repo = {str(p.relative_to(ROOT / 'configs')) for p in (ROOT / 'configs').rglob('*') if p.is_file()
               and p.suffix in ('.py', '.yml')}
    assert shipped == in_repo

    # installed from the wheel (not the checkout), the same user configs build
    target = tmp_path / 'site'
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    _check_built(_build_outside_repo(tmp_path, pythonpath=str(target)), target / 'mmlightvit')


def test_unknown_shipped_config_names_the_path(tmp_path):
    (tmp_path / 'bad.py').write_text("_base_ = 'mmlightvit::repvit/no-such-config.py'\n")
    proc = subprocess.run([sys.executable, '-c', "import mmlightvit; from mmengine import Config; "
                           "Config.fromfile('bad.py')"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'no-such-config.py' in proc.stderr


@pytest.mark.parametrize('link', ['configs', 'model-index.yml'])
def test_mim_links_point_into_the_repository(link):
    # both are relative symlinks committed to git, so a fresh clone has them
    path = ROOT / 'mmlightvit' / '.mim' / link
    assert path.is_symlink() and path.resolve() == (ROOT / link).resolve()
