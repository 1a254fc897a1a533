"""ONNX export (mmlightvit.deploy.onnx_export, tools/deploy/export_onnx.py): the fused RepViT backbone, a Semantic
FPN segmentor (in process) and the EdgeNeXt backbone (through the tool, end to end) export with dynamic batch /
height / width and match onnxruntime at two sizes; the detectors' tensor-form post-processing computes what mmdet's
predict does; FasterViT and TransNeXt, whose size-dependent tables are computed in the graph, export once with
dynamic sizes and match at two other sizes; bad checkpoints and models that cannot be exported give clear errors.
(A whole Mask R-CNN through onnxruntime and tools/test.py: tests/test_deploy_runtime.py.)"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')  # torch.onnx's exporter needs it

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from mmlightvit.deploy.detection import mmdet_predictions  # noqa: E402
from mmlightvit.deploy.onnx_export import (ExportError, ExportTarget, build_export_target,  # noqa: E402
                                           compare_with_onnxruntime, export_onnx, format_table, ort_session,
                                           replace_adaptive_pooling)
from mmlightvit.deploy.quantize import quantize_onnx  # noqa: E402
from mmlightvit.deploy.tensorrt import TensorRTError, TensorRTSession  # noqa: E402
from mmlightvit.registry import MODELS as LIGHT_MODELS  # noqa: E402
from mmlightvit.utils import CheckpointError, load_checkpoint_file  # noqa: E402
from tests.backbone_utils import randomise_bn  # noqa: E402
from tests.conftest import run_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPVIT_SEG = str(ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py')
EDGENEXT_SEG = str(ROOT / 'configs/edgenext/fpn_edgenext-small_ade20k-demo.py')
MASK_RCNN = str(ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py')
EDGENEXT_MASK_RCNN = str(ROOT / 'configs/edgenext/mask-rcnn_edgenext-small_coco-demo.py')
RTMDET = str(ROOT / 'configs/repvit/rtmdet_repvit-m0.9_coco-demo.py')
SSDLITE = str(ROOT / 'configs/edgenext/ssdlite_edgenext-small_coco-demo.py')
CASCADE = str(ROOT / 'configs/fastervit/cascade-mask-rcnn_fastervit-2_coco-3x.py')
CLASSIFIER = str(ROOT / 'configs/repvit/imagenet/repvit-m0.9_in1k-demo.py')
FASTERVIT_SEG = str(ROOT / 'configs/fastervit/fpn_fastervit-0_ade20k-demo.py')
TRANSNEXT_SEG = str(ROOT / 'configs/transnext/fpn_transnext-micro_ade20k-demo.py')
# The smallest variants keep the file fast; the FPN's input widths follow the backbone.
REPVIT_M09 = {'model.backbone.arch': 'm0.9', 'model.neck.in_channels': [48, 96, 192, 384]}
EDGENEXT_XXS = {'model.backbone.arch': 'xx-small', 'model.neck.in_channels': [24, 48, 88, 168]}
EXPORT_SIZE = (64, 64)
# Different heights and widths, the second not a multiple of 32 (EdgeNeXt pads, RepViT's convs round up).
CHECK_SIZES = [(64, 64), (72, 104)]
TOLERANCE = 1e-4


@pytest.fixture(scope='module')
def repvit_checkpoint(tmp_path_factory):
    """A segmentor checkpoint (tools/train.py's layout) of the small RepViT Semantic FPN."""
    cfg = Config.fromfile(REPVIT_SEG)
    cfg.merge_from_dict(REPVIT_M09)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomise_bn(model)  # folding BatchNorm into the convs must matter
    path = tmp_path_factory.mktemp('ckpt') / 'fpn_repvit.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


def assert_dynamic_input(onnx_file: str) -> None:
    graph_input = onnx.load(onnx_file, load_external_data=False).graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True], dims  # N, 3, H, W


def export_and_compare(target, tmp_path, batch: int = 2):
    onnx_file = export_onnx(target, str(tmp_path / 'model.onnx'), EXPORT_SIZE)
    assert_dynamic_input(onnx_file)
    session = ort_session(onnx_file)
    results = compare_with_onnxruntime(target, onnx_file, CHECK_SIZES, batch=batch, tolerance=TOLERANCE,
                                       warmup=0, repeat=1, threads=1, session=session)
    print(format_table(results, TOLERANCE))
    assert [r.input_shape for r in results] == [(batch, 3, 64, 64), (batch, 3, 72, 104)]
    for r in results:
        assert r.passed, r
        assert r.max_rel_diff < TOLERANCE and r.max_abs_diff > 0  # float32 kernels differ a little, never 0
    return onnx_file, session


def test_repvit_backbone_fused_matches_onnxruntime(repvit_checkpoint, tmp_path):
    target = build_export_target(REPVIT_SEG, repvit_checkpoint, 'backbone', REPVIT_M09)
    assert target.kind == 'backbone' and target.output_names == ['feat_s4', 'feat_s8', 'feat_s16', 'feat_s32']
    assert not any(callable(getattr(m, 'fuse', None)) for m in target.module.modules()), 'not fused'
    # The loaded weights are the checkpoint's: the fused backbone computes what the unfused one does.
    cfg = Config.fromfile(REPVIT_SEG)
    cfg.merge_from_dict(REPVIT_M09)
    init_default_scope('mmseg')
    reference = MODELS.build(cfg.model).eval()
    reference.load_state_dict(load_checkpoint_file(repvit_checkpoint)['state_dict'])
    x = torch.randn(1, 3, 72, 104)
    with torch.no_grad():
        for fused, unfused in zip(target.module(x), reference.backbone(x)):
            torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-4)

    onnx_file, session = export_and_compare(target, tmp_path)

    # The comparison can fail: weights changed after the export no longer match the file.
    with torch.no_grad():
        next(p for p in target.module.parameters() if p.dim() == 4).add_(0.5)
    results = compare_with_onnxruntime(target, onnx_file, CHECK_SIZES[:1], warmup=0, repeat=1, threads=1,
                                       session=session)
    assert not results[0].passed and results[0].max_rel_diff > TOLERANCE

    check_tensorrt_inputs(target, onnx_file, tmp_path)


def check_tensorrt_inputs(target, float_file: str, tmp_path) -> None:
    """What TensorRT builds from (it takes its precision from the graph): the float16 export computes the float32
    model's features within float16 round-off, and the INT8 file for TensorRT has signed, symmetric activations.
    Without TensorRT, asking for it says what is missing."""
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = [f.numpy() for f in target.module(x)]
    half_file = export_onnx(target, str(tmp_path / 'fp16.onnx'), EXPORT_SIZE, half=True)
    graph = onnx.load(half_file)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {p.key: p.value for p in graph.metadata_props}['mmlightvit.precision'] == 'fp16'
    got = ort_session(half_file, threads=1).run(None, {'image': x.numpy().astype(np.float16)})
    for out, ref in zip(got, expected):
        assert out.dtype == np.float16
        error = np.abs(out.astype(np.float32) - ref).max() / np.abs(ref).max()
        assert 0 < error < 1e-2, error  # float16 keeps ~3 decimal digits

    int8_file = str(tmp_path / 'int8.onnx')
    quantize_onnx(float_file, int8_file, [{'image': torch.rand(1, 3, 64, 64).numpy()}], symmetric=True)
    quantized = onnx.load(int8_file)
    initializers = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    zero_points = [initializers[node.input[2]] for node in quantized.graph.node if node.op_type == 'QuantizeLinear']
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)

    if importlib.util.find_spec('tensorrt') is None:
        with pytest.raises(TensorRTError, match='TensorRT is not installed'):
            TensorRTSession(float_file, {'image': ((1, 3, 64, 64), ) * 3})


def test_segmentor_matches_onnxruntime(repvit_checkpoint, tmp_path):
    target = build_export_target(REPVIT_SEG, repvit_checkpoint, 'model', REPVIT_M09)
    assert target.kind == 'segmentor' and target.output_names == ['seg_logits', 'seg_label']
    with torch.no_grad():
        logits, labels = target.module(torch.randn(1, 3, 72, 104))
    assert logits.shape == (1, 5, 72, 104)  # the demo set's 5 classes, at the input size
    assert torch.equal(labels, logits.argmax(1))
    onnx_file, _ = export_and_compare(target, tmp_path, batch=1)
    props = {p.key: p.value for p in onnx.load(onnx_file, load_external_data=False).metadata_props}
    assert props['mmlightvit.kind'] == 'segmentor' and 'mmlightvit.preprocess.mean' in props


class PyramidPooling(torch.nn.Module):
    """The pooling of mmseg's pyramid pooling module (UperNet, PSPNet): the map pooled to 1, 2, 3 and 6."""

    def __init__(self):
        super().__init__()
        self.pools = torch.nn.ModuleList(torch.nn.AdaptiveAvgPool2d(size) for size in (1, 2, 3, 6))

    def forward(self, x):
        return tuple(pool(x) for pool in self.pools)


def test_adaptive_average_pooling_exports_for_every_input_size(tmp_path):
    """Traced at 4 x 4, PyTorch's decomposition fixes the windows of the traced size (pooling 4 to 2 becomes a
    2 x 2 average pooling, 4 to 3 reads windows of 2 unclamped): a 3 x 5 map then reads past its end and a 7 x 11
    map averages the wrong windows. The replaced pooling computes PyTorch's windows at every size."""
    model = PyramidPooling().eval()
    assert replace_adaptive_pooling(model) == 3  # 1 x 1 is a mean, which exports as one
    onnx_file = export_onnx(ExportTarget(model, 'backbone', ['pool1', 'pool2', 'pool3', 'pool6']),
                            str(tmp_path / 'pooling.onnx'), (4, 4), batch=2)
    session = ort_session(onnx_file, 1)
    reference = PyramidPooling()
    for height, width in ((4, 4), (3, 5), (7, 11), (13, 2)):
        image = torch.randn(2, 3, height, width)
        for got, expected in zip(session.run(None, {'image': image.numpy()}), reference(image)):
            torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-6)


def test_classifier_matches_onnxruntime(tmp_path):
    target = build_export_target(CLASSIFIER, 'none', 'model')
    assert target.kind == 'classifier' and target.output_names == ['scores']
    with torch.no_grad():
        scores, = target.module(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(scores.sum(1), torch.ones(2))  # probabilities, as mmpretrain's predict gives
    export_and_compare(target, tmp_path)


def run_tool(*args):
    return run_python(['tools/deploy/export_onnx.py', *args], check=False)


def test_a_detectors_failed_parity_check_says_how_many_detections_differ(capsys):
    """A detector's parity failure counts the paired detections that differ: a few among many is what an untrained
    detector's near-equal scores give (another box kept by NMS), most an export that computes something else."""

    class Detections(nn.Module):
        def forward(self, *inputs):  # ten fixed detections whatever the image
            boxes = torch.arange(40.).reshape(1, 10, 4)
            return torch.cat([boxes, torch.full((1, 10, 1), 0.5)], -1), torch.arange(10).reshape(1, 10)

    class OneBoxElsewhere:
        def run(self, _, feed):
            dets, labels = (t.numpy() for t in Detections()())
            dets[0, 3, :4] += 20.0  # another box kept in its place
            return [dets, labels]

    target = ExportTarget(Detections(), 'detector', ['dets', 'labels'], backbone_type='Toy')
    result, = compare_with_onnxruntime(target, None, [(32, 32)], warmup=0, repeat=1, session=OneBoxElsewhere())
    assert not result.passed and result.note == '1 of 10 detections differ'
    assert 'FAIL (1 of 10 detections differ)' in format_table([result])
    from mmlightvit.deploy.cli import parity_exit_status
    assert parity_exit_status([result], 1e-4, 'detector', 'sizes') == 1
    assert 'failed on 1 of 1 sizes' in capsys.readouterr().err


def test_int8_form_of_a_product_with_a_batched_weight_runs(tmp_path):
    """TransNeXt multiplies its queries by per-head learnable tokens, a (heads, head_dim, tokens) weight. Quantized
    per channel, onnxruntime's QLinearMatMul refused it at the first run (Mask2Former's INT8 file could not be
    tested); such products stay float and the rest is quantized."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    tokens = numpy_helper.from_array(rng.standard_normal((2, 8, 3)).astype(np.float32), 'tokens')
    weight = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), 'weight')
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['x', 'weight'], ['y'], name='linear'),
         helper.make_node('MatMul', ['y', 'tokens'], ['out'], name='per_head_tokens')], 'toy',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [2, 5, 8])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [2, 5, 3])], [tokens, weight])
    float_file, int8_file = str(tmp_path / 'toy.onnx'), str(tmp_path / 'toy_int8.onnx')
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8), float_file)
    feeds = [{'x': rng.standard_normal((2, 5, 8)).astype(np.float32)} for _ in range(4)]
    quantize_onnx(float_file, int8_file, feeds)
    quantized = {node.name for node in onnx.load(int8_file).graph.node if node.op_type == 'DequantizeLinear'
                 and node.input[0].startswith('weight')}
    assert quantized  # the plain product is quantized
    expected = ort_session(float_file).run(None, feeds[0])[0]
    got = ort_session(int8_file).run(None, feeds[0])[0]
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_cli_end_to_end_edgenext_backbone_matches_onnxruntime(tmp_path):
    """The tool on EdgeNeXt-XX-Small (random weights): export, then parity at two sizes with a batch of 2 (the
    second size makes the stem and down-sampling convs pad, which must stay dynamic in the graph)."""
    out = tmp_path / 'edgenext.onnx'
    proc = run_tool(EDGENEXT_SEG, 'none', '--out', str(out), '--shape', *map(str, EXPORT_SIZE), '--check-shapes',
                    *[str(v) for size in CHECK_SIZES for v in size], '--batch', '2', '--warmup', '0', '--repeat',
                    '1', '--threads', '1', '--tolerance', str(TOLERANCE), '--cfg-options',
                    'model.backbone.arch=xx-small', 'model.neck.in_channels=[24,48,88,168]')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'backbone (EdgeNeXt), outputs: feat_s4, feat_s8, feat_s16, feat_s32' in proc.stdout
    assert_dynamic_input(str(out))
    rows = [line.split('|')[1:-1] for line in proc.stdout.splitlines() if line.startswith('| 2x3x')]
    assert [row[0].strip() for row in rows] == ['2x3x64x64', '2x3x72x104'], proc.stdout
    for row in rows:
        max_abs, max_rel = float(row[1]), float(row[2])
        assert 0 < max_abs and max_rel < TOLERANCE and row[-1].strip() == 'ok', proc.stdout
    assert 'PyTorch (ms)' in proc.stdout and 'onnxruntime (ms)' in proc.stdout


def test_cli_missing_checkpoint(tmp_path):
    missing = tmp_path / 'no_such.pth'
    proc = run_tool(EDGENEXT_SEG, str(missing), '--out', str(tmp_path / 'x.onnx'), '--no-check', '--cfg-options',
                    'model.backbone.arch=xx-small', 'model.neck.in_channels=[24,48,88,168]')
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f'error: Checkpoint file {str(missing)!r} does not exist' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'x.onnx').exists()


def test_unreadable_and_backbone_only_checkpoints(tmp_path):
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        build_export_target(EDGENEXT_SEG, str(garbage), 'backbone', EDGENEXT_XXS)
    # Backbone weights alone cannot fill a whole segmentor.
    target = build_export_target(EDGENEXT_SEG, 'none', 'backbone', EDGENEXT_XXS)
    backbone_only = tmp_path / 'backbone.pth'
    torch.save(target.module.backbone.state_dict(), backbone_only)
    with pytest.raises(CheckpointError, match='backbone weights only'):
        build_export_target(EDGENEXT_SEG, str(backbone_only), 'model', EDGENEXT_XXS)
    assert build_export_target(EDGENEXT_SEG, str(backbone_only), 'backbone', EDGENEXT_XXS).kind == 'backbone'


def tie_free_order(scores, labels, boxes):
    """Detections by descending score, equal scores by label and box: the initial weights of RTMDet's and SSDLite's
    heads (a prior-probability bias, small weights) give many detections the same score, which mmdet and the
    exported post-processing may put in different orders."""
    order = torch.arange(len(scores))
    for key in (boxes[:, 1], boxes[:, 0], labels.double(), -(scores.double() * 1e5).round()):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


@pytest.mark.parametrize('config, options', [
    (MASK_RCNN, {}),
    # EdgeNeXt's maps were channels-last views, which mmcv's RoIAlign misread: mmdet's own result was wrong
    (EDGENEXT_MASK_RCNN, {}),
    (RTMDET, {}),
    (SSDLITE, {}),
    # random weights score every class under 0.05: a lower threshold keeps detections to compare; 100 proposals
    # and 20 detections instead of 1000 and 100 keep the three stages' box and mask heads cheap
    (CASCADE, {'model.backbone.arch': '0', 'model.neck.in_channels': [64, 128, 256, 512],
               'model.test_cfg.rcnn.score_thr': 0.02, 'model.test_cfg.rpn.max_per_img': 100,
               'model.test_cfg.rcnn.max_per_img': 20}),
])
def test_detector_post_processing_is_mmdets(config, options):
    """The tensor-form post-processing (fixed shapes, ONNX NMS semantics, torchvision RoIAlign) gives exactly mmdet's
    detections, boxes clipped to each image's unpadded size, in a batch of two differently sized images."""
    target = build_export_target(config, 'none', 'model', options)
    torch.manual_seed(0)
    height, width = target.padded(150, 200)
    image = torch.randn(2, 3, height, width)
    image_size = torch.tensor([[150, 200], [height, width - 40]])
    with torch.no_grad():
        outputs = target.module(image, image_size)
    expected = mmdet_predictions(target.module.detector, image, image_size)
    assert [o.shape[0] for o in outputs] == [2] * len(outputs)
    for index, reference in enumerate(expected):
        count = len(reference['scores'])
        dets, labels = outputs[0][index], outputs[1][index]
        assert count > 0 and int((labels >= 0).sum()) == count
        ours = tie_free_order(dets[:count, 4], labels[:count], dets[:count, :4])
        theirs = tie_free_order(reference['scores'], reference['labels'], reference['boxes'])
        assert torch.equal(labels[:count][ours], reference['labels'][theirs])
        torch.testing.assert_close(dets[:count, :4][ours], reference['boxes'][theirs], rtol=0, atol=1e-4)
        torch.testing.assert_close(dets[:count, 4][ours], reference['scores'][theirs], rtol=0, atol=1e-6)
        assert not dets[count:].any() and (labels[count:] == -1).all()  # padding
        assert (dets[:, 2] <= image_size[index, 1]).all() and (dets[:, 3] <= image_size[index, 0]).all()


# FasterViT and TransNeXt compute their size-dependent tables in the graph. A whole backbone takes minutes to export
# with symbolic sizes (tools/README.md gives the commands and what they measured), so the tests export the last stage
# of a tiny variant (one block, narrow) behind a stand-in stem, once per family, and run it at sizes with other grids:
# 64 x 96 (a 2 x 3 map: one window of 7 in FasterViT, padded) and 112 x 224 (4 x 7: no padding along the width).
# Traced at 256 x 256: an 8 x 8 map, 2 x 2 windows in FasterViT (a count of 1 would be fixed in the graph); TransNeXt's
# position bias of img_size 128 (a 4 x 4 grid) is interpolated at every size. The carrier-token pooling and
# TransNeXt's pooled branch (earlier stages) run eagerly in their graph forms in tests/test_fastervit.py and
# tests/test_transnext.py.
STAGE_EXPORT_SIZE = (256, 256)
STAGE_CHECK_SIZES = [(64, 96), (112, 224)]
TINY_FASTERVIT = dict(type='mmlightvit.FasterViT', arch=dict(dim=16, in_dim=8, depths=(1, 1, 1, 1),
                                                            num_heads=(2, 2, 4, 8)))
TINY_TRANSNEXT = dict(type='mmlightvit.TransNeXt', img_size=128, pretrain_size=128,
                      arch=dict(widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)))


class LastStage(nn.Module):
    """A backbone's last stage behind a stand-in stem: one convolution of stride 16 to the stage's input width."""

    def __init__(self, backbone: nn.Module, in_channels: int):
        super().__init__()
        self.stem = nn.Conv2d(3, in_channels, 16, 16)
        self.backbone = backbone

    def forward(self, x):
        return (self.backbone.forward_stage(3, self.stem(x)), )


@pytest.fixture(scope='module', params=['FasterViT', 'TransNeXt'])
def last_stage_export(request, tmp_path_factory):
    """The family's tiny last stage exported once with dynamic sizes: (target, onnx file, eager outputs at the export
    size before the export)."""
    torch.manual_seed(0)
    backbone = LIGHT_MODELS.build(TINY_FASTERVIT if request.param == 'FasterViT' else TINY_TRANSNEXT).eval()
    target = ExportTarget(LastStage(backbone, 64).eval(), 'backbone', ['feat_s32'], backbone_type=request.param)
    with torch.no_grad():
        before = target.module(torch.ones(1, 3, *STAGE_EXPORT_SIZE))
    onnx_file = export_onnx(target, str(tmp_path_factory.mktemp('onnx') / 'stage.onnx'), STAGE_EXPORT_SIZE)
    return target, onnx_file, before


def test_size_dependent_tables_export_with_dynamic_sizes(last_stage_export):
    target, onnx_file, _ = last_stage_export
    assert_dynamic_input(onnx_file)
    # batch 2: the window batches of the graph follow the image batch too
    results = compare_with_onnxruntime(target, onnx_file, STAGE_CHECK_SIZES, batch=2, tolerance=TOLERANCE,
                                       warmup=0, repeat=1, threads=1)
    print(format_table(results, TOLERANCE))
    assert [r.input_shape for r in results] == [(2, 3, *size) for size in STAGE_CHECK_SIZES]
    for r in results:
        assert r.passed and r.max_abs_diff > 0, r


def test_export_keeps_no_traced_table_for_eager_use(last_stage_export):
    """The tables built in the graph are not cached: eager outputs at the export size are what they were before
    the export, bit for bit."""
    target, _, before = last_stage_export
    with torch.no_grad():
        after = target.module(torch.ones(1, 3, *STAGE_EXPORT_SIZE))
    assert all(torch.equal(a, b) for a, b in zip(after, before))


def test_fastervit_and_transnext_export_targets():
    """Both export ONNX with dynamic sizes: FasterViT traced with 2 x 2 windows in both transformer stages (225 px),
    TransNeXt in extrapolation mode at multiples of 32 (its coordinates of the runtime size are built in the graph).
    Their ExecuTorch programs and Core ML packages hold one size, with the reason."""
    fastervit = build_export_target(FASTERVIT_SEG, 'none', 'backbone',
                                    {'model.backbone': dict(TINY_FASTERVIT, _delete_=True)})
    assert fastervit.dynamic_size and fastervit.min_trace_size == 225 and fastervit.size_divisor == 1
    assert 'window counts' in fastervit.program_fixed_size_reason
    transnext = build_export_target(TRANSNEXT_SEG, 'none', 'backbone',
                                    {'model.backbone': dict(TINY_TRANSNEXT, extrapolation=True, _delete_=True)})
    assert transnext.dynamic_size and transnext.min_trace_size == 1
    assert transnext.size_divisor == 32 and transnext.padded(72, 100) == (96, 128)
    assert 'pooled grids' in transnext.program_fixed_size_reason
    # EdgeNeXt: dynamic ONNX, but its size-dependent padding keeps ExecuTorch programs at one size (said up front)
    edgenext = build_export_target(EDGENEXT_SEG, 'none', 'backbone', EDGENEXT_XXS)
    assert edgenext.dynamic_size and 'pad the map' in edgenext.program_fixed_size_reason
    from mmlightvit.deploy.executorch_export import export_executorch
    with pytest.raises(ExportError, match='EdgeNeXt cannot be exported to ExecuTorch with dynamic height and width'):
        export_executorch(edgenext, 'never_written.pte', (64, 64))


class SizeBranch(nn.Module):
    """A Python branch on the input height: torch.export keeps the traced side as a range of heights."""

    def forward(self, x):
        return (x * 2 if x.shape[2] <= 100 else x - 1, )


def test_graph_for_a_bounded_range_of_sizes_is_refused(tmp_path):
    target = ExportTarget(SizeBranch(), 'backbone', ['out'], backbone_type='SizeBranch')
    with pytest.raises(ExportError, match=r'traced at 64x64 gives a graph for input heights \d+\.\.100 only'):
        export_onnx(target, str(tmp_path / 'branch.onnx'), (64, 64))


@pytest.mark.parametrize('config', [TINY_FASTERVIT, TINY_TRANSNEXT], ids=['FasterViT', 'TransNeXt'])
def test_torchscript_trace_of_size_tables_matches_eager(config):
    """TorchScript tracing (the benchmark's oneDNN form) records sizes as tensors, which the size-table code takes
    as well as plain and symbolic ints."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    backbone = MODELS.build(dict(config)).eval()
    image = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        traced = torch.jit.trace(backbone, image, check_trace=False)
        for expected, got in zip(backbone(image), traced(image)):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
