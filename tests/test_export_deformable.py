"""Whole-model ONNX export of the heads built on multi-scale deformable attention (mmlightvit.deploy.deformable):
DINO (through DetectorPredictions, the detectors' outputs) and Mask2Former (through SegmentorLogits). Their
tensor form computes what mmdet's / mmseg's predict does, padded images included, and the exported graphs match
onnxruntime (DINO's with dynamic batch, height and width; Mask2Former's at its traced size).

The backbones' own dynamic export is tested in tests/test_export_onnx.py; here a stand-in of three or four strided
convolutions (same channels and strides as RepViT-M0.9's maps) feeds the heads, which keeps the symbolic tracing
of the export to the heads' operations. The heads are the demo configs' with fewer layers and queries."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')  # torch.onnx's exporter needs it

from mmlightvit.deploy.detection import mmdet_predictions  # noqa: E402
from mmlightvit.deploy.onnx_export import (LABEL_AGREEMENT, ExportError, _in_reference_order,  # noqa: E402
                                           build_export_target, compare_with_onnxruntime, export_onnx,
                                           format_table, ort_session)

ROOT = Path(__file__).resolve().parents[1]
DINO = str(ROOT / 'configs/fastervit/dino-4scale_fastervit-0_coco-demo.py')
MASK2FORMER = str(ROOT / 'configs/transnext/mask2former_transnext-micro_ade20k-demo.py')
REPVIT = dict(_delete_=True, type='mmlightvit.RepViT', arch='m0.9')
# two feature levels (strides 16 and 32) instead of four, which halves what the export traces
SMALL_DINO = {'model.backbone': dict(REPVIT, out_indices=(2, 3)), 'model.neck.in_channels': [192, 384],
              'model.neck.num_outs': 2, 'model.num_feature_levels': 2,
              'model.encoder.layer_cfg.self_attn_cfg.num_levels': 2,
              'model.decoder.layer_cfg.cross_attn_cfg.num_levels': 2,
              'model.encoder.num_layers': 1, 'model.decoder.num_layers': 1, 'model.num_queries': 30,
              'model.test_cfg.max_per_img': 30}
SMALL_MASK2FORMER = {'model.backbone': dict(REPVIT, out_indices=(0, 1, 2, 3)),
                     'model.decode_head.in_channels': [48, 96, 192, 384], 'model.decode_head.num_queries': 10,
                     'model.decode_head.transformer_decoder.num_layers': 2}
# Traced at one size, checked at another with different height and width (every level larger than 1 x 1 at the
# traced size: a size of 1 would be traced as a constant).
EXPORT_SIZE = (96, 128)
CHECK_SIZES = [(96, 128), (112, 80)]
TOLERANCE = 1e-4


class StridedConvs(nn.Module):
    """A stand-in backbone: one strided convolution per output map."""

    def __init__(self, channels, first_stride: int):
        super().__init__()
        strides = [first_stride] + [2] * (len(channels) - 1)
        inputs = [3] + list(channels[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, s, 1) for i, o, s in zip(inputs, channels, strides))

    def forward(self, x):
        outs = []
        for conv in self.convs:
            x = conv(x).relu()
            outs.append(x)
        return tuple(outs)


def small_dino():
    target = build_export_target(DINO, 'none', 'model', SMALL_DINO)
    torch.manual_seed(0)
    target.module.detector.backbone = StridedConvs([192, 384], 16).eval()
    return target


def small_mask2former():
    target = build_export_target(MASK2FORMER, 'none', 'model', SMALL_MASK2FORMER)
    torch.manual_seed(0)
    target.module.segmentor.backbone = StridedConvs([48, 96, 192, 384], 4).eval()
    return target


@pytest.fixture(scope='module')
def dino(tmp_path_factory):
    target = small_dino()
    onnx_file = export_onnx(target, str(tmp_path_factory.mktemp('dino') / 'dino.onnx'), EXPORT_SIZE)
    return target, onnx_file, ort_session(onnx_file, 1)


@pytest.fixture(scope='module')
def mask2former(tmp_path_factory):
    """Exported at one size: its multi-scale deformable attention is DINO's (whose graph is tested with dynamic
    sizes above), and tracing Mask2Former's pixel decoder with symbolic sizes takes over a minute."""
    target = small_mask2former()
    onnx_file = export_onnx(target, str(tmp_path_factory.mktemp('m2f') / 'mask2former.onnx'), EXPORT_SIZE, batch=2,
                            dynamic=False)
    return target, onnx_file, ort_session(onnx_file, 1)


def test_dino_tensor_form_is_mmdets_predict():
    """DINO's test-time forward with padding masks from ``image_size`` and the top-k post-processing give mmdet's
    detections, in a batch whose second image is padded (mmdet then masks the padding in the encoder)."""
    target = small_dino()
    assert target.kind == 'detector' and target.output_names == ['dets', 'labels'] and target.size_divisor == 1
    torch.manual_seed(0)
    image = torch.randn(2, 3, 100, 140)
    image_size = torch.tensor([[100, 140], [84, 110]])
    with torch.no_grad():
        dets, labels = target.module(image, image_size)
    expected = mmdet_predictions(target.module.detector, image, image_size)
    assert dets.shape == (2, 30, 5) and labels.shape == (2, 30)
    for index, reference in enumerate(expected):
        assert torch.equal(labels[index], reference['labels'])
        torch.testing.assert_close(dets[index, :, :4], reference['boxes'], rtol=0, atol=1e-4)
        torch.testing.assert_close(dets[index, :, 4], reference['scores'], rtol=0, atol=1e-6)
        assert (dets[index, :, 2] <= image_size[index, 1]).all() and (dets[index, :, 3] <= image_size[index, 0]).all()


def test_dino_export_matches_onnxruntime(dino):
    """Boxes within 1e-4 of the image scale (far below a pixel), scores likewise, labels equal, at the traced size
    and another with different height and width, batch 2; and a batch whose second image is padded."""
    target, onnx_file, session = dino
    results = compare_with_onnxruntime(target, onnx_file, CHECK_SIZES, batch=2, tolerance=TOLERANCE, warmup=0,
                                       repeat=1, session=session)
    print(format_table(results, TOLERANCE))
    for r in results:
        assert r.passed and r.label_agreement == 1.0, r
    image = torch.randn(2, 3, 112, 80)
    image_size = torch.tensor([[112, 80], [90, 64]])
    with torch.no_grad():
        expected = [t.numpy() for t in target.module(image, image_size)]
    got = _in_reference_order(session.run(None, {'image': image.numpy(), 'image_size': image_size.numpy()}),
                              expected)
    assert (got[1] == expected[1]).all()
    assert np.abs(got[0] - expected[0]).max() <= TOLERANCE * np.abs(expected[0]).max()  # pixels and scores
    assert (got[0][1, :, [0, 2]] <= 64).all() and (got[0][1, :, [1, 3]] <= 90).all()  # clipped to the image


def test_dino_exports_to_executorch_at_a_fixed_size(tmp_path):
    """DINO has no NMS, so ExecuTorch runs it whole; at the traced size only (a dynamic one is refused early with
    the reason), with the image size still an input (a padded image is masked as in PyTorch)."""
    pytest.importorskip('executorch')
    from mmlightvit.deploy.executorch_export import export_executorch
    from mmlightvit.deploy.runtime import ExecuTorchSession
    target = small_dino()
    with pytest.raises(ExportError, match='fixed size only'):
        export_executorch(target, str(tmp_path / 'dynamic.pte'), EXPORT_SIZE)
    out = str(tmp_path / 'dino.pte')
    metadata = export_executorch(target, out, EXPORT_SIZE, dynamic=False)
    assert metadata['kind'] == 'detector' and json.loads(metadata['input_names']) == ['image', 'image_size']
    session = ExecuTorchSession(out, 1)
    torch.manual_seed(1)
    image = torch.randn(1, 3, *EXPORT_SIZE)
    for image_size in ([EXPORT_SIZE], [[80, 100]]):
        image_size = torch.tensor(image_size)
        with torch.no_grad():
            expected = [t.numpy() for t in target.module(image, image_size)]
        dets, labels = session.run(None, {'image': image.numpy(), 'image_size': image_size.numpy()})
        assert (labels == expected[1]).all()
        assert np.abs(dets - expected[0]).max() <= TOLERANCE * np.abs(expected[0]).max()

    # INT8: the (de)quantize ops XNNPACK leaves outside its partitions run on ExecuTorch's quantized kernels (the
    # export stopped at "Missing out variants" before); the initial weights score every query about alike, so only
    # the outputs' shape and finiteness, the labels' validity and the best score's scale are compared
    int8 = str(tmp_path / 'dino_int8.pte')
    calibration = [target.example_inputs(torch.randn(1, 3, *EXPORT_SIZE)) for _ in range(2)]
    assert export_executorch(target, int8, EXPORT_SIZE, dynamic=False, calibration=calibration)['precision'] == 'int8'
    dets, labels = ExecuTorchSession(int8, 1).run(None, {'image': image.numpy(), 'image_size': image_size.numpy()})
    assert dets.shape == expected[0].shape and np.isfinite(dets).all() and (labels >= 0).all()
    assert np.abs(dets[..., 4].max() - expected[0][..., 4].max()) <= 0.5 * expected[0][..., 4].max()


def test_mask2former_tensor_form_is_mmsegs_predict():
    target = small_mask2former()
    assert target.kind == 'segmentor' and target.output_names == ['seg_logits', 'seg_label']
    segmentor = target.module.segmentor
    image = torch.randn(1, 3, 72, 104)
    with torch.no_grad():
        logits, labels = target.module(image)
        expected = segmentor.decode_head.predict(segmentor.extract_feat(image), [dict(img_shape=(72, 104))],
                                                 segmentor.test_cfg)
    assert logits.shape == (1, 5, 72, 104)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    assert torch.equal(labels, logits.argmax(1))


def test_mask2former_export_matches_onnxruntime(mask2former):
    target, onnx_file, session = mask2former
    results = compare_with_onnxruntime(target, onnx_file, [EXPORT_SIZE], batch=2, tolerance=TOLERANCE, warmup=0,
                                       repeat=1, session=session)
    print(format_table(results, TOLERANCE))
    for r in results:
        assert r.passed and r.label_agreement >= LABEL_AGREEMENT, r


def test_detectors_other_than_dino_are_refused_with_what_is_supported(tmp_path):
    config = tmp_path / 'detr.py'
    config.write_text("_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'\n")
    with pytest.raises(ExportError, match='DETR is not supported; supported: .* and DINO'):
        build_export_target(str(config), 'none', 'model')
