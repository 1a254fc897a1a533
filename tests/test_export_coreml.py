"""Core ML conversion (mmlightvit.deploy.coreml_export, tools/deploy/export_coreml.py): the fused RepViT-M0.9
classifier converts through the tool to an fp16 ML Program accepting two input sizes; the saved package's
specification holds the expected inputs, outputs, shapes, ops and metadata. A graph with an op coremltools
cannot convert fails naming the op; outputs are never overwritten. Running a package needs macOS, so no parity
check is possible here (tools/README.md, "Core ML on an iPhone")."""
import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

ct = pytest.importorskip('coremltools')

from mmlightvit.deploy.coreml_export import (check_package_output, convert_coreml,  # noqa: E402
                                             read_package, unconvertible_ops)
from mmlightvit.deploy.onnx_export import ExportError, ExportTarget, build_export_target  # noqa: E402
from mmlightvit.utils.files import OutputPathError  # noqa: E402
from tests.conftest import load_tool, run_output  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = str(ROOT / 'configs/repvit/imagenet/repvit-m0.9_in1k-demo.py')
SIZE = (64, 64)
tool = load_tool('tools/deploy/export_coreml.py')


@pytest.fixture(scope='module')
def classifier_package(tmp_path_factory):
    """tools/deploy/export_coreml.py on the RepViT-M0.9 demo classifier (random weights), fp16, 64 x 64 and
    96 x 128 (one conversion for the whole file: it takes seconds)."""
    out = tmp_path_factory.mktemp('coreml') / 'repvit.mlpackage'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert tool.main([CLASSIFIER, 'none', '--mode', 'model', '--shape', *map(str, SIZE), '--precision',
                          'fp16', '--enumerated-shapes', '96', '128', '--out', str(out)]) == 0
    return out, printed.getvalue()


def test_classifier_converts_to_fp16_ml_program(classifier_package):
    out, printed = classifier_package
    summary = read_package(str(out))
    assert [(f.name, f.shape, f.dtype, f.accepted) for f in summary.inputs] == [
        ('image', (1, 3, *SIZE), 'float32', '64x64, 96x128')]
    assert [(f.name, f.dtype) for f in summary.outputs] == [('scores', 'float32')]
    # The fused model: one conv per Conv2d of the re-parameterised PyTorch module, no BatchNorm left in the backbone
    # (the classifier head's BatchNorm before its Linear has no conv to fold into).
    fused = build_export_target(CLASSIFIER, 'none', 'model').module
    assert summary.op_counts['conv'] == sum(isinstance(m, nn.Conv2d) for m in fused.modules())
    assert summary.op_counts.get('batch_norm', 0) == 1
    assert summary.float32_ops == []  # fp16: every computing op in float16, casts only at the edges
    assert summary.op_counts['cast'] == 2
    meta = summary.metadata
    assert (meta['kind'], meta['compute_precision'], meta['weights'], meta['input_sizes'], meta['dynamic_size']) == (
        'classifier', 'fp16', 'float', '64x64,96x128', 'True')
    assert json.loads(meta['preprocess.mean']) == pytest.approx([123.675, 116.28, 103.53])
    assert json.loads(meta['preprocess.std']) == pytest.approx([58.395, 57.12, 57.375])
    # the demo set's ClsDataPreprocessor flips mmcv's BGR images (to_rgb, which the ONNX metadata records too)
    assert (meta['preprocess.to_rgb'], meta['preprocess.channel_order']) == ('True', 'RGB')
    assert meta['config'] == Path(CLASSIFIER).name and meta['checkpoint'] == 'none (random weights)'
    assert 'float16' not in ''.join(map(str, summary.inputs + summary.outputs))
    assert summary.size_bytes > 2 * 4e6  # float16 weights of ~4.7M parameters
    for line in ('classifier (RepViT), outputs: scores', 'inputs:  image float32 (1x3x64x64), accepts 64x64, 96x128',
                 'outputs: scores float32 (', 'compute precision fp16', 'float32 computing ops: none',
                 f'{sum(summary.op_counts.values())} MIL ops: const ', 'MiB on disk', 'Not run here'):
        assert line in printed, printed


def test_tool_never_replaces_existing_outputs(classifier_package, tmp_path, capsys):
    classifier_package = classifier_package[0]
    before = sorted(p.name for p in classifier_package.rglob('*'))
    mtime = os.stat(classifier_package / 'Manifest.json').st_mtime_ns
    assert tool.main([CLASSIFIER, 'none', '--mode', 'model', '--out', str(classifier_package)]) == 2
    assert 'already holds' in capsys.readouterr().err
    existing = tmp_path / 'user.mlpackage'
    existing.write_text('a user file')
    other_folder = tmp_path / 'notes.mlpackage'
    (other_folder / 'sub').mkdir(parents=True)
    for out, message in ((existing, 'existing file'), (other_folder, 'not a Core ML package'),
                         (tmp_path / 'model.onnx', 'ending in .mlpackage'), (CLASSIFIER, 'ending in .mlpackage')):
        assert tool.main([CLASSIFIER, 'none', '--out', str(out), '--overwrite']) == 2
        assert message in capsys.readouterr().err
    assert existing.read_text() == 'a user file' and (other_folder / 'sub').is_dir()
    assert sorted(p.name for p in classifier_package.rglob('*')) == before
    assert os.stat(classifier_package / 'Manifest.json').st_mtime_ns == mtime


class ScoreFloor(nn.Module):
    """``torch.where(x > 0, x, -1.0)``: aten.where.ScalarOther, an op of the detectors' post-processing that
    coremltools 9.0 has no converter for."""

    def forward(self, x):
        return (torch.where(x > 0, x, -1.0), )


def test_unconvertible_op_is_named(tmp_path):
    target = ExportTarget(ScoreFloor(), 'backbone', ['out'], backbone_type='ScoreFloor')
    program = torch.export.export(target.module, (torch.zeros(1, 3, 8, 8), ))
    assert unconvertible_ops(program.run_decompositions({})) == ['aten.where.ScalarOther']
    out = tmp_path / 'floor.mlpackage'
    with pytest.raises(ExportError, match=r'no converter for aten\.where\.ScalarOther in the backbone \(ScoreFloor\)'):
        convert_coreml(target, str(out), (8, 8))
    assert not out.exists()


class StrideFour(nn.Module):
    """Size arithmetic as the backbones and segmentors do it: a stride-4 pooling of the input rounded up
    (``(size - 1) // 4 + 1``), then an upsample to 4 times that size."""

    def forward(self, x):
        height, width = (x.shape[2] - 1) // 4 + 1, (x.shape[3] - 1) // 4 + 1
        pooled = F.adaptive_avg_pool2d(x, 1).expand(-1, -1, height, width)
        return (F.interpolate(pooled, size=(height * 4, width * 4)), )


def test_flexible_sizes_keep_size_arithmetic_in_integers(tmp_path):
    """coremltools 9.0 converts Python's ``//`` on sizes to float32; the upsample then refuses its float size.
    The registered converter keeps it int32, so the enumerated-size package converts."""
    target = ExportTarget(StrideFour(), 'backbone', ['out'], backbone_type='StrideFour')
    summary = convert_coreml(target, str(tmp_path / 'stride.mlpackage'), (8, 8), enumerated_shapes=[(10, 14)])
    assert summary.inputs[0].accepted == '8x8, 10x14' and summary.outputs[0].shape == ()
    assert summary.op_counts['floor_div'] >= 1 and 'upsample_nearest_neighbor' in str(summary.op_counts)


def test_fixed_size_backbone_refuses_flexible_sizes(tmp_path):
    target = ExportTarget(nn.Conv2d(3, 4, 1), 'backbone', ['out'], backbone_type='FasterViT',
                          fixed_size_reason='size-dependent tables')
    with pytest.raises(ExportError, match='FasterViT converts at one input size per file: size-dependent tables'):
        convert_coreml(target, str(tmp_path / 'x.mlpackage'), (8, 8), enumerated_shapes=[(16, 16)])
    # dynamic in ONNX, one size in Core ML (FasterViT and TransNeXt: the backbone's fixed_size_program)
    program_target = ExportTarget(nn.Conv2d(3, 4, 1), 'backbone', ['out'], backbone_type='TransNeXt',
                                  fixed_size_program='no converter for aten.__or__')
    with pytest.raises(ExportError, match='TransNeXt converts at one input size per file: no converter for aten'):
        convert_coreml(program_target, str(tmp_path / 'x.mlpackage'), (8, 8), size_range=(8, 16))
    with pytest.raises(ExportError, match="Unknown precision 'int8'; choose one of fp32, fp16"):
        convert_coreml(target, str(tmp_path / 'x.mlpackage'), (8, 8), precision='int8')


def test_overwrite_replaces_a_package_with_int8_weights(tmp_path):
    class Net(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv = nn.Conv2d(3, channels, 3, padding=1)

        def forward(self, x):
            return (self.conv(x), )

    out = tmp_path / 'net.mlpackage'
    convert_coreml(ExportTarget(Net(4).eval(), 'backbone', ['feat']), str(out), (8, 8))
    with pytest.raises(OutputPathError, match='already holds'):
        check_package_output(str(out))
    assert check_package_output(str(out), overwrite=True).startswith('--out: replacing the existing package')
    # 96 x 3 x 3 x 3 weights: above coremltools' 2048-element threshold for quantising a weight
    summary = convert_coreml(ExportTarget(Net(96).eval(), 'backbone', ['feat']), str(out), (8, 8), 'fp16',
                             int8_weights=True)
    assert summary.outputs[0].shape == (1, 96, 8, 8) and read_package(str(out)).outputs[0].shape == (1, 96, 8, 8)
    assert summary.op_counts['constexpr_affine_dequantize'] == 1 and summary.metadata['weights'] == 'int8'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['net.mlpackage']  # no temporary folder left


def test_importing_the_module_does_not_import_coremltools(tmp_path):
    """(Run forked from the tool server, whose preloaded stack is what a fresh tool process imports.)"""
    script = tmp_path / 'imports.py'
    script.write_text('import sys\nimport mmlightvit.deploy.coreml_export\n'
                      "print('coremltools loaded:', 'coremltools' in sys.modules)\n")
    assert 'coremltools loaded: False' in run_output([script])
