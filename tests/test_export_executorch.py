"""ExecuTorch (XNNPACK) export (tools/deploy/export_executorch.py): a classifier exported whole matches PyTorch in
float32 at two batch sizes and input sizes, evaluates through tools/test.py with the PyTorch model's metric, the
INT8 form (PT2E) of a small network stays near the float model, and files that are no exported model (or whose
metadata belongs to another program) are refused with a clear error.

The model is the demo classifier config with a narrow, shallow RepViT (random weights): lowering to XNNPACK is
Python work that grows with the number of operators (a minute or more for RepViT-M0.9 on a busy 2-core machine)."""
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip('executorch')

from tests.conftest import DET_CONFIG, run_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ROOT / 'configs/repvit/imagenet/repvit-m0.9_in1k-demo.py'
SEGMENTOR = ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py'
DETECTOR = ROOT / 'configs/repvit/rtmdet_repvit-m0.9_coco-demo.py'
TINY_CLASSIFIER = f"""_base_ = '{CLASSIFIER}'
model = dict(backbone=dict(arch=dict(_delete_=True, widths=(16, 32, 48, 64), depths=(1, 1, 1, 1))),
             head=dict(in_channels=64))
"""
TINY_DETECTOR = f"""_base_ = '{DETECTOR}'
model = dict(backbone=dict(arch=dict(_delete_=True, widths=(16, 32, 48, 64), depths=(1, 1, 1, 1))),
             neck=dict(in_channels=[32, 48, 64]))
"""
FAST = ['--repeat', '1', '--warmup', '0', '--threads', '1']
FIRST_IMAGES = ['--cfg-options', 'test_dataloader.dataset.indices=4', 'test_dataloader.batch_size=2']


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    """(config, checkpoint, folder): the tiny demo classifier with random weights."""
    import torch

    from mmlightvit.apis.model import build_model, config_without_pretrained
    root = tmp_path_factory.mktemp('executorch')
    config = root / 'tiny_classifier.py'
    config.write_text(TINY_CLASSIFIER)
    checkpoint = root / 'classifier.pth'
    model = build_model(config_without_pretrained(str(config)))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return config, checkpoint, root


@pytest.fixture(scope='module')
def fp32_program(classifier):
    config, checkpoint, root = classifier
    out = root / 'classifier.pte'
    proc = run_python(['tools/deploy/export_executorch.py', config, checkpoint, '--mode', 'model', '--out', out,
                       '--shape', '64', '64', '--check-shapes', '64', '64', '96', '128', '--batch', '2',
                       '--max-size', '128', *FAST], check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_float32_program_matches_pytorch_at_dynamic_batch_and_size(fp32_program):
    out, stdout = fp32_program
    assert 'classifier (RepViT), outputs: scores' in stdout
    assert 'dynamic batch 1..4, height and width 64..128' in stdout
    rows = [line.split('|')[1:-1] for line in stdout.splitlines() if line.startswith('| 2x3x')]
    assert [row[0].strip() for row in rows] == ['2x3x64x64', '2x3x96x128'], stdout
    for row in rows:  # max rel diff within 1e-4, then parity
        assert float(row[2]) <= 1e-4 and row[-1].strip() == 'ok', stdout
    sidecar = json.loads(Path(f'{out}.json').read_text())
    metadata = sidecar['metadata']
    assert sidecar['format'] == 'mmlightvit.executorch'
    assert (metadata['kind'], metadata['precision'], metadata['config']) == ('classifier', 'fp32',
                                                                          'tiny_classifier.py')
    assert json.loads(metadata['output_names']) == ['scores'] and 'preprocess.mean' in metadata


def test_tools_test_evaluates_the_program_like_pytorch(fp32_program, classifier, tmp_path):
    config, checkpoint, _ = classifier
    out, _ = fp32_program
    accuracies = []
    for name, weights in (('torch', checkpoint), ('executorch', out)):
        run = run_python(['tools/test.py', config, weights, '--work-dir', tmp_path / name, *FIRST_IMAGES])
        line = next(line for line in run.stdout.splitlines() if 'Epoch(test)' in line)
        accuracies.append(line.split('accuracy/top1:')[1].split()[0])
    assert accuracies[0] == accuracies[1], accuracies


def test_int8_program_stays_near_the_float_model(tmp_path):
    """The INT8 path (PT2E calibration, convert, lowering) on a small convolutional classifier: lowering a quantized
    RepViT takes minutes, so the classifier's INT8 run through the tool is a documented command, not a test."""
    import numpy as np
    import torch
    import torch.nn as nn

    from mmlightvit.deploy.executorch_export import export_executorch
    from mmlightvit.deploy.onnx_export import ExportTarget
    from mmlightvit.deploy.runtime import ExecuTorchSession

    class Scores(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                     nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(32, 10))

        def forward(self, image):
            return (self.net(image), )

    torch.manual_seed(0)
    target = ExportTarget(Scores().eval(), 'classifier', ['scores'], backbone_type='Toy')
    calibration = [(torch.rand(1, 3, 64, 64), ) for _ in range(4)]
    out = tmp_path / 'int8.pte'
    metadata = export_executorch(target, str(out), (64, 64), dynamic=False, calibration=calibration,
                                 calibration_note='random images')
    assert metadata['precision'] == 'int8' and '4 calibration inputs (random images)' in metadata['quantization']
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = target.module(x)[0].numpy()
    got = ExecuTorchSession(str(out), threads=1).run(None, {'image': x.numpy()})[0]
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert 0 < error < 0.05, error  # INT8 rounding: near the float model, and not the float program


def test_int8_of_named_submodules_quantizes_their_convolutions_and_nothing_after_them():
    """A detector's INT8 form quantizes its network (named submodules) and leaves the post-processing in float.
    XNNPACKQuantizer's own module filter quantized no convolution (it asks about the weights, which belong to no
    module) and its concatenation annotator ignored the filter: boxes and scores concatenated after the network
    shared one INT8 scale, and every score became 0 or 1 (RTMDet's ExecuTorch INT8 box AP 0.394 -> 0.18)."""
    import copy

    import torch
    import torch.nn as nn

    from mmlightvit.deploy.executorch_export import quantize_int8

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 5, 1)

        def forward(self, x):
            return self.conv2(self.conv1(x).relu())

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.network = Network()

        def forward(self, x):
            out = self.network(x).flatten(2).transpose(1, 2)
            return torch.cat([out[..., :4].abs() * 100, out[..., 4:].sigmoid()], -1)  # boxes in pixels, scores

    torch.manual_seed(0)
    detector = Detector().eval()
    generator = torch.Generator().manual_seed(0)
    images = [(torch.randn(1, 3, 16, 16, generator=generator), ) for _ in range(4)]
    quantized = quantize_int8(copy.deepcopy(detector), images[0], None, images, ['network'])
    nodes = list(quantized.graph.nodes)
    convs = [n for n in nodes if n.target == torch.ops.aten.conv2d.default]
    assert len(convs) == 2 and all('dequantize' in str(n.args[0].target) for n in convs)  # both quantized
    cat = next(n for n in nodes if n.target == torch.ops.aten.cat.default)
    assert not any('quantize' in str(user.target) for user in cat.users)  # the post-processing stays float
    with torch.no_grad():
        expected, got = detector(*images[1]), quantized(*images[1])
    assert (got[..., 4] - expected[..., 4]).abs().max() < 0.02
    assert (got[..., :4] - expected[..., :4]).abs().max() < 0.05 * expected[..., :4].abs().max()


def test_int8_graph_keeps_no_contiguous_copy_between_quantized_operators():
    """Backbones make their features contiguous (for mmcv's RoIAlign). Quantized, that copy sits between a dequantize
    and a quantize node, and XNNPACK's lowering of SSDLite's EdgeNeXt refused it ("Output node ... is already in the
    inputs"). The INT8 graph drops the copies, which change no value."""
    import copy

    import torch
    import torch.nn as nn
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from mmlightvit.deploy.executorch_export import drop_contiguous, quantize_int8

    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.mix, self.head = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 1)

        def forward(self, image):
            x = self.stem(image)
            x = x + self.mix(x)
            return self.head(x.transpose(2, 3).contiguous())  # a copy only where the strides need one

    torch.manual_seed(0)
    model = Features().eval()
    images = [(torch.rand(1, 3, 16, 16), ) for _ in range(3)]
    contiguous = torch.ops.aten.contiguous.default
    observed = prepare_pt2e(torch.export.export(copy.deepcopy(model), images[0]).module(),
                            XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    for image in images:
        observed(*image)
    kept = convert_pt2e(observed)  # PT2E's own result: the copy between a dequantize and a quantize node
    copies = [node for node in kept.graph.nodes if node.target == contiguous]
    assert copies and all('dequantize' in str(node.args[0].target) for node in copies)
    with torch.no_grad():
        expected = kept(*images[1])
        assert torch.equal(drop_contiguous(kept)(*images[1]), expected)
    assert not any(node.target == contiguous for node in kept.graph.nodes)
    quantized = quantize_int8(copy.deepcopy(model), images[0], None, images)
    assert not any(node.target == contiguous for node in quantized.graph.nodes)


def test_files_that_are_no_exported_model_are_refused(fp32_program, classifier, tmp_path):
    config = classifier[0]
    out, _ = fp32_program
    garbage = tmp_path / 'garbage.pte'
    garbage.write_bytes(b'not an ExecuTorch program')
    without_metadata = tmp_path / 'no_metadata.pte'
    shutil.copy(out, without_metadata)
    stale = tmp_path / 'stale.pte'
    shutil.copy(out, stale)
    sidecar = json.loads(Path(f'{out}.json').read_text())
    Path(f'{stale}.json').write_text(json.dumps(dict(sidecar, pte_sha256='0' * 64)))
    cases = ((garbage, [], 'is not an ExecuTorch program'),
             (without_metadata, [], 'holds a model without mmlightvit metadata'),
             (stale, [], 'describes another program'),
             (out, ['--backend', 'openvino'], '--backend openvino cannot run a .pte file'),
             (tmp_path / 'missing.pte', [], 'does not exist'))
    for path, extra, message in cases:
        proc = run_python(['tools/test.py', config, path, '--work-dir', tmp_path / 'run', *extra], check=False)
        assert proc.returncode == 2 and message in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr


def test_export_refuses_two_stage_detectors_dynamic_detectors_and_existing_outputs(fp32_program, classifier,
                                                                                      tmp_path):
    out, _ = fp32_program
    config, checkpoint, _ = classifier
    again = run_python(['tools/deploy/export_executorch.py', config, checkpoint, '--mode', 'model', '--out', out],
                       check=False)
    assert again.returncode == 2 and '--overwrite' in again.stderr
    for detector, message in ((DET_CONFIG, 'runs NMS between its two stages'), (DETECTOR, 'fixed size only')):
        proc = run_python(['tools/deploy/export_executorch.py', detector, 'none', '--mode', 'model', '--out',
                           tmp_path / 'detector.pte', '--no-check'], check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert not (tmp_path / 'detector.pte').exists()


def test_one_stage_detector_program_ends_before_nms_and_the_session_finishes_it(tmp_path):
    """RTMDet (a narrow RepViT, its initial weights) at a fixed size: the program gives ranked candidates, the
    session runs the NMS of the PyTorch graph on them with the settings in the metadata, and the detections are
    PyTorch's; tools/test.py runs it on batches of two, image by image, for PyTorch's metrics."""
    import torch

    from mmlightvit.apis.model import build_model, config_without_pretrained
    from mmlightvit.deploy.onnx_export import build_export_target
    from mmlightvit.deploy.runtime import ExecuTorchSession
    config = tmp_path / 'tiny_rtmdet.py'
    config.write_text(TINY_DETECTOR)
    cfg = config_without_pretrained(str(config))
    checkpoint = tmp_path / 'rtmdet.pth'
    torch.save({'state_dict': build_model(cfg, init_weights=True).state_dict(), 'meta': {}}, checkpoint)
    out = tmp_path / 'rtmdet.pte'
    run_python(['tools/deploy/export_executorch.py', config, checkpoint, '--mode', 'model', '--static', '--shape',
                '256', '256', '--out', out, '--no-check'])
    metadata = json.loads(Path(f'{out}.json').read_text())['metadata']
    assert json.loads(metadata['program_output_names']) == ['candidates', 'candidate_labels']
    assert json.loads(metadata['output_names']) == ['dets', 'labels']
    test_cfg = cfg.model.test_cfg
    assert json.loads(metadata['nms']) == dict(iou_threshold=test_cfg.nms.iou_threshold, class_agnostic=False,
                                               num_classes=4, max_per_img=test_cfg.max_per_img)

    # The program's candidates are PyTorch's. Its initial head scores every candidate about alike (a prior
    # probability), so they are matched by label and box position, not by score; the NMS after the program is the
    # graph's own (test_detections_after_the_program_are_the_graphs).
    target = build_export_target(str(config), str(checkpoint), 'model')
    target.module.nms_in_graph = False
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    image_size = torch.tensor([[256, 192]])
    with torch.no_grad():
        expected = target.module(image, image_size)
    session = ExecuTorchSession(str(out), threads=1)
    session.nms = None  # the program's own outputs
    got = [torch.from_numpy(o) for o in session.run(None, {'image': image.numpy(), 'image_size': image_size.numpy()})]

    def by_position(candidates, labels):
        found = labels[0] >= 0
        rows, keys = candidates[0][found], labels[0][found]
        order = torch.arange(len(keys))
        for key in (rows[:, 0].round(), rows[:, 1].round(), keys):
            order = order[torch.sort(key[order], stable=True).indices]
        return rows[order], keys[order]

    (got_rows, got_labels), (rows, labels) = by_position(*got), by_position(*expected)
    assert len(labels) > 100 and torch.equal(got_labels, labels)
    assert (got_rows[:, :4] - rows[:, :4]).abs().max() <= 1e-3 and (got_rows[:, 4] - rows[:, 4]).abs().max() <= 1e-6
    assert (rows[:, 2] <= 192).all()  # clipped to the unpadded width

    metrics = []
    for name, weights in (('torch', checkpoint), ('executorch', out)):
        run = run_python(['tools/test.py', config, weights, '--work-dir', tmp_path / name, '--cfg-options',
                          'test_dataloader.dataset.indices=4', 'test_dataloader.batch_size=2'])
        line = next(line for line in run.stdout.splitlines() if 'Epoch(test)' in line)
        metrics.append(line.split('coco/bbox_mAP:')[1].split('data_time')[0])
    assert metrics[0] == metrics[1], metrics


def test_detections_after_the_program_are_the_graphs():
    """The session's NMS on a program's ranked candidates gives exactly what the graph with NMS gives."""
    import torch

    from mmlightvit.deploy.detection import (detections_after_nms, detections_from_ranked_candidates,
                                             ranked_candidates)
    from mmlightvit.deploy.ops import NOT_A_CANDIDATE
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(2, 300, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + 5 + torch.rand(2, 300, 2, generator=generator) * 60], -1)
    scores = torch.rand(2, 300, generator=generator)
    scores[:, ::7] = NOT_A_CANDIDATE  # dropped before the NMS (score threshold, empty box)
    labels = torch.randint(0, 3, (2, 300), generator=generator)
    for class_agnostic in (False, True):
        nms = dict(iou_threshold=0.5, class_agnostic=class_agnostic, num_classes=3, max_per_img=50)
        expected = detections_after_nms(boxes, scores, labels, **nms)
        got = detections_from_ranked_candidates(*ranked_candidates(boxes, scores, labels), nms)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        assert ((expected[1] >= 0).sum(1) == 50).all()  # more survivors than max_per_img in each image


def test_a_convolution_shared_by_branches_with_their_own_batch_norms_is_exported_per_branch(tmp_path):
    """ExecuTorch folds each BatchNorm into the convolution before it by rewriting that convolution's weights; a
    convolution shared by two branches (RTMDet's head shares one per depth across levels, with a BatchNorm per
    level) would run both with one fold. The exporter gives each branch its own copy."""
    import torch
    import torch.nn as nn

    from mmlightvit.deploy.executorch_export import export_executorch
    from mmlightvit.deploy.onnx_export import ExportTarget
    from mmlightvit.deploy.runtime import ExecuTorchSession

    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            conv = nn.Conv2d(3, 8, 3, padding=1)
            self.first, self.second = nn.Sequential(conv, nn.BatchNorm2d(8)), nn.Sequential(conv, nn.BatchNorm2d(8))

        def forward(self, image):
            return self.first(image), self.second(image)

    torch.manual_seed(0)
    module = Branches().eval()
    for norm in (module.first[1], module.second[1]):
        norm.running_mean.normal_(), norm.running_var.uniform_(0.5, 2), norm.weight.data.normal_()
    target = ExportTarget(module, 'backbone', ['first', 'second'], backbone_type='Toy')
    export_executorch(target, str(tmp_path / 'branches.pte'), (16, 16), dynamic=False)
    assert module.first[0] is module.second[0]  # the model itself is left as it is
    x = torch.randn(1, 3, 16, 16)
    got = ExecuTorchSession(str(tmp_path / 'branches.pte'), threads=1).run(None, {'image': x.numpy()})
    with torch.no_grad():
        for out, expected in zip(got, module(x)):
            assert (torch.from_numpy(out) - expected).abs().max() < 1e-4


def test_backbones_with_a_fixed_size_program_are_refused_dynamic_sizes(tmp_path):
    """FasterViT and TransNeXt export ONNX with dynamic sizes, their ExecuTorch programs at one size (the reason,
    ``fixed_size_program``, is in the error)."""
    import torch.nn as nn

    from mmlightvit.deploy.executorch_export import export_executorch
    from mmlightvit.deploy.onnx_export import ExportError, ExportTarget
    target = ExportTarget(nn.Conv2d(3, 4, 1), 'backbone', ['out'], backbone_type='FasterViT',
                          fixed_size_program='guards on the window counts')
    assert target.dynamic_size
    with pytest.raises(ExportError, match='FasterViT cannot be exported to ExecuTorch with dynamic height and width: '
                       r'guards on the window counts\. Export it at a fixed size instead \(--static\)'):
        export_executorch(target, str(tmp_path / 'x.pte'), (64, 64))
    assert not (tmp_path / 'x.pte').exists()
