"""EdgeNeXt backbone: variants, faithfulness to timm / the official BN-HS code, ablations, loading in the official,
timm and mmpretrain layouts; the recipes of the paper's SSDLite and DeepLabV3 configs. The backbone contract
(shapes, training controls, strict loading, ...) is checked for every family in tests/test_backbone_contract.py."""
import math
from functools import partial
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.models.backbones import EdgeNeXt
from mmlightvit.models.backbones.edgenext import (ConvEncoder, FourierPositionalEncoding, SDTAEncoder,
                                                  infer_edgenext_arch)
from mmlightvit.utils import CheckpointError
from tests.backbone_utils import assert_same_weights, converter_main, load_via_init_cfg, num_params, randomise_bn
from mmlightvit.analysis.reference_models import REFERENCE_MODELS, import_timm

pytestmark = pytest.mark.usefixtures('single_thread')
ROOT = Path(__file__).resolve().parents[1]
ARCHS = ['xx-small', 'x-small', 'small', 'base']
BN_HS_ARCHS = ['xx-small-bn-hs', 'x-small-bn-hs', 'small-bn-hs']
TIMM_NAMES = REFERENCE_MODELS['EdgeNeXt'][1]  # arch -> timm model name
# Reference table (paper / official README), whole classifier, in millions.
TABLE_PARAMS_M = {'xx-small': 1.33, 'x-small': 2.34, 'small': 5.59, 'base': 18.51}
BN_HS_PARAMS_M = {'xx-small-bn-hs': 1.33, 'x-small-bn-hs': 2.34, 'small-bn-hs': 5.58}


@pytest.fixture(scope='module')
def timm():
    return import_timm()


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights that make every branch matter: O(1) conv/linear weights, non-zero biases, layer scales and
    temperatures well away from their init (1e-6 and 1), non-trivial norm affines and BN statistics."""
    gen = torch.Generator().manual_seed(seed)

    def rand(shape, low, high):
        return torch.rand(shape, generator=gen) * (high - low) + low

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * m.weight[0].numel()**-0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        elif isinstance(m, nn.LayerNorm):
            m.weight.copy_(rand(m.weight.shape, 0.6, 1.4))
            m.bias.copy_(rand(m.bias.shape, -0.2, 0.2))
    randomise_bn(model, seed)
    for name, p in model.named_parameters():
        if name.endswith(('gamma', 'gamma_xca')):
            p.copy_(rand(p.shape, 0.2, 0.7))
        elif name.endswith('temperature'):
            p.copy_(rand(p.shape, 0.5, 2.0))
    return model


def expected_hw(h: int, w: int):
    """Stage i outputs ceil(n / 2**(i + 2)): the 4x4 / 2x2 patch convs pad the right/bottom edge."""
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]


def assert_outputs_close(outs, expected, tol=1e-5):
    assert len(outs) == len(expected)
    for out, exp in zip(outs, expected):
        assert out.shape == exp.shape
        torch.testing.assert_close(out, exp, rtol=0, atol=tol * max(1., exp.abs().max().item()))


# ------------------------------------------------------------------------------------------------------------------
# Variants


@pytest.mark.parametrize('arch', ARCHS)
def test_param_counts(timm, arch):
    model = EdgeNeXt(arch)
    ref = timm.create_model(TIMM_NAMES[arch])
    # (a) our backbone + timm's classifier (LayerNorm + Linear(C, 1000)) == timm's whole model, exactly.
    assert num_params(model) + num_params(ref.head) == num_params(ref)
    # (b) == the reference table to 0.01M.
    assert abs(num_params(ref) / 1e6 - TABLE_PARAMS_M[arch]) < 0.01
    assert model.stage_channels == list(EdgeNeXt.arch_settings[arch]['widths'])


@pytest.mark.parametrize('arch', BN_HS_ARCHS)
def test_bn_hs_param_counts(arch):
    """No timm model: the official EdgeNeXtBNHS classifier is BatchNorm2d(C) before pooling + Linear(C, 1000)."""
    model = EdgeNeXt(arch)
    assert model.bn_hs
    c = model.stage_channels[-1]
    total = num_params(model) + 2 * c + c * 1000 + 1000
    assert abs(total / 1e6 - BN_HS_PARAMS_M[arch]) < 0.01
    # BN instead of LN, Hardswish instead of GELU, no bias in the stem / down-sampling / conv-encoder convs.
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    assert any(isinstance(m, nn.Hardswish) for m in model.modules())
    keys = model.state_dict()
    assert 'stem.0.bias' not in keys and 'stages.1.downsample.1.bias' not in keys
    assert 'stages.0.blocks.0.conv_dw.bias' not in keys
    last = model.depths[1] - 1
    assert f'stages.1.blocks.{last}.convs.0.bias' in keys  # the SDTA split convs keep their bias (official code)
    # The same count as the LN model: BN and LN both have 2C affine parameters; minus the dropped biases.
    plain = EdgeNeXt(arch.replace('-bn-hs', ''))
    no_bias = r'stem\.0\.bias|stages\.\d\.downsample\.1\.bias|stages\.\d\.blocks\.\d+\.conv_dw\.bias'
    dropped = sum(v.numel() for k, v in plain.state_dict().items() if re.fullmatch(no_bias, k))
    assert num_params(model) == num_params(plain) - dropped


def test_architecture_facts():
    model = EdgeNeXt('small')
    assert model.kernel_sizes == (3, 5, 7, 9) and model.num_heads == (8, 8, 8, 8)
    for s, (depth, k, scales) in enumerate(zip(model.depths, (3, 5, 7, 9), (2, 2, 3, 4))):
        blocks = list(model.stages[s].blocks)
        assert len(blocks) == depth
        for block in blocks[:-1] if s > 0 else blocks:
            assert isinstance(block, ConvEncoder) and block.conv_dw.kernel_size == (k, k)
        if s > 0:
            sdta = blocks[-1]
            assert isinstance(sdta, SDTAEncoder) and len(sdta.convs) == scales - 1
            assert sdta.width == math.ceil(model.widths[s] / scales)  # 160 / 3 -> 54, 54, 52
            assert (sdta.pos_embd is not None) == (s == 1)
            assert torch.all(sdta.xca.temperature == 1) and torch.all(sdta.gamma_xca == 1e-6)
    assert model.stages[1].blocks[-1].pos_embd.token_projection.in_channels == 64
    assert torch.all(model.stages[0].blocks[0].gamma == 1e-6)


def test_custom_arch_widths_split_into_heads():
    model = EdgeNeXt(dict(widths=(16, 32, 48, 64), depths=(1, 2, 2, 2), num_heads=4))
    assert model.stage_channels == [16, 32, 48, 64] and model.num_heads == (4, 4, 4, 4)
    with pytest.raises(ValueError, match='divisible'):
        EdgeNeXt(dict(widths=(16, 30, 48, 64), depths=(1, 1, 1, 1), num_heads=4))


# ------------------------------------------------------------------------------------------------------------------
# Faithfulness


@pytest.mark.parametrize('arch', ARCHS)
def test_equivalence_with_timm(timm, arch):
    torch.manual_seed(0)
    ref = randomise(timm.create_model(TIMM_NAMES[arch]), seed=1).eval()
    model = EdgeNeXt(arch).eval()
    model.load_state_dict(model.convert_checkpoint(ref.state_dict()), strict=True)
    for size in [(256, 256), (160, 224)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = ref.forward_intermediates(x, intermediates_only=True)
            outs = model(x)
        assert_outputs_close(outs, expected)


def _official_bn_hs_forward(sd, x, depths):
    """Stage outputs of the official ``EdgeNeXtBNHS`` (models/edgenext_bn_hs.py, conv_encoder.py
    ``ConvEncoderBNHS``, sdta_encoder.py ``SDTAEncoderBNHS`` / ``XCA``, layers.py ``PositionalEncodingFourier``),
    rewritten here from our reading of that code as plain functions over the official state dict:

    * stem: Conv2d(k=4, s=4, bias=False), BatchNorm2d; down-sampling: BatchNorm2d, Conv2d(k=2, s=2, bias=False);
    * conv encoder: dwconv (bias=False) -> BatchNorm2d on NCHW -> NHWC -> pwconv1 -> Hardswish -> pwconv2 -> gamma
      -> residual;
    * SDTA: torch.split(x, width) with hierarchical DW 3x3 convs (with bias), last split passed through ->
      ``x = norm_xca(x)`` (BatchNorm2d) -> tokens -> ``x = x + pos`` -> ``x = x + gamma_xca * xca(x)`` (the residual
      starts from the normalised tensor) -> back to NCHW -> ``norm`` (BatchNorm2d) -> NHWC MLP with Hardswish ->
      gamma -> residual to the block input;
    * the final ``norm`` (BatchNorm2d) is applied to the last stage output before pooling, i.e. by the
      classifier: stage outputs do not include it.
    """

    def bn(t, p):
        return F.batch_norm(t, sd[p + 'running_mean'], sd[p + 'running_var'], sd[p + 'weight'], sd[p + 'bias'],
                            False, 0., 1e-5)

    def linear(t, p):
        return F.linear(t, sd[p + 'weight'], sd[p + 'bias'])

    def pos_encoding(p, B, H, W):
        mask = torch.zeros(B, H, W).bool()
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        y_embed = y_embed / (y_embed[:, -1:, :] + 1e-6) * 2 * math.pi
        x_embed = x_embed / (x_embed[:, :, -1:] + 1e-6) * 2 * math.pi
        dim_t = torch.arange(32, dtype=torch.float32)
        dim_t = 10000**(2 * (dim_t // 2) / 32)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return F.conv2d(pos, sd[p + 'weight'], sd[p + 'bias'])

    def xca(t, p):
        B, N, C = t.shape
        heads = sd[p + 'temperature'].shape[0]
        qkv = linear(t, p + 'qkv.').reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0].transpose(-2, -1), qkv[1].transpose(-2, -1), qkv[2].transpose(-2, -1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * sd[p + 'temperature']).softmax(dim=-1)
        return linear((attn @ v).permute(0, 3, 1, 2).reshape(B, N, C), p + 'proj.')

    outs = []
    x = bn(F.conv2d(x, sd['downsample_layers.0.0.weight'], stride=4), 'downsample_layers.0.1.')
    for i, depth in enumerate(depths):
        if i > 0:
            x = F.conv2d(bn(x, f'downsample_layers.{i}.0.'), sd[f'downsample_layers.{i}.1.weight'], stride=2)
        for j in range(depth):
            p = f'stages.{i}.{j}.'
            shortcut = x
            if p + 'dwconv.weight' in sd:
                w = sd[p + 'dwconv.weight']
                y = bn(F.conv2d(x, w, padding=w.shape[-1] // 2, groups=w.shape[0]), p + 'norm.')
            else:
                nums = len([k for k in sd if re.fullmatch(re.escape(p) + r'convs\.\d+\.weight', k)])
                width = sd[p + 'convs.0.weight'].shape[0]
                spx = torch.split(x, width, 1)
                sp = out = None  # each branch adds the previous one's output
                for n in range(nums):
                    sp = spx[n] if n == 0 else sp + spx[n]
                    sp = F.conv2d(sp, sd[p + f'convs.{n}.weight'], sd[p + f'convs.{n}.bias'], padding=1,
                                  groups=width)
                    out = sp if n == 0 else torch.cat((out, sp), 1)
                y = bn(torch.cat((out, spx[nums]), 1), p + 'norm_xca.')
                B, C, H, W = y.shape
                y = y.reshape(B, C, H * W).permute(0, 2, 1)
                if p + 'pos_embd.token_projection.weight' in sd:
                    y = y + pos_encoding(p + 'pos_embd.token_projection.', B, H, W).reshape(B, -1, H * W).permute(
                        0, 2, 1)
                y = y + sd[p + 'gamma_xca'] * xca(y, p + 'xca.')
                y = bn(y.reshape(B, H, W, C).permute(0, 3, 1, 2), p + 'norm.')
            y = linear(F.hardswish(linear(y.permute(0, 2, 3, 1), p + 'pwconv1.')), p + 'pwconv2.')
            x = shortcut + (sd[p + 'gamma'] * y).permute(0, 3, 1, 2)
        outs.append(x)
    return outs


@pytest.mark.parametrize('arch', ['xx-small-bn-hs', 'small-bn-hs'])
def test_bn_hs_equivalence_with_official_reading(arch):
    torch.manual_seed(0)
    model = randomise(EdgeNeXt(arch), seed=2).eval()
    official = model.to_official_state_dict()
    for size in [(256, 256), (160, 224)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert_outputs_close(model(x), _official_bn_hs_forward(official, x, model.depths))


def test_positional_encoding_any_size():
    """Computed for the runtime size, the same for every image of a batch; the official per-batch formula."""
    torch.manual_seed(0)
    pe = FourierPositionalEncoding(48)
    sd = {'p.weight': pe.token_projection.weight, 'p.bias': pe.token_projection.bias}
    for h, w in [(8, 8), (5, 11)]:
        pos = pe(h, w)
        assert pos.shape == (1, 48, h, w)
        y = torch.arange(1, h + 1.)[:, None].expand(h, w) / (h + 1e-6) * 2 * math.pi
        x = torch.arange(1, w + 1.)[None, :].expand(h, w) / (w + 1e-6) * 2 * math.pi
        dim_t = 10000**(2 * (torch.arange(32.) // 2) / 32)
        feats = []
        for e in (y, x):
            t = e[..., None] / dim_t
            feats.append(torch.stack((t[..., 0::2].sin(), t[..., 1::2].cos()), dim=-1).flatten(2))
        expected = F.conv2d(torch.cat(feats, -1).permute(2, 0, 1)[None], sd['p.weight'], sd['p.bias'])
        torch.testing.assert_close(pos, expected)


def test_padding_only_at_the_edge():
    """An odd-sized input gives the same top-left values as the official computation would for the crop the
    convs see fully: stage 0 at 33x47 equals stage 0 at 32x44 on the shared positions before any attention."""
    torch.manual_seed(0)
    model = randomise(EdgeNeXt('xx-small')).eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        padded = model.stem(x)
        cropped = model.stem(x[:, :, :32, :44])
    torch.testing.assert_close(padded[:, :, :8, :11], cropped)


# ------------------------------------------------------------------------------------------------------------------
# Ablation switches


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def _runs(model, channels):
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == channels
    assert [tuple(o.shape[2:]) for o in outs] == expected_hw(64, 96)
    return outs


def test_use_sdta_switch():
    base, conv_only = EdgeNeXt('xx-small'), EdgeNeXt('xx-small', use_sdta=False)
    assert _count(base, SDTAEncoder) == 3 and _count(base, ConvEncoder) == sum(base.depths) - 3
    assert _count(conv_only, SDTAEncoder) == 0 and _count(conv_only, ConvEncoder) == sum(base.depths)
    assert _count(conv_only, FourierPositionalEncoding) == 0
    assert conv_only.stages[3].blocks[-1].conv_dw.kernel_size == (9, 9)  # the stage's kernel size
    assert num_params(conv_only) != num_params(base)
    _runs(conv_only, [24, 48, 88, 168])
    _runs(EdgeNeXt('xx-small-bn-hs', use_sdta=False), [24, 48, 88, 168])


def test_use_pos_embd_switch():
    torch.manual_seed(0)
    base = randomise(EdgeNeXt('xx-small')).eval()
    no_pos = EdgeNeXt('xx-small', use_pos_embd=False).eval()
    assert _count(base, FourierPositionalEncoding) == 1 and _count(no_pos, FourierPositionalEncoding) == 0
    assert num_params(base) - num_params(no_pos) == 64 * 48 + 48
    shared = {k: v for k, v in base.state_dict().items() if 'pos_embd' not in k}
    no_pos.load_state_dict(shared, strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = base(x), no_pos(x)
    torch.testing.assert_close(a[0], b[0])  # stage 0 has no SDTA
    assert not torch.allclose(a[1], b[1])
    _runs(no_pos, [24, 48, 88, 168])


def test_kernel_sizes_switch():
    small_k = EdgeNeXt('xx-small', kernel_sizes=(3, 3, 3, 3))
    sizes = {m.conv_dw.kernel_size for m in small_k.modules() if isinstance(m, ConvEncoder)}
    assert sizes == {(3, 3)}
    assert num_params(small_k) < num_params(EdgeNeXt('xx-small'))
    _runs(small_k, [24, 48, 88, 168])
    with pytest.raises(ValueError):
        EdgeNeXt('xx-small', kernel_sizes=(3, 3, 3))


def test_drop_path_and_layer_scale_switches():
    torch.manual_seed(0)
    base = randomise(EdgeNeXt('xx-small'))
    dp = EdgeNeXt('xx-small', drop_path_rate=0.2)
    rates = [m.drop_path.drop_prob for m in dp.modules() if isinstance(m, (ConvEncoder, SDTAEncoder))
             if hasattr(m.drop_path, 'drop_prob')]
    assert len(rates) == sum(dp.depths) - 1 and max(rates) == pytest.approx(0.2)  # first block: rate 0
    dp.load_state_dict(base.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # stochastic depth is off in eval mode ...
        for a, b in zip(dp.eval()(x), base.eval()(x)):
            torch.testing.assert_close(a, b)
        torch.manual_seed(1)  # ... and on in training mode
        assert not torch.allclose(dp.train()(x)[3], base.train()(x)[3])

    ls = EdgeNeXt('xx-small', layer_scale_init_value=0.5)
    gammas = [p for n, p in ls.named_parameters() if n.endswith(('gamma', 'gamma_xca'))]
    assert len(gammas) == sum(ls.depths) + 3 and all(torch.all(g == 0.5) for g in gammas)
    no_ls = EdgeNeXt('xx-small', layer_scale_init_value=0)
    assert not any(n.endswith(('gamma', 'gamma_xca')) for n, _ in no_ls.named_parameters())
    assert num_params(base) - num_params(no_ls) == sum(p.numel() for p in gammas)
    _runs(no_ls, [24, 48, 88, 168])


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints


_load_via_init_cfg = partial(load_via_init_cfg, EdgeNeXt)


def _official_classifier(c, bn_hs=False):
    """The official classifier keys: ``norm`` (LayerNorm after pooling; BatchNorm2d before it for bn_hs), ``head``."""
    head = {'norm.weight': torch.ones(c), 'norm.bias': torch.zeros(c), 'head.weight': torch.zeros(1000, c),
            'head.bias': torch.zeros(1000)}
    if bn_hs:
        head.update({'norm.running_mean': torch.zeros(c), 'norm.running_var': torch.ones(c),
                     'norm.num_batches_tracked': torch.tensor(0)})
    return head


def to_mmpretrain_layout(state):
    """Our keys -> mmpretrain 1.2 ``EdgeNeXt`` backbone keys (mmpretrain.models cannot be imported here: it needs
    torchvision). Facts from mmpretrain/models/backbones/edgenext.py:

    * ``downsample_layers.0`` = stem (``0`` Conv2d 4x4, ``1`` LN2d); ``downsample_layers.{i}`` (i > 0) = ``0`` norm,
      ``1`` Conv2d 2x2 (the same as the official code);
    * ``stages.{i}.{j}``: conv encoders are mmpretrain ``ConvNeXtBlock(linear_pw_conv=True)`` with
      ``depthwise_conv``, ``norm``, ``pointwise_conv1``, ``pointwise_conv2`` (Linear) and ``gamma``;
    * SDTA encoders: ``conv_modules.{k}``, ``pos_embed.proj`` (``PositionEncodingFourier``: 1x1 conv from 64),
      ``norm_csa``, ``gamma_csa``, ``csa.{qkv,proj}`` and ``csa.scale`` (``ChannelMultiheadAttention`` with a
      learnable ``(heads, 1, 1)`` scale = the XCA temperature), ``norm``, ``pointwise_conv1/2``, ``gamma``;
    * ``norm{i}`` for each out index: LayerNorm over the pooled features (``gap_before_final_norm=True``, the
      classifier's final norm); the classifier adds ``head.fc``.
    """
    block = [('conv_dw.', 'depthwise_conv.'), ('mlp.fc1.', 'pointwise_conv1.'), ('mlp.fc2.', 'pointwise_conv2.'),
             ('convs.', 'conv_modules.'), ('pos_embd.token_projection.', 'pos_embed.proj.'),
             ('norm_xca.', 'norm_csa.'), ('gamma_xca', 'gamma_csa'), ('xca.temperature', 'csa.scale'),
             ('xca.', 'csa.')]
    out = OrderedDict()
    for key, value in state.items():
        key = re.sub(r'^stem\.', 'downsample_layers.0.', key)
        key = re.sub(r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.', key)
        m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)$', key)
        if m:
            rest = m.group(3)
            rest = next((new + rest[len(old):] for old, new in block if rest.startswith(old)), rest)
            key = f'stages.{m.group(1)}.{m.group(2)}.{rest}'
        out[key] = value
    return out


@pytest.fixture(scope='module')
def source_model():
    torch.manual_seed(0)
    return randomise(EdgeNeXt('xx-small'), seed=3)


@pytest.fixture(scope='module')
def source_bn_hs():
    torch.manual_seed(0)
    return randomise(EdgeNeXt('xx-small-bn-hs'), seed=4)


def test_official_layout_keys(source_model):
    official = source_model.to_official_state_dict()
    for key in ['downsample_layers.0.0.weight', 'downsample_layers.0.1.bias', 'downsample_layers.3.1.weight',
                'stages.0.0.dwconv.weight', 'stages.0.1.pwconv1.weight', 'stages.2.4.pwconv2.bias',
                'stages.2.4.gamma', 'stages.1.1.convs.0.weight', 'stages.1.1.pos_embd.token_projection.weight',
                'stages.3.1.convs.2.bias', 'stages.3.1.norm_xca.weight', 'stages.3.1.gamma_xca',
                'stages.3.1.xca.temperature', 'stages.3.1.xca.qkv.weight', 'stages.3.1.xca.proj.bias']:
        assert key in official, key
    assert len(official) == len(source_model.state_dict())
    assert official['stages.3.1.xca.temperature'].shape == (4, 1, 1)


def test_load_official_layout_prefers_ema(tmp_path, source_model):
    official = dict(source_model.to_official_state_dict(), **_official_classifier(168))
    training = {k: torch.zeros_like(v) for k, v in official.items()}
    path = tmp_path / 'edgenext_xx_small.pth'
    torch.save({'model': training, 'model_ema': official, 'epoch': 'best-ema'}, path)
    model = _load_via_init_cfg('xx-small', path)
    assert_same_weights(model, source_model.state_dict())  # the EMA weights, not `model`
    # A USI release holds `state_dict`; the optional output norms keep their initialisation.
    path = tmp_path / 'edgenext_small_usi.pth'
    torch.save({'state_dict': official}, path)
    with_norms = _load_via_init_cfg('xx-small', path, out_norm_cfg=dict(type='LN2d'))
    assert hasattr(with_norms, 'norm3')
    assert_same_weights(_load_via_init_cfg('xx-small', path), source_model.state_dict())


def test_load_official_bn_hs_layout(tmp_path, source_bn_hs):
    official = dict(source_bn_hs.to_official_state_dict(), **_official_classifier(168, bn_hs=True))
    path = tmp_path / 'edgenext_xx_small_bn_hs.pth'
    torch.save({'model': official, 'model_ema': official}, path)
    assert_same_weights(_load_via_init_cfg('xx-small-bn-hs', path), source_bn_hs.state_dict())
    with pytest.raises(CheckpointError, match=r'bn_hs=True.*bn_hs=False.*wrong arch'):
        _load_via_init_cfg('xx-small', path)


@pytest.mark.parametrize('wrapped', [True, False])
def test_load_timm_layout(timm, tmp_path, wrapped):
    torch.manual_seed(0)
    ref = randomise(timm.create_model('edgenext_xx_small'))
    state = ref.state_dict()
    assert any(k.startswith('head.norm.') for k in state) and any(k.startswith('head.fc.') for k in state)
    path = tmp_path / 'timm.pth'
    torch.save({'model': state} if wrapped else state, path)
    model = _load_via_init_cfg('xx-small', path)
    assert_same_weights(model, {k: v for k, v in state.items() if not k.startswith('head.')})
    # The official layout built from timm's weights loads to the same model.
    official = dict(model.to_official_state_dict(), **_official_classifier(168))
    torch.save({'model_ema': official}, path)
    assert_same_weights(_load_via_init_cfg('xx-small', path), model.state_dict())


def test_load_mmpretrain_layout(tmp_path, source_model):
    backbone = to_mmpretrain_layout(source_model.state_dict())
    assert 'stages.1.1.csa.scale' in backbone and 'downsample_layers.2.0.weight' in backbone
    # Bare backbone with its out norm (norm3) ...
    path = tmp_path / 'mmpretrain_backbone.pth'
    torch.save(dict(backbone, **{'norm3.weight': torch.ones(168), 'norm3.bias': torch.zeros(168)}), path)
    assert_same_weights(_load_via_init_cfg('xx-small', path), source_model.state_dict())
    # ... and a whole ImageClassifier checkpoint (backbone. prefix, head.fc).
    classifier = {f'backbone.{k}': v for k, v in backbone.items()}
    classifier.update({'backbone.norm3.weight': torch.ones(168), 'backbone.norm3.bias': torch.zeros(168),
                       'head.fc.weight': torch.zeros(1000, 168), 'head.fc.bias': torch.zeros(1000)})
    path = tmp_path / 'edgenext-xxsmall_3rdparty_in1k.pth'
    torch.save({'state_dict': classifier, 'meta': {}}, path)
    assert_same_weights(_load_via_init_cfg('xx-small', path), source_model.state_dict())


def test_wrong_variant_is_an_error(tmp_path, source_model):
    path = tmp_path / 'xx_small.pth'
    torch.save({'model_ema': source_model.to_official_state_dict()}, path)
    with pytest.raises(CheckpointError, match=r'depths \(2, 2, 6, 2\).*wrong arch'):
        _load_via_init_cfg('x-small', path)
    torch.save(source_model.state_dict(), path)
    with pytest.raises(CheckpointError, match='wrong shapes'):
        _load_via_init_cfg('x-small', path)


def test_infer_arch(source_model, source_bn_hs):
    assert infer_edgenext_arch(source_model.state_dict()) == dict(
        widths=(24, 48, 88, 168), depths=(2, 2, 6, 2), bn_hs=False, num_heads=(4, 4, 4, 4),
        kernel_sizes=(3, 5, 7, 9))
    assert infer_edgenext_arch(source_bn_hs.state_dict())['bn_hs']


# ------------------------------------------------------------------------------------------------------------------
# Converter tool


def test_converter_tool(timm, tmp_path, source_model, source_bn_hs, capsys):
    main = converter_main()

    src = tmp_path / 'official.pth'
    official = dict(source_model.to_official_state_dict(), **_official_classifier(168))
    torch.save({'model': {k: torch.zeros_like(v) for k, v in official.items()}, 'model_ema': official}, src)
    dst = tmp_path / 'converted.pth'
    summary = main([str(src), str(dst)])
    assert summary['arch'] == 'xx-small' and summary['layout'] == 'official'
    assert set(summary['dropped']) == {'head.weight', 'head.bias', 'norm.weight', 'norm.bias'}
    assert 'official layout' in capsys.readouterr().out
    assert_same_weights(_load_via_init_cfg('xx-small', dst), source_model.state_dict())
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['arch'] == 'xx-small' and not any(k.startswith('backbone.') for k in saved['state_dict'])

    src_bn = tmp_path / 'bn_hs.pth'
    torch.save({'model_ema': source_bn_hs.to_official_state_dict()}, src_bn)
    assert main([str(src_bn), str(tmp_path / 'bn.pth')])['arch'] == 'xx-small-bn-hs'

    timm_src = tmp_path / 'timm.pth'
    torch.save(timm.create_model('edgenext_xx_small').state_dict(), timm_src)
    dst2 = tmp_path / 'converted_prefixed.pth'
    summary = main([str(timm_src), str(dst2), '--prefix', 'backbone.', '--arch', 'xxs'])
    assert summary['layout'] == 'timm' and summary['dropped']
    saved = torch.load(dst2, weights_only=True)
    assert all(k.startswith('backbone.') for k in saved['state_dict'])
    _load_via_init_cfg('xx-small', dst2)  # the backbone. prefix is stripped on loading
    with pytest.raises(SystemExit, match='not --arch'):
        main([str(timm_src), str(tmp_path / 'unused.pth'), '--arch', 'small'])


# ------------------------------------------------------------------------------------------------------------------
# The paper's dense tables: SSDLite on COCO, DeepLabV3 on VOC, fine-tuned with MobileViT's recipe


def _dense_config(name):
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / f'configs/edgenext/{name}.py'))
    cfg.model.backbone.init_cfg = None  # no download: the weights change no parameter group
    return cfg


def _parameter_groups(cfg):
    """{parameter name: (lr, weight decay)} as mmengine's optimizer-wrapper constructor assigns them."""
    from mmengine.optim import DefaultOptimWrapperConstructor
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    optimizer = cfg.optim_wrapper.optimizer
    constructor = DefaultOptimWrapperConstructor(dict(optimizer=optimizer), cfg.optim_wrapper.get('paramwise_cfg'))
    groups = []
    constructor.add_params(groups, model)
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(g['params'][0])]: (g.get('lr', optimizer.lr), g.get('weight_decay', optimizer.weight_decay))
            for g in groups}


@pytest.mark.parametrize('name, head_lr_mult, passes', [
    ('ssdlite_edgenext-small_coco-320x320', 1, 200),  # RepeatDataset x5 x 40 epochs
    ('deeplabv3_edgenext-small_voc12aug-512x512-50e', 10, 50),
])
def test_dense_configs_follow_mobilevits_recipe(name, head_lr_mult, passes):
    """AdamW 9e-4 with weight decay 0.01 on every parameter (MobileViT decays norms and biases too), the
    segmentation heads at 10x the lr, batch 128 on 8 GPUs, EMA momentum 5e-4, warm-up from 9e-5, cosine to 1e-6."""
    cfg = _dense_config(name)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    for param, (lr, decay) in _parameter_groups(cfg).items():
        expected_lr = 9e-4 * (head_lr_mult if param.split('.')[0] in ('decode_head', 'auxiliary_head') else 1)
        assert (lr, decay) == pytest.approx((expected_lr, 0.01)), param
    assert 8 * cfg.train_dataloader.batch_size == cfg.auto_scale_lr.base_batch_size == 128
    assert cfg.train_cfg.max_epochs * cfg.train_dataloader.dataset.get('times', 1) == passes
    ema, = [hook for hook in cfg.custom_hooks if hook.type == 'EMAHook']
    assert ema.momentum == 5e-4 and ema.update_buffers
    warmup, cosine = cfg.param_scheduler
    assert warmup.start_factor * 9e-4 == pytest.approx(9e-5) and warmup.end == 500 and not warmup.by_epoch
    assert cosine.type == 'CosineAnnealingLR' and cosine.eta_min == 1e-6 and cosine.end == cfg.train_cfg.max_epochs


def test_dense_configs_heads():
    """SSDLite on the stride-16/32 stages without zoom-out (MobileViT's pipeline); DeepLabV3's ASPP on stage 4 with
    MobileViT's image-space rates scaled to stride 32, the auxiliary head on stage 3, 21 classes."""
    ssd = _dense_config('ssdlite_edgenext-small_coco-320x320')
    assert ssd.model.backbone.out_indices == (2, 3) and ssd.model.neck.in_channels == (160, 304)
    assert ssd.model.bbox_head.type == 'mmlightvit.SSDHead'
    assert 'Expand' not in [t.type for t in ssd.train_dataloader.dataset.dataset.pipeline]

    seg = _dense_config('deeplabv3_edgenext-small_voc12aug-512x512-50e')
    head, aux = seg.model.decode_head, seg.model.auxiliary_head
    strides = (4, 8, 16, 32)
    assert strides[head.in_index] == 32 and head.in_channels == 304 and head.channels == 256
    assert [rate * 32 for rate in head.dilations[1:]] == [rate * 8 for rate in (12, 24, 36)]
    assert strides[aux.in_index] == 16 and aux.in_channels == 160
    assert head.num_classes == aux.num_classes == 21
