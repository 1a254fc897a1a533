"""What a careless user did, and what they get now: their files untouched (hashes before and after), or an early
message that names the file or the setting. One test per kind of mistake; demo data and short demo trainings."""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmlightvit.engine import load_config
from mmlightvit.engine.setup import check_class_counts, dataset_folders
from mmlightvit.engine.tta import check_tta_pipeline, scaled_tta_pipeline, tta_pipeline
from mmlightvit.engine.work_dir import WorkDirBusyError, lock_work_dir, prepare_work_dir, release_work_dir
from mmlightvit.utils.files import (OutputPathError, check_output, replace_file_atomically,
                                   replace_folder_atomically)

from tests.conftest import DET_CONFIG, ROOT, SEG_CONFIG, load_tool, run_python

ITER_CONFIG = ROOT / 'tests/data/configs/mask-rcnn_tiny-resnet_iter.py'


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(folder) -> dict:
    return {p: digest(p) for p in sorted(Path(folder).rglob('*')) if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------------ work dirs
def test_second_training_in_a_work_dir_stops_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from mmlightvit.engine.work_dir import '
                               'lock_work_dir; lock_work_dir(sys.argv[1]); print("held", flush=True); '
                               'time.sleep(120)', str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(WorkDirBusyError, match=f'PID {holder.pid} on .*started .*: python -c'):
            lock_work_dir(str(tmp_path))
        proc = run_python(['tools/train.py', ITER_CONFIG, '--work-dir', tmp_path], check=False)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert f'is in use by another run (PID {holder.pid}' in proc.stderr and '--work-dir' in proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ['.mmlightvit-lock']  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # its holder is gone (killed, as a crashed run): the lock is free again
    lock_work_dir(str(tmp_path))
    release_work_dir(str(tmp_path))


def test_dead_writers_temporary_files_are_removed_when_the_work_dir_is_used_again(tmp_path):
    stale = tmp_path / f'.epoch_3.pth.tmp-{dead_pid()}'
    alive = tmp_path / f'.epoch_4.pth.tmp-{os.getpid()}'  # a writer still at work: kept
    user = tmp_path / 'notes.tmp-1'  # not a temporary name of ours
    for path in (stale, alive, user):
        path.write_bytes(b'x' * 10)
    assert prepare_work_dir(str(tmp_path)) == [str(stale)]
    release_work_dir(str(tmp_path))
    assert not stale.exists() and alive.exists() and user.exists()
    with pytest.raises(OutputPathError, match='work dir .* cannot be written'):  # below a file
        lock_work_dir(str(user / 'run'))


def test_resume_from_a_folder_takes_its_newest_complete_checkpoint(tmp_path):
    run_python(['tools/train.py', ITER_CONFIG, '--work-dir', tmp_path / 'first'])
    (tmp_path / 'first/last_checkpoint').unlink()
    (tmp_path / 'first/iter_4.pth').write_bytes(b'truncated by a crash')  # incomplete: not taken
    proc = run_python(['tools/train.py', ITER_CONFIG, '--work-dir', tmp_path / 'second', '--resume',
                       tmp_path / 'first', '--cfg-options', 'train_cfg.max_iters=2'])
    assert f'resuming from {tmp_path}/first/iter_2.pth' in proc.stdout
    proc = run_python(['tools/train.py', ITER_CONFIG, '--work-dir', tmp_path / 'third', '--resume',
                       tmp_path / 'empty'], check=False)
    assert proc.returncode == 2 and 'no such file or folder' in proc.stderr, proc.stderr[-2000:]


# ----------------------------------------------------------------------------------------- tools/test.py
def test_test_tool_never_writes_into_the_dataset(seg_checkpoint, tmp_path):
    labels = ROOT / 'data/demo/ade20k/annotations/validation'
    before = digests(labels)
    proc = run_python(['tools/test.py', SEG_CONFIG, seg_checkpoint, '--work-dir', tmp_path, '--out', labels,
                       '--overwrite'], check=False)
    assert proc.returncode == 2 and 'inside the dataset folder' in proc.stderr, proc.stderr[-2000:]
    assert 'mIoU' not in proc.stdout + proc.stderr  # refused before the evaluation
    assert digests(labels) == before


def test_test_tool_outputs_are_checked_before_the_evaluation(tmp_path):
    test_tool = load_tool('tools/test.py')
    cfg = load_config(str(SEG_CONFIG))
    assert str(ROOT / 'data/demo/ade20k') in dataset_folders(cfg)

    def args(**given):
        return argparse.Namespace(**dict(dict(config=str(SEG_CONFIG), checkpoint='w.pth', out=None, show_dir=None,
                                              overwrite=False), **given))

    maps = tmp_path / 'maps'
    maps.mkdir()
    (maps / 'earlier.png').write_bytes(b'a user file')
    with pytest.raises(OutputPathError, match='already holds 1 entries'):
        test_tool.check_outputs(cfg, args(out=str(maps)))
    test_tool.check_outputs(cfg, args(out=str(maps), overwrite=True))  # said, then allowed
    results = tmp_path / 'results.pkl'
    results.write_bytes(b'earlier results')
    with pytest.raises(OutputPathError, match='already exists.*--overwrite'):
        test_tool.check_outputs(cfg, args(out=str(results)))
    with pytest.raises(OutputPathError, match='cannot be written'):  # below a file: no folder can be made there
        test_tool.check_outputs(cfg, args(out=str(results / 'x.pkl')))
    with pytest.raises(OutputPathError, match='is the input'):
        test_tool.check_outputs(cfg, args(out=str(results), checkpoint=str(results), overwrite=True))
    with pytest.raises(OutputPathError, match='--show-dir .* inside the dataset folder'):
        test_tool.check_outputs(cfg, args(show_dir=str(ROOT / 'data/demo/ade20k/images')))
    assert results.read_bytes() == b'earlier results'


def test_output_guard_resolves_links(tmp_path):
    checkpoint = tmp_path / 'epoch_12.pth'
    checkpoint.write_bytes(b'weights')
    (tmp_path / 'link.pth').symlink_to(checkpoint)
    with pytest.raises(OutputPathError, match='is the input'):
        check_output(str(tmp_path / 'link.pth'), 'dst', inputs=[str(checkpoint)], overwrite=True)
    assert check_output(str(tmp_path / 'new.pth'), 'dst', inputs=[str(checkpoint)]) is None



def _fails_after(write):
    def failing(tmp):
        write(tmp)
        raise KeyboardInterrupt  # a kill in the middle of a write
    return failing


def test_atomic_writes_leave_the_old_file_or_folder_when_interrupted(tmp_path):
    """One mechanism for a file and a folder: an interrupted write leaves the previous version and no temporary
    beside it; a finished one takes its place."""
    path, folder = tmp_path / 'weights.pth', tmp_path / 'demo'
    replace_file_atomically(str(path), lambda tmp: Path(tmp).write_text('old'))
    replace_folder_atomically(str(folder), lambda tmp: (Path(tmp) / 'meta.json').write_text('old'))
    with pytest.raises(KeyboardInterrupt):
        replace_file_atomically(str(path), _fails_after(lambda tmp: Path(tmp).write_text('half')))
    with pytest.raises(KeyboardInterrupt):
        replace_folder_atomically(str(folder), _fails_after(lambda tmp: (Path(tmp) / 'meta.json').write_text('x')))
    assert path.read_text() == 'old' and (folder / 'meta.json').read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['demo', 'weights.pth']
    replace_file_atomically(str(path), lambda tmp: Path(tmp).write_text('new'))
    assert path.read_text() == 'new' and sorted(p.name for p in tmp_path.iterdir()) == ['demo', 'weights.pth']

# ------------------------------------------------------------------------------------------- converters
@pytest.fixture(scope='module')
def repvit_checkpoint(tmp_path_factory):
    """A whole-model checkpoint as training writes it: a RepViT-M0.9 backbone under backbone.*, plus more."""
    from mmlightvit.models.backbones import RepViT
    torch.manual_seed(0)
    state = {f'backbone.{k}': v for k, v in RepViT(arch='m0.9').state_dict().items()}
    path = tmp_path_factory.mktemp('ckpt') / 'epoch_12.pth'
    torch.save({'state_dict': state, 'optimizer': {'state': {}}, 'meta': {'epoch': 12}}, path)
    return path


def test_converters_never_replace_their_input(repvit_checkpoint, tmp_path):
    before = digest(repvit_checkpoint)
    to_mmlightvit = load_tool('tools/model_converters/to_mmlightvit.py')
    with pytest.raises(OutputPathError, match='is the input'):
        to_mmlightvit.main([str(repvit_checkpoint), str(repvit_checkpoint), '--overwrite'])
    fuse = load_tool('tools/model_converters/fuse_checkpoint.py')
    with pytest.raises(OutputPathError, match='is the input'):
        fuse.main([str(ROOT / 'configs/repvit/fpn_repvit-m0.9_ade20k-512x512-40k.py'), str(repvit_checkpoint),
                   str(repvit_checkpoint)])
    export = load_tool('tools/deploy/export_onnx.py')
    assert export.main([str(ROOT / 'configs/repvit/fpn_repvit-m0.9_ade20k-512x512-40k.py'), str(repvit_checkpoint),
                        '--out', str(repvit_checkpoint), '--no-check']) == 2
    assert digest(repvit_checkpoint) == before

    # an existing output: kept unless --overwrite, which replaces it and says so
    out = tmp_path / 'backbone.pth'
    out.write_bytes(b'an earlier conversion')
    with pytest.raises(OutputPathError, match='already exists'):
        to_mmlightvit.main([str(repvit_checkpoint), str(out)])
    assert out.read_bytes() == b'an earlier conversion'
    assert to_mmlightvit.main([str(repvit_checkpoint), str(out), '--overwrite'])['arch'] == 'm0.9'
    assert not list(tmp_path.glob('.*tmp*'))  # written through a temporary file, renamed into place


def test_converter_names_the_family_it_found(repvit_checkpoint, tmp_path):
    to_mmlightvit = load_tool('tools/model_converters/to_mmlightvit.py')
    with pytest.raises(SystemExit, match='--family EdgeNeXt does not read these weights .*fit RepViT'):
        to_mmlightvit.main([str(repvit_checkpoint), str(tmp_path / 'out.pth'), '--family', 'EdgeNeXt'])
    proc = run_python(['tools/model_converters/to_mmlightvit.py', repvit_checkpoint, repvit_checkpoint],
                      check=False)
    assert proc.returncode == 2 and proc.stderr.startswith('error: dst') and 'Traceback' not in proc.stderr


def test_static_export_writes_the_asked_size_to_the_asked_file(tmp_path):
    import onnx
    export = load_tool('tools/deploy/export_onnx.py')
    config = str(ROOT / 'configs/edgenext/fpn_edgenext-xx-small_ade20k-512x512-40k.py')
    out = tmp_path / 'fixed.onnx'
    assert export.main([config, 'none', '--static', '--shape', '64', '96', '--out', str(out), '--repeat', '1',
                        '--warmup', '0']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fixed.onnx']
    dims = [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 96]
    with pytest.raises(SystemExit):  # a fixed-size graph is not checked at other sizes
        export.parse_args([config, 'none', '--static', '--shape', '64', '96', '--check-shapes', '32', '32'])
    with pytest.raises(SystemExit):
        export.parse_args([config, 'none', '--shape', '0', '96'])


@pytest.mark.parametrize('tool, suffix', [('export_onnx', 'onnx'), ('export_executorch', 'pte'),
                                          ('export_coreml', 'mlpackage')])
def test_export_tools_name_a_config_that_does_not_parse(tool, suffix, tmp_path, capsys):
    """A config with a syntax error, or inheriting one that does not exist: one line naming the file, status 2,
    nothing written."""
    main = load_tool(f'tools/deploy/{tool}.py').main
    broken, orphan = tmp_path / 'broken.py', tmp_path / 'orphan.py'
    broken.write_text('model = dict(\n')
    orphan.write_text("_base_ = ['./missing_base.py']\n")
    out = str(tmp_path / f'out.{suffix}')
    for config, reason in ((broken, 'has a syntax error'), (orphan, 'inherits a config that does not exist')):
        assert main([str(config), 'none', '--out', out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'error: {config} ') and reason in err and 'Traceback' not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['broken.py', 'orphan.py']


# ------------------------------------------------------------------------------------------- image demo
def test_image_demo_keeps_every_input_and_every_prediction(det_checkpoint, tmp_path, capsys):
    demo = load_tool('tools/image_demo.py')
    source = sorted((ROOT / 'data/demo/coco/val').iterdir())[:2]
    images = tmp_path / 'images'
    out = images / 'out'  # the output folder inside the input folder, holding an image of the user's
    (images / 'sub').mkdir(parents=True)
    (out / 'vis').mkdir(parents=True)
    Image.open(source[0]).save(images / 'x.png')
    shutil.copy(source[0], images / 'x.jpg')
    shutil.copy(source[1], images / 'sub/y.jpg')
    shutil.copy(source[1], out / 'vis/x.jpg')
    (images / 'empty.jpg').write_bytes(b'')
    (images / 'text.jpg').write_text('not an image')
    before = digests(images)
    argv = [str(images), str(DET_CONFIG), '--weights', det_checkpoint, '--device', 'cpu', '--out-dir', str(out),
            '--pred-score-thr', '0']
    with pytest.raises(OutputPathError, match='1 outputs exist already .*vis/x.jpg'):
        demo.main(argv)
    (out / 'vis/x.jpg').rename(tmp_path / 'kept.jpg')
    before.pop(out / 'vis/x.jpg')
    assert demo.main(argv) == 1  # two unreadable files: skipped, named, the run goes on
    err = capsys.readouterr().err
    assert f'skipping {images}/empty.jpg: empty file' in err and f'skipping {images}/text.jpg' in err
    assert 'error: 2 of 5 images could not be read' in err
    predictions = sorted(str(p.relative_to(out / 'preds')) for p in (out / 'preds').rglob('*.json'))
    assert predictions == ['sub/y.jpg.json', 'x.jpg.json', 'x.png.json']
    assert sorted(str(p.relative_to(out / 'vis')) for p in (out / 'vis').rglob('*.*')) == [
        'sub/y.jpg', 'x.jpg', 'x.png']
    for name in ('x.png', 'x.jpg'):
        assert len(json.loads((out / 'preds' / f'{name}.json').read_text())['scores']) > 0
    assert all(digest(path) == value for path, value in before.items())  # no input changed

    empty = tmp_path / 'nothing'
    empty.mkdir()
    with pytest.raises(SystemExit, match='no images'):
        demo.main([str(empty), str(DET_CONFIG), '--weights', det_checkpoint, '--out-dir', str(tmp_path / 'o')])
    assert not (tmp_path / 'o').exists()


def test_inference_api_checks_its_inputs(det_checkpoint):
    from mmlightvit.apis import build_inferencer
    inferencer = build_inferencer(str(DET_CONFIG), weights=det_checkpoint, device='cpu', show_progress=False)
    image = np.asarray(Image.open(sorted((ROOT / 'data/demo/coco/val').iterdir())[0]).convert('RGB'))[..., ::-1]
    with pytest.raises(ValueError, match=r'values in \[0, 1\].*\(image \* 255\)'):
        inferencer(image.astype(np.float32) / 255)
    with pytest.raises(ValueError, match='is empty'):
        inferencer(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match='alpha channel'):
        inferencer(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(TypeError, match='is NoneType; expected an image path'):
        inferencer(None)
    with pytest.raises(FileNotFoundError, match='no_such.jpg: no such image'):
        inferencer('no_such.jpg')
    gray = inferencer(np.ascontiguousarray(image[..., 1]), return_datasamples=True)['predictions'][0]
    colour = inferencer(np.repeat(image[..., 1:2], 3, axis=2), return_datasamples=True)['predictions'][0]
    torch.testing.assert_close(gray.pred_instances.scores, colour.pred_instances.scores)
    with pytest.raises(TypeError, match='model is None'):
        build_inferencer(None, weights=det_checkpoint)
    with pytest.raises(FileNotFoundError, match='no such config file'):
        build_inferencer('configs/no_such.py', weights=det_checkpoint)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible.*device='cpu'"):
            build_inferencer(str(DET_CONFIG), weights=det_checkpoint, device='cuda')


# --------------------------------------------------------------------------------- classes, TTA, configs
def test_head_class_counts_must_match_the_dataset():
    cfg = load_config(str(DET_CONFIG))
    check_class_counts(cfg)
    for wrong in (80, 3):
        cfg.model.roi_head.bbox_head.num_classes = wrong
        cfg.model.roi_head.mask_head.num_classes = wrong
        with pytest.raises(ValueError) as info:
            check_class_counts(cfg)
        message = str(info.value)
        assert f'model.roi_head.bbox_head.num_classes is {wrong}, model.roi_head.mask_head.num_classes is {wrong}' \
            in message and 'has 4 classes' in message
        assert '--cfg-options model.roi_head.bbox_head.num_classes=4 model.roi_head.mask_head.num_classes=4' \
            in message
    seg = load_config(str(SEG_CONFIG), {'model.decode_head.num_classes': 150})
    with pytest.raises(ValueError, match='model.decode_head.num_classes is 150, but train_dataloader.dataset'):
        check_class_counts(seg)


def test_training_with_the_wrong_class_count_stops_before_it_starts(tmp_path):
    proc = run_python(['tools/train.py', ITER_CONFIG, '--work-dir', tmp_path, '--cfg-options',
                       'model.roi_head.bbox_head.num_classes=80'], check=False)
    assert proc.returncode != 0 and 'model.roi_head.bbox_head.num_classes is 80' in proc.stderr
    assert not list(tmp_path.glob('*.pth'))


def test_tta_passes_start_from_the_configs_own_test_scale():
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    cfg = load_config(str(SEG_CONFIG))
    pipeline = tta_pipeline(cfg)
    resizes = pipeline[1]['transforms'][0]
    assert [r['scale'] for r in resizes] == [(128, 64), (192, 96), (256, 128), (320, 160), (384, 192), (448, 224)]
    # the pass at ratio 1 without flip is the single-scale test: the same network input
    init_default_scope('mmseg')
    single = scaled_tta_pipeline(cfg.test_dataloader.dataset.pipeline, [1.0], flip=False)
    image = str(sorted((ROOT / 'data/demo/ade20k/images/validation').iterdir())[0])
    sample = dict(img_path=image, seg_map_path=image.replace('images', 'annotations').replace('.jpg', '.png'),
                  reduce_zero_label=True, seg_fields=[])
    plain = Compose(cfg.test_dataloader.dataset.pipeline)(dict(sample))
    augmented = Compose(single)(dict(sample))
    torch.testing.assert_close(augmented['inputs'][0], plain['inputs'], rtol=0, atol=0)
    # the tta_pipeline mmseg's ADE20K base gives resizes by the raw image size: no pass is the test
    cfg.tta_scale_ratios = None
    with pytest.raises(ValueError, match=r'no pass that repeats the single-scale test.*scale_factor=0.5'):
        tta_pipeline(cfg)
    check_tta_pipeline(cfg.test_dataloader.dataset.pipeline, pipeline)


# ----------------------------------------------------------------------------------- ablations, arguments
def test_ablation_goes_on_past_a_config_with_a_syntax_error(tmp_path):
    broken = tmp_path / 'configs/broken.py'
    broken.parent.mkdir()
    broken.write_text("_base_ = 'x.py'\nmodel = dict(\n")
    proc = run_python(['tools/analysis/ablate.py', broken.parent, '--work-root', tmp_path / 'runs'], check=False)
    assert 'broken: FAILED' in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (tmp_path / 'runs/broken/train.log').read_text()
    assert 'broken.py (or a config it inherits) has a syntax error' in log and 'Traceback' not in log
    assert (tmp_path / 'runs/summary.md').exists()


def test_sizes_must_be_positive():
    flops = load_tool('tools/analysis/get_flops.py')
    bench = load_tool('tools/analysis/benchmark.py')
    for parse, argv in ((flops.parse_args, ['--arch', 'RepViT:m0.9', '--shape', '0', '0']),
                        (bench.parse_args, ['RepViT:m0.9', '--shape', '-4', '224']),
                        (bench.parse_args, ['RepViT:m0.9', '--shapes', '224x0'])):
        with pytest.raises(SystemExit):
            parse(argv)


def test_distributed_launch_reports_a_taken_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(('', 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.time()
        proc = subprocess.run(['bash', 'tools/dist_train.sh', str(ITER_CONFIG), '2', '--work-dir', str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PORT=str(port), PYTHON=sys.executable))
    assert proc.returncode == 1 and f'port {port} is in use' in proc.stderr and 'PORT=' in proc.stderr
    assert time.time() - start < 60


def test_a_rank_killed_mid_run_ends_the_others_and_leaves_a_resumable_checkpoint(tmp_path):
    import psutil

    from mmlightvit.engine import find_resume_checkpoint
    launcher = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', str(ITER_CONFIG), '2', '--work-dir', str(tmp_path), '--cfg-options',
         'train_cfg.max_iters=1000'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHON=sys.executable, PORT='29541', PYTHONWARNINGS='ignore'))
    try:
        deadline = time.time() + 300
        while not (tmp_path / 'iter_2.pth').exists() and launcher.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert (tmp_path / 'iter_2.pth').exists(), launcher.stdout.read()[-3000:] if launcher.poll() else 'no ckpt'
        ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                 if 'tools/train.py' in ' '.join(p.cmdline()) and p.environ().get('LOCAL_RANK') == '1']
        assert len(ranks) == 1
        killed = time.time()
        ranks[0].send_signal(signal.SIGKILL)
        output, _ = launcher.communicate(timeout=120)
        ended = time.time() - killed
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0 and ended < 90, (launcher.returncode, ended)
    assert 'Signal 9 (SIGKILL) received by PID' in output and 'tools/train.py FAILED' in output, output[-3000:]
    assert not [p for p in psutil.process_iter(['cmdline']) if str(tmp_path) in ' '.join(p.info['cmdline'] or [])]
    assert find_resume_checkpoint(str(tmp_path)) is not None  # complete: `--resume` continues from it
