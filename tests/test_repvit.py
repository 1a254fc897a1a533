"""RepViT backbone: variants, faithfulness to timm / the official layout, re-parameterisation, ablations, loading in
the official and timm layouts. The backbone contract (shapes, training controls, strict loading, ...) is checked for
every family in tests/test_backbone_contract.py."""
import copy
from functools import partial

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmlightvit.models.backbones import RepViT
from mmlightvit.models.backbones.repvit import RepVggDW, SqueezeExcite, infer_repvit_arch
from mmlightvit.models.layers import ConvBN, fuse_model
from mmlightvit.utils import CheckpointError
from tests.backbone_utils import assert_same_weights, converter_main, load_via_init_cfg, num_params, randomise_bn
from mmlightvit.analysis.reference_models import REFERENCE_MODELS, import_timm

pytestmark = pytest.mark.usefixtures('single_thread')
ARCHS = ['m0.9', 'm1.0', 'm1.1', 'm1.5', 'm2.3']
TIMM_NAMES = REFERENCE_MODELS['RepViT'][1]  # arch -> timm model name
# Paper / reference table: deploy (fused) model with a single classifier, in millions.
FUSED_PARAMS_M = {'m0.9': 5.07, 'm1.0': 6.81, 'm1.1': 8.24, 'm1.5': 14.05, 'm2.3': 22.93}


@pytest.fixture(scope='module')
def timm():
    return import_timm()


# ------------------------------------------------------------------------------------------------------------------
# Variants


@pytest.mark.parametrize('arch', ARCHS)
def test_param_counts(timm, arch):
    torch.manual_seed(0)
    model = RepViT(arch)
    ref = timm.create_model(TIMM_NAMES[arch])
    ref_backbone = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith('head.'))
    # (a) unfused backbone == timm's model minus its classifier + distillation head, exactly.
    assert num_params(model) == ref_backbone
    # (b) fused backbone + one fused classifier (BN + Linear(C, 1000) -> Linear) == the paper's count.
    fused = fuse_model(model.eval())
    classifier = model.stage_channels[-1] * 1000 + 1000
    assert abs((num_params(fused) + classifier) / 1e6 - FUSED_PARAMS_M[arch]) < 0.01
    assert model.stage_channels == list(RepViT.arch_settings[arch]['widths'])


# ------------------------------------------------------------------------------------------------------------------
# Faithfulness


@pytest.mark.parametrize('arch', ARCHS)
def test_equivalence_with_timm(timm, arch):
    torch.manual_seed(0)
    ref = randomise_bn(timm.create_model(TIMM_NAMES[arch]), seed=1).eval()
    model = RepViT(arch).eval()
    model.load_state_dict(model.convert_checkpoint(ref.state_dict()), strict=True)
    for size in [(224, 224), (96, 160)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = ref.forward_intermediates(x, intermediates_only=True)
            outs = model(x)
        assert len(outs) == len(expected) == 4
        for out, exp in zip(outs, expected):
            assert out.shape == exp.shape
            torch.testing.assert_close(out, exp, rtol=0, atol=1e-5 * max(1., exp.abs().max().item()))


def test_official_layout_matches_official_cfg():
    """Keys written by the reverse converter sit where the official M1.1 cfg puts them (SE column, stride rows)."""
    model = RepViT('m1.1')
    official = model.to_official_state_dict()
    # Official repvit_m1_1 cfg rows (features 1..24): SE column and stride column, copied from model/repvit.py.
    se = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0]
    stride = [1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1]
    rows = sorted({int(k.split('.')[1]) for k in official})
    assert rows == list(range(25))
    for i, (has_se, s) in enumerate(zip(se, stride), start=1):
        assert (f'features.{i}.token_mixer.1.fc1.weight' in official) == bool(has_se), i
        assert (f'features.{i}.token_mixer.2.c.weight' in official) == (s == 2), i
        assert (f'features.{i}.token_mixer.0.conv1.bias' in official) == (s == 1), i
    for key in ['features.0.0.c.weight', 'features.0.2.bn.running_var', 'features.24.channel_mixer.m.2.bn.weight',
                'features.4.token_mixer.0.c.weight', 'features.4.channel_mixer.m.0.c.weight']:
        assert key in official
    assert len(official) == len(model.state_dict())
    assert infer_repvit_arch(official) == dict(widths=(64, 128, 256, 512), depths=(2, 2, 12, 2))
    assert infer_repvit_arch(model.state_dict()) == infer_repvit_arch(official)


def test_ffn_last_bn_zero_init():
    model = RepViT('m0.9')
    for name, m in model.named_modules():
        if name.endswith(('channel_mixer.conv2', 'ffn.conv2')):
            assert torch.all(m.bn.weight == 0)
        elif isinstance(m, ConvBN):
            assert torch.all(m.bn.weight == 1)


# ------------------------------------------------------------------------------------------------------------------
# Re-parameterisation


def _fused_diff(dtype, arch='m1.1'):
    torch.manual_seed(0)
    model = randomise_bn(RepViT(arch), seed=2).to(dtype).eval()
    x = torch.randn(2, 3, 96, 128, dtype=dtype)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_model(copy.deepcopy(model))
        outs = fused(x)
    assert not any(isinstance(m, (_BatchNorm, ConvBN, RepVggDW)) for m in fused.modules())
    assert all(p.dtype == dtype for p in fused.parameters())
    return max(((o - e).abs().max() / e.abs().max()).item() for o, e in zip(outs, expected))


def test_fuse_equivalence_float32():
    assert _fused_diff(torch.float32) < 1e-4  # max |fused - unfused| / max |unfused|, per output


def test_fuse_equivalence_float64():
    assert _fused_diff(torch.float64) < 1e-10


def test_fuse_model_on_a_wrapping_model_and_plain_token_mixer():
    torch.manual_seed(0)

    class Detector(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = RepViT('m0.9', use_rep_branch=False, out_indices=(3, ))
            self.neck = nn.Conv2d(384, 8, 1)

        def forward(self, x):
            return self.neck(self.backbone(x)[0])

    det = Detector()
    randomise_bn(det).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = det(x)
        fused = fuse_model(det)
        assert fused is det and not any(isinstance(m, _BatchNorm) for m in det.modules())
        torch.testing.assert_close(det(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    # A module that is itself fusable is replaced by its fused form.
    assert isinstance(fuse_model(ConvBN(4, 4, 3, 1, 1).eval()), nn.Conv2d)


# ------------------------------------------------------------------------------------------------------------------
# Ablation switches


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_out_after_preblock_switch():
    torch.manual_seed(0)
    det = randomise_bn(RepViT('m0.9')).eval()
    seg = RepViT('m0.9', out_after_preblock=True).eval()
    seg.load_state_dict(det.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        det_outs, seg_outs = det(x), seg(x)
        for i in range(3):  # segmentation outputs = detection outputs passed through the next pre-block
            expected = det.stages[i + 1].downsample.pre_block(det_outs[i])
            torch.testing.assert_close(seg_outs[i], expected)
            assert not torch.allclose(seg_outs[i], det_outs[i])
        torch.testing.assert_close(seg_outs[3], det_outs[3])
        seg.out_indices = (1, )
        torch.testing.assert_close(seg(x)[0], seg_outs[1])


def test_se_mode():
    alt, every, none = (RepViT('m0.9', se_mode=mode) for mode in ('alternate', 'all', 'none'))
    assert _count(alt, SqueezeExcite) == 1 + 1 + 7 + 1  # first of each pair in blocks (2, 2, 14, 2)
    assert _count(every, SqueezeExcite) == sum(alt.depths) + 3
    assert _count(none, SqueezeExcite) == 0
    assert num_params(none) < num_params(alt) < num_params(every)
    with pytest.raises(ValueError):
        RepViT('m0.9', se_mode='some')


def test_use_rep_branch_and_activation_and_drop_path():
    base = RepViT('m0.9')
    plain = RepViT('m0.9', use_rep_branch=False)
    assert _count(base, RepVggDW) == sum(base.depths) + 3 and _count(plain, RepVggDW) == 0
    assert num_params(plain) < num_params(base)
    hswish = RepViT('m0.9', act_cfg='HSwish')
    assert _count(hswish, nn.Hardswish) > 0 and _count(hswish, nn.GELU) == 0
    assert _count(base, nn.GELU) == _count(hswish, nn.Hardswish)
    assert num_params(hswish) == num_params(base)
    with pytest.raises(ValueError):
        RepViT('m0.9', act_cfg='Mish')
    dp = RepViT('m0.9', drop_path_rate=0.1)
    x = torch.randn(1, 3, 64, 64)
    for model in (plain, hswish, dp):
        assert [o.shape[1] for o in model.eval()(x)] == [48, 96, 192, 384]
    dp.load_state_dict(randomise_bn(base).state_dict())
    with torch.no_grad():  # stochastic depth is off in eval mode
        for a, b in zip(dp.eval()(x), base.eval()(x)):
            torch.testing.assert_close(a, b)
    assert max(m.drop_prob for m in dp.modules() if hasattr(m, 'drop_prob')) == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints


_load_via_init_cfg = partial(load_via_init_cfg, RepViT)


@pytest.fixture(scope='module')
def source_model():
    torch.manual_seed(0)
    return randomise_bn(RepViT('m0.9'), seed=3)


def test_load_official_layout(tmp_path, source_model):
    official = source_model.to_official_state_dict()
    official['classifier.classifier.bn.weight'] = torch.ones(384)
    official['classifier.classifier.l.weight'] = torch.zeros(1000, 384)
    official['classifier.classifier_dist.l.bias'] = torch.zeros(1000)
    path = tmp_path / 'repvit_m0_9_distill_300e.pth'
    torch.save({'model': official}, path)
    model = _load_via_init_cfg('m0.9', path)
    assert_same_weights(model, source_model.state_dict())
    # The optional output norms are not in the release: they keep their initialisation.
    with_norms = _load_via_init_cfg('m0.9', path, out_norm_cfg=dict(type='BN'))
    assert hasattr(with_norms, 'norm3')


@pytest.mark.parametrize('wrapped', [True, False])
def test_load_timm_layout(timm, tmp_path, wrapped):
    torch.manual_seed(0)
    ref = randomise_bn(timm.create_model('repvit_m0_9'))
    state = ref.state_dict()
    assert any(k.startswith('head.') for k in state)
    path = tmp_path / 'timm.pth'
    torch.save({'model': state} if wrapped else state, path)
    model = _load_via_init_cfg('m0.9', path)
    assert_same_weights(model, {k: v for k, v in state.items() if not k.startswith('head.')})


def test_wrong_variant_is_an_error(tmp_path, source_model):
    path = tmp_path / 'm0_9.pth'
    torch.save(source_model.to_official_state_dict(), path)
    with pytest.raises(CheckpointError, match=r'depths \(2, 2, 14, 2\).*wrong arch'):
        _load_via_init_cfg('m1.5', path)
    torch.save(source_model.state_dict(), path)
    with pytest.raises(CheckpointError, match='wrong shapes'):
        _load_via_init_cfg('m1.0', path)


# ------------------------------------------------------------------------------------------------------------------
# Converter tool


def test_converter_tool(timm, tmp_path, source_model, capsys):
    main = converter_main()
    src = tmp_path / 'official.pth'
    torch.save({'model': source_model.to_official_state_dict()}, src)
    dst = tmp_path / 'converted.pth'
    summary = main([str(src), str(dst)])
    assert summary['arch'] == 'm0.9' and summary['layout'] == 'official'
    assert 'official layout' in capsys.readouterr().out
    assert_same_weights(_load_via_init_cfg('m0.9', dst), source_model.state_dict())
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['arch'] == 'm0.9' and not any(k.startswith('backbone.') for k in saved['state_dict'])

    timm_src = tmp_path / 'timm.pth'
    torch.save(timm.create_model('repvit_m0_9').state_dict(), timm_src)
    dst2 = tmp_path / 'converted_prefixed.pth'
    summary = main([str(timm_src), str(dst2), '--prefix', 'backbone.', '--arch', 'm0.9'])
    assert summary['layout'] == 'timm' and summary['dropped']
    saved = torch.load(dst2, weights_only=True)
    assert all(k.startswith('backbone.') for k in saved['state_dict'])
    _load_via_init_cfg('m0.9', dst2)  # the backbone. prefix is stripped on loading
