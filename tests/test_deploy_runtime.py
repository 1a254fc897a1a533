"""A whole Mask R-CNN exported to ONNX (tools/deploy/export_onnx.py --mode model: NMS, RoIAlign and the mask head in
the graph) matches PyTorch in onnxruntime, evaluates through tools/test.py with the PyTorch model's metrics, draws
the same predictions through tools/image_demo.py, and files that are no whole model give clear errors."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('onnxruntime')

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.conftest import DET_CONFIG, SEG_CONFIG, run_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_IMAGES = ROOT / 'data/demo/coco/val'


@pytest.fixture(scope='module')
def exported(det_checkpoint, tmp_path_factory):
    """The demo Mask R-CNN checkpoint exported whole, checked by the tool at two sizes with a batch of two."""
    out = tmp_path_factory.mktemp('onnx') / 'mask-rcnn.onnx'
    proc = run_python(['tools/deploy/export_onnx.py', str(DET_CONFIG), det_checkpoint, '--mode', 'model', '--out',
                       str(out), '--shape', '128', '128', '--check-shapes', '128', '128', '96', '160', '--batch', '2',
                       '--warmup', '0', '--repeat', '1', '--threads', '1'], check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_export_matches_pytorch_with_dynamic_batch_and_size(exported):
    out, stdout = exported
    assert 'instance-segmentor (RepViT), outputs: dets, labels, masks' in stdout
    rows = [line.split('|')[1:-1] for line in stdout.splitlines() if line.startswith('| 2x3x')]
    assert [row[0].strip() for row in rows] == ['2x3x128x128', '2x3x96x160'], stdout
    for row in rows:
        assert row[3].strip() == '100.00%' and row[-1].strip() == 'ok', stdout  # labels, then parity
    graph = onnx.load(str(out), load_external_data=False)
    ops = {node.op_type for node in graph.graph.node}
    assert {'NonMaxSuppression', 'RoiAlign'} <= ops  # standard ONNX ops, no custom domain
    assert {n.domain for n in graph.graph.node} <= {'', 'ai.onnx'}
    props = {p.key: p.value for p in graph.metadata_props}
    assert props['mmlightvit.kind'] == 'instance-segmentor'
    assert json.loads(props['mmlightvit.dataset_meta'])['classes'] == ['circle', 'rectangle', 'triangle', 'star']


def metrics(output: str) -> dict:
    """The COCO metrics of tools/test.py's summary line."""
    line = next(line for line in output.splitlines() if 'Epoch(test)' in line)
    words = line.split()
    return {key: value for key, value in zip(words, words[1:]) if key.startswith('coco/')}


def test_tools_test_evaluates_the_exported_model_like_pytorch(exported, det_checkpoint, tmp_path):
    out, _ = exported
    first_images = ['--cfg-options', 'test_dataloader.dataset.indices=12']
    torch_run = run_python(['tools/test.py', str(DET_CONFIG), det_checkpoint, '--work-dir', str(tmp_path / 'torch'),
                            *first_images])
    onnx_run = run_python(['tools/test.py', str(DET_CONFIG), str(out), '--work-dir', str(tmp_path / 'onnx'),
                           *first_images])
    openvino_run = run_python(['tools/test.py', str(DET_CONFIG), str(out), '--backend', 'openvino', '--work-dir',
                               str(tmp_path / 'openvino'), *first_images])
    assert 'coco/segm_mAP:' in metrics(onnx_run.stdout)
    assert metrics(onnx_run.stdout) == metrics(torch_run.stdout) == metrics(openvino_run.stdout)


def test_openvino_runs_the_exported_graph_like_onnxruntime(exported):
    """OpenVINO reads the same file (NonMaxSuppression, RoiAlign, dynamic sizes) and detects the same."""
    from mmlightvit.deploy.onnx_export import _in_reference_order
    from mmlightvit.deploy.runtime import runtime_session
    out, _ = exported
    rng = np.random.default_rng(0)
    feed = {'image': rng.standard_normal((2, 3, 96, 160), dtype=np.float32),
            'image_size': np.array([[96, 160], [90, 150]], dtype=np.int64)}
    expected = runtime_session(str(out), 'onnxruntime', threads=1).run(None, feed)
    got = _in_reference_order(runtime_session(str(out), 'openvino', threads=1).run(None, feed), expected)
    assert (got[1] == expected[1]).all() and (expected[1] >= 0).any()
    assert np.abs(got[0] - expected[0]).max() <= 1e-3 * np.abs(expected[0]).max()
    assert np.abs(got[2] - expected[2]).max() <= 1e-3


def cpu_has_openvino_bf16() -> bool:
    from mmlightvit.deploy.runtime import openvino_cpu_capabilities
    return 'BF16' in openvino_cpu_capabilities()


def test_openvino_computes_in_float32_unless_bf16_is_asked_for(tmp_path):
    """Unasked, OpenVINO computes a float32 file in bfloat16 on CPUs with AVX512_BF16 / AMX; the session states its
    precision, so the float32 form agrees with numpy to float32 error on every CPU, and BF16 is a form of its own
    (refused, with the reason, on a CPU without BF16; and by the runtimes that run a file as it was exported)."""
    from mmlightvit.deploy.runtime import ExportedModelError, runtime_session
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((256, 256)).astype(np.float32)
    path = tmp_path / 'matmul.onnx'
    onnx.save(helper.make_model(helper.make_graph(
        [helper.make_node('MatMul', ['x', 'w'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [4, 256])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [4, 256])],
        [numpy_helper.from_array(weight, 'w')])), str(path))
    x = rng.standard_normal((4, 256)).astype(np.float32)
    expected = x.astype(np.float64) @ weight.astype(np.float64)
    scale = np.abs(expected).max()

    session = runtime_session(str(path), 'openvino', threads=1)
    import openvino as ov
    assert session.model.get_property('INFERENCE_PRECISION_HINT') == ov.Type.f32
    assert np.abs(session.run(None, {'x': x})[0] - expected).max() <= 1e-5 * scale
    if cpu_has_openvino_bf16():
        bf16 = runtime_session(str(path), 'openvino', threads=1, bf16=True)
        error = np.abs(bf16.run(None, {'x': x})[0] - expected).max()
        assert 1e-4 * scale < error <= 3e-2 * scale  # bfloat16's 8-bit mantissa, not float32's
    else:
        with pytest.raises(ExportedModelError, match='AVX512_BF16 or AMX'):
            runtime_session(str(path), 'openvino', threads=1, bf16=True)
    for backend in ('onnxruntime', 'executorch'):
        with pytest.raises(ExportedModelError, match='the BF16 form of an exported file is OpenVINO'):
            runtime_session(str(path), backend, bf16=True)


OPENVINO_THEN_A_SIGNAL = """
import gc, os, signal, sys
from mmlightvit.deploy.runtime import openvino_cpu_capabilities, runtime_session
openvino_cpu_capabilities()
first = runtime_session(sys.argv[1], 'openvino', threads=1)
second = runtime_session(sys.argv[1], 'openvino', threads=1)
del first  # each model's plugin puts back the stack it found when it unloads: the first's, unmapped
del second
gc.collect()
signal.signal(signal.SIGUSR1, lambda number, frame: print('handled'))  # handled on the alternate signal stack
os.kill(os.getpid(), signal.SIGUSR1)
"""


def test_a_signal_after_an_openvino_model_is_gone_is_handled(tmp_path):
    """OpenVINO's CPU plugin gives the thread an alternate signal stack of its own and, when it unloads, puts back
    the one it found, which is another model's unmapped stack when two models end in the order they began; a signal
    handled later (SIGINT's handler, a DataLoader's SIGCHLD) then killed the process with SIGSEGV. Run in a process
    of its own: without the fix it dies."""
    path = tmp_path / 'identity.onnx'
    value = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [value],
                                                  [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])])),
              str(path))
    proc = run_python(['-c', OPENVINO_THEN_A_SIGNAL, str(path)], check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == 'handled', (proc.returncode, proc.stderr[-2000:])


def test_tools_test_runs_openvinos_bf16_form(exported, tmp_path):
    out, _ = exported
    first_images = ['--cfg-options', 'test_dataloader.dataset.indices=4']
    onnxruntime_bf16 = run_python(['tools/test.py', str(DET_CONFIG), str(out), '--bf16', '--work-dir',
                                   str(tmp_path / 'ort'), *first_images], check=False)
    assert onnxruntime_bf16.returncode == 2 and '--backend openvino' in onnxruntime_bf16.stderr
    openvino_bf16 = run_python(['tools/test.py', str(DET_CONFIG), str(out), '--backend', 'openvino', '--bf16',
                                '--work-dir', str(tmp_path / 'ov'), *first_images], check=False)
    if cpu_has_openvino_bf16():
        assert openvino_bf16.returncode == 0 and 'coco/segm_mAP:' in metrics(openvino_bf16.stdout)
    else:
        assert openvino_bf16.returncode == 2 and 'AVX512_BF16 or AMX' in openvino_bf16.stderr


def test_image_demo_draws_the_exported_models_predictions(exported, det_checkpoint, tmp_path):
    out, _ = exported
    image = sorted(DEMO_IMAGES.iterdir())[0]
    for name, weights in (('torch', det_checkpoint), ('onnx', str(out))):
        run_python(['tools/image_demo.py', str(image), str(DET_CONFIG), '--weights', weights, '--device', 'cpu',
                    '--pred-score-thr', '0', '--out-dir', str(tmp_path / name)])
    torch_pred, onnx_pred = (json.loads((tmp_path / name / 'preds' / f'{image.name}.json').read_text())
                             for name in ('torch', 'onnx'))
    assert len(onnx_pred['labels']) == len(torch_pred['labels']) > 0
    # two detections of the same score (in float error) are listed in either order: each PyTorch detection is
    # compared with the exported model's nearest one of its label
    from mmlightvit.deploy.onnx_export import _in_reference_order
    onnx_dets, torch_dets = (np.concatenate([np.array(pred['bboxes']), np.array(pred['scores'])[:, None]], 1)[None]
                             for pred in (onnx_pred, torch_pred))
    onnx_dets, onnx_labels, order = _in_reference_order(
        [onnx_dets, np.array([onnx_pred['labels']]), np.arange(len(onnx_pred['labels']))[None]],
        [torch_dets, np.array([torch_pred['labels']])])
    assert onnx_labels[0].tolist() == torch_pred['labels'] and sorted(order[0]) == list(range(len(order[0])))
    assert np.abs(onnx_dets[0, :, 4] - torch_dets[0, :, 4]).max() <= 1e-4
    assert np.abs(onnx_dets[0, :, :4] - torch_dets[0, :, :4]).max() < 0.05
    # the pasted, thresholded masks: a pixel whose probability is within float error of 0.5 may flip
    from pycocotools import mask as coco_mask
    for index, torch_rle in zip(order[0], torch_pred['masks']):
        onnx_rle = onnx_pred['masks'][index]
        assert (coco_mask.decode(onnx_rle) == coco_mask.decode(torch_rle)).mean() >= 0.999
    assert (tmp_path / 'onnx' / 'vis' / image.name).is_file()


def test_files_that_are_no_whole_model_are_refused(tmp_path):
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(b'not an onnx file')
    identity = tmp_path / 'identity.onnx'
    value = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node('Identity', ['x'], ['y'])], 'g', [value],
                                                  [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])),
              str(identity))
    for path, message in ((garbage, 'is not a readable ONNX file'),
                          (identity, 'holds a model without mmlightvit metadata'),
                          (tmp_path / 'missing.onnx', 'does not exist')):
        proc = run_python(['tools/test.py', str(DET_CONFIG), str(path), '--work-dir', str(tmp_path / 'run')],
                          check=False)
        assert proc.returncode == 2 and message in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr


def best_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of ``boxes (K, 4)``, its largest IoU with one of ``others (J, 4)``."""
    corner_min = np.maximum(boxes[:, None, :2], others[None, :, :2])
    corner_max = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    overlap = np.clip(corner_max - corner_min, 0, None).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)[:, None] + (others[:, 2:] - others[:, :2]).prod(-1)[None]
    return (overlap / np.maximum(area - overlap, 1e-9)).max(1, initial=0)


def assert_int8_agrees_with_float(got, expected):
    """INT8 detections against the float file's, in terms that the order of near-equal detections does not change:
    per image as many detections, the 20 best scores within 0.03, and the 10 best float boxes covered by INT8 boxes
    of their label with a mean IoU of at least 0.6 (the demo INT8 file: 0.002 and 0.84 to 0.95 on this input)."""
    for dets, labels, ref_dets, ref_labels in zip(got[0], got[1], expected[0], expected[1]):
        assert (labels >= 0).sum() == (ref_labels >= 0).sum() > 0
        assert np.abs(np.sort(dets[:, 4])[-20:] - np.sort(ref_dets[:, 4])[-20:]).max() <= 0.03
        ious = [best_iou(ref_dets[i:i + 1, :4], dets[labels == ref_labels[i], :4])[0] for i in range(10)
                if ref_labels[i] >= 0]
        assert np.mean(ious) >= 0.6, ious


def test_an_exported_model_is_tested_without_the_configs_ema_hook(tmp_path):
    """EMAHook deep-copies the model (a runtime session cannot be copied) to swap averaged parameters in; the
    exported graph holds them already (the checkpoint's state_dict), so the exported model is tested without it."""
    from mmengine.config import Config

    from mmlightvit.deploy.runtime import use_exported_model
    exported_file = tmp_path / 'segmentor.onnx'
    value = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node('Identity', ['x'], ['y'])], 'g', [value],
                                                [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])]))
    model.metadata_props.add(key='mmlightvit.kind', value='segmentor')
    onnx.save(model, str(exported_file))
    cfg = Config.fromfile(ROOT / 'configs/edgenext/deeplabv3_edgenext-small_ade20k-demo.py')
    assert [hook['type'] for hook in cfg.custom_hooks] == ['EMAHook', 'mmlightvit.RNGStateHook']
    use_exported_model(cfg, str(exported_file))
    assert cfg.model.type == 'mmlightvit.ExportedModel'
    assert [hook['type'] for hook in cfg.custom_hooks] == ['mmlightvit.RNGStateHook']


def test_int8_form_calibrates_on_training_images_and_evaluates(exported, tmp_path):
    out, _ = exported
    int8 = tmp_path / 'mask-rcnn_int8.onnx'
    proc = run_python(['tools/deploy/quantize_onnx.py', str(DET_CONFIG), str(out), '--out', str(int8),
                       '--calibration-images', '4', '--check-images', '2', '--repeat', '1', '--threads', '1'])
    assert 'wrote' in proc.stdout and 'INT8 vs float32 on 2 validation images' in proc.stdout, proc.stdout
    graph = onnx.load(str(int8))
    ops = [node.op_type for node in graph.graph.node]
    # convolutions quantized, the post-processing kept in float
    assert ops.count('DequantizeLinear') > 10 and {'NonMaxSuppression', 'RoiAlign'} <= set(ops)
    props = {p.key: p.value for p in graph.metadata_props}
    assert props['mmlightvit.precision'] == 'int8' and props['mmlightvit.kind'] == 'instance-segmentor'
    run = run_python(['tools/test.py', str(DET_CONFIG), str(int8), '--work-dir', str(tmp_path / 'test'),
                      '--cfg-options', 'test_dataloader.dataset.indices=4'])
    assert 'coco/segm_mAP:' in metrics(run.stdout)
    # both runtimes compile the INT8 file (OpenVINO's NMS checks that the boxes are (..., 4) when it compiles, which
    # its INT8 transformations once broke) and detect what the float file does
    from mmlightvit.deploy.runtime import runtime_session
    rng = np.random.default_rng(0)
    feed = {'image': rng.standard_normal((2, 3, 96, 160), dtype=np.float32),
            'image_size': np.array([[96, 160], [90, 150]], dtype=np.int64)}
    expected = runtime_session(str(out), 'onnxruntime', threads=1).run(None, feed)
    for backend in ('onnxruntime', 'openvino'):
        assert_int8_agrees_with_float(runtime_session(str(int8), backend, threads=1).run(None, feed), expected)
    again = run_python(['tools/deploy/quantize_onnx.py', str(DET_CONFIG), str(out), '--out', str(int8)], check=False)
    assert again.returncode == 2 and '--overwrite' in again.stderr


def test_bf16_form_is_tested_by_the_config_evaluator(det_checkpoint, tmp_path):
    run = run_python(['tools/test.py', str(DET_CONFIG), det_checkpoint, '--bf16', '--work-dir', str(tmp_path),
                      '--cfg-options', 'test_dataloader.dataset.indices=4'])
    assert 'coco/segm_mAP:' in metrics(run.stdout)


def test_bf16_test_hook_autocasts_the_named_children_only_while_testing():
    from types import SimpleNamespace

    import torch
    import torch.nn as nn

    from mmlightvit.engine.amp import BFloat16TestHook
    model = nn.Module()
    model.backbone, model.head = nn.Sequential(nn.Linear(4, 4)), nn.Linear(4, 4)
    seen = []
    for layer in (model.backbone[0], model.head):
        layer.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    hook = BFloat16TestHook(autocast_modules=['backbone'])
    runner = SimpleNamespace(model=model)
    hook.before_test_epoch(runner)
    assert model.head(model.backbone(torch.randn(2, 4))).dtype == torch.float32
    hook.after_test_epoch(runner)
    model.head(model.backbone(torch.randn(2, 4)))
    assert seen == [torch.bfloat16, torch.float32, torch.float32, torch.float32]


def test_deploy_report_times_every_form_of_a_classifier(tmp_path):
    """tools/deploy/deploy_report.py on the demo classifier with a narrow, shallow RepViT (random weights): the
    model is exported (ONNX, ExecuTorch), quantized, and every form is timed on a validation image in one table."""
    import torch

    from mmlightvit.apis.model import build_model, config_without_pretrained
    config = tmp_path / 'tiny_classifier.py'
    config.write_text(f"""_base_ = '{ROOT / 'configs/repvit/imagenet/repvit-m0.9_in1k-demo.py'}'
model = dict(backbone=dict(arch=dict(_delete_=True, widths=(16, 32, 48, 64), depths=(1, 1, 1, 1))),
             head=dict(in_channels=64))
""")
    checkpoint = tmp_path / 'classifier.pth'
    torch.save({'state_dict': build_model(config_without_pretrained(str(config))).state_dict(), 'meta': {}},
               checkpoint)
    out_dir = tmp_path / 'report'
    proc = run_python(['tools/deploy/deploy_report.py', config, str(checkpoint), '--out-dir', str(out_dir),
                       '--calibration-images', '2', '--repeat', '1', '--warmup', '0', '--threads', '1'])
    rows = [line.split('|')[1].strip() for line in proc.stdout.splitlines() if line.startswith('| ')][2:]
    bf16 = ['openvino BF16'] if cpu_has_openvino_bf16() else []
    assert rows == ['PyTorch eager fp32', 'PyTorch BF16 autocast', 'onnxruntime fp32', 'onnxruntime INT8',
                    'openvino fp32', *bf16, 'openvino INT8', 'executorch fp32', 'executorch INT8'] + \
        ['openvino BF16'] * (not bf16), proc.stdout
    if not bf16:  # listed, with the reason
        assert 'openvino BF16 | fails: ExportedModelError: OpenVINO computes in BF16 on CPUs' in proc.stdout
    assert (out_dir / 'report.md').read_text().strip() in proc.stdout
    assert all((out_dir / name).is_file() for name in ('model.onnx', 'model_int8.onnx', 'model.pte', 'model_int8.pte'))
    again = run_python(['tools/deploy/deploy_report.py', config, str(checkpoint), '--out-dir', str(out_dir)],
                       check=False)
    assert again.returncode == 2 and 'not empty' in again.stderr


def test_deploy_report_evaluates_every_form_of_a_box_detector(tmp_path):
    """deploy_report.py --metrics on a detector without masks (RTMDet with a narrow RepViT, its initial weights):
    the box AP of every form against PyTorch's (the ExecuTorch forms: the classifier's test and
    tests/test_export_executorch.py)."""
    import torch

    from mmlightvit.apis.model import build_model, config_without_pretrained
    config = tmp_path / 'tiny_rtmdet.py'
    config.write_text(f"""_base_ = '{ROOT / 'configs/repvit/rtmdet_repvit-m0.9_coco-demo.py'}'
model = dict(backbone=dict(arch=dict(_delete_=True, widths=(16, 32, 48, 64), depths=(1, 1, 1, 1))),
             neck=dict(in_channels=[32, 48, 64]))
""")
    checkpoint = tmp_path / 'rtmdet.pth'
    model = build_model(config_without_pretrained(str(config)), init_weights=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    proc = run_python(['tools/deploy/deploy_report.py', config, checkpoint, '--out-dir', tmp_path / 'report',
                       '--metrics', '--calibration-images', '2', '--repeat', '1', '--warmup', '0', '--threads', '1',
                       '--no-executorch', '--cfg-options', 'test_dataloader.dataset.indices=2'])
    table = [line.split('|')[1:-1] for line in proc.stdout.splitlines() if line.startswith('| ')]
    assert [c.strip() for c in table[0]] == ['form', 'latency (ms)', 'speed-up', 'coco/bbox_mAP', 'change']
    rows = {row[0].strip(): [c.strip() for c in row[1:]] for row in table[2:]}
    assert {'PyTorch eager fp32', 'onnxruntime fp32', 'onnxruntime INT8', 'openvino fp32'} <= set(rows), proc.stdout
    for name in ('onnxruntime fp32', 'openvino fp32'):  # float forms: PyTorch's metric
        assert rows[name][3] == '+0.000', (name, proc.stdout)


def test_an_exported_detector_does_not_serve_a_segmentation_config(exported, tmp_path):
    out, _ = exported
    proc = run_python(['tools/test.py', str(SEG_CONFIG), str(out), '--work-dir', str(tmp_path)], check=False)
    assert proc.returncode == 2 and 'holds an exported instance-segmentor' in proc.stderr
    assert 'cannot serve fpn_repvit-m1.1_ade20k-demo.py (mmseg)' in proc.stderr
