"""FasterViT backbone: variants, equivalence with the ``fastervit`` package, window padding at any input size,
ablations, loading in the official layout. The backbone contract (shapes, training controls, strict loading, ...)
is checked for every family in tests/test_backbone_contract.py."""
import math
from functools import partial
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.models.backbones import FasterViT
from mmlightvit.models.backbones.fastervit import (HATBlock, TokenInitializer, carrier_pool_geometry,
                                                   pooling_matrix)
from mmlightvit.utils import CheckpointError
from tests.backbone_utils import assert_same_weights, converter_main, load_via_init_cfg, num_params, randomise_bn
from mmlightvit.analysis.reference_models import import_fastervit

pytestmark = pytest.mark.usefixtures('single_thread')
ARCHS = ['0', '1', '2', '3', '4', '5', '6']
# Parameter counts (millions) of the models `fastervit` 1.0.0 builds, classifier included (reference table).
REFERENCE_PARAMS_M = {'0': 31.4, '1': 53.4, '2': 75.9, '3': 159.5, '4': 365.6, '5': 957.5, '6': 1360.3}
# A small model with everything variants 3-6 have (layer scale, carrier-token propagation), for cheap tests.
TINY = dict(dim=32, in_dim=16, depths=(1, 1, 3, 2), num_heads=(2, 2, 4, 8), layer_scale=1e-5, do_propagation=True)
TINY_REF_KWARGS = dict(dim=32, in_dim=16, depths=[1, 1, 3, 2], num_heads=[2, 2, 4, 8], layer_scale=1e-5,
                       do_propagation=True)


@pytest.fixture(scope='module')
def fastervit():
    import_fastervit()
    return sys.modules['fastervit']


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics / affine parameters and layer scales (1e-5 would hide the residual branches)."""
    randomise_bn(model, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit('.', 1)[-1].startswith('gamma'):
                p.copy_(torch.rand(p.shape, generator=gen))
    return model


def expected_hw(h: int, w: int):
    """Stage sizes: the two stem convs and the three down-sampling convs (3x3, s2, p1) map n -> ceil(n / 2)."""
    sizes = []
    for step in range(5):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        if step >= 1:
            sizes.append((h, w))
    return sizes


def reference_stage_outputs(ref: nn.Module, x: torch.Tensor):
    """The official model's stage outputs: each level's blocks without its trailing down-sampling."""
    x = ref.patch_embed(x)
    outs = []
    for level in ref.levels:
        downsample, level.downsample = level.downsample, None
        try:
            x = level(x)
        finally:
            level.downsample = downsample
        outs.append(x)
        if downsample is not None:
            x = downsample(x)
    return outs


def assert_outputs_close(outs, expected, tol=2e-5):
    assert len(outs) == len(expected)
    for a, b in zip(outs, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _shape_check(model, h, w, channels):
    with torch.no_grad():
        outs = model(torch.randn(1, 3, h, w))
    assert [tuple(o.shape[2:]) for o in outs] == expected_hw(h, w)
    assert [o.shape[1] for o in outs] == channels
    assert all(torch.isfinite(o).all() for o in outs)
    return outs


# ------------------------------------------------------------------------------------------------------------------
# Variants


@pytest.mark.parametrize('arch', ARCHS)
def test_param_counts_match_reference_table(arch):
    # Built on the meta device: no memory for the 1.36B-parameter variant 6.
    with torch.device('meta'):
        model = FasterViT(arch)
    channels = model.stage_channels[-1]
    classifier = channels * 1000 + 1000 + 2 * channels  # the official head and final BatchNorm
    assert round((num_params(model) + classifier) / 1e6, 1) == REFERENCE_PARAMS_M[arch]
    assert model.stage_channels == [model.dim * 2**i for i in range(4)]


def test_param_count_equals_official_model_exactly(fastervit):
    ref = fastervit.create_model('faster_vit_0_224', pretrained=False)
    ref_backbone = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(('head.', 'norm.')))
    assert num_params(FasterViT('0')) == ref_backbone


def test_architecture_facts():
    with torch.device('meta'):
        model = FasterViT('0')
        deep = FasterViT('3')
    assert model.out_channels == [64, 128, 256, 512]
    assert model.stem[1].eps == 1e-4 and model.stem[4].eps == 1e-4
    assert isinstance(model.stages[2].global_tokenizer, TokenInitializer)
    assert model.stages[3].global_tokenizer is None
    assert all(b.carrier_tokens for b in model.stages[2].blocks)
    assert not any(b.carrier_tokens for b in model.stages[3].blocks)
    # Propagation and layer scale for 3-6 only; propagation after the HAT stage's last block only.
    assert not any(b.propagate for b in model.stages[2].blocks) and model.stages[2].blocks[0].gamma3 is None
    assert [b.propagate for b in deep.stages[2].blocks] == [False] * 11 + [True]
    assert deep.stages[2].blocks[0].gamma1.shape == (512, )
    assert not any(hasattr(b, 'gamma') and b.gamma is not None for s in deep.stages[:2] for b in s.blocks)
    # No size-dependent tensor is part of the state dict.
    assert not any(k.endswith(('relative_bias', 'relative_coords_table', 'relative_position_index'))
                   for k in model.state_dict())


def test_carrier_token_pooling_matches_official_formula():
    # 224: the 14x14 stage-3 map (2x2 windows) -> a 4x4 grid, kernel 5, stride 3 (official TokenInitializer).
    assert carrier_pool_geometry(14, 7, 2) == (4, 5, 3)
    assert carrier_pool_geometry(7, 7, 2) == (2, 4, 3)
    assert carrier_pool_geometry(56, 7, 2) == (16, 11, 3)
    assert carrier_pool_geometry(28, 7, 1) == (4, 7, 7)
    # Integer arithmetic (symbolic sizes stay symbolic in an exported graph), the official float formula's values.
    for window in (5, 7, 8):
        for ct in range(1, window + 1):
            for size in range(window, 12 * window + 1, window):
                outputs = int(ct * size / window)
                stride = int(size / outputs)
                assert carrier_pool_geometry(size, window, ct) == (outputs, size - (outputs - 1) * stride, stride)


def test_carrier_token_pooling_matrices_average_the_same_windows():
    """In a graph with symbolic sizes (ONNX export) the pooling, whose kernel grows with the map, is two products
    with averaging matrices: the windows F.avg_pool2d averages."""
    x = torch.randn(2, 3, 21, 14)
    geo_h, geo_w = carrier_pool_geometry(21, 7, 2), carrier_pool_geometry(14, 7, 2)
    expected = F.avg_pool2d(x, (geo_h[1], geo_w[1]), (geo_h[2], geo_w[2]))
    got = pooling_matrix(21, *geo_h, like=x) @ x @ pooling_matrix(14, *geo_w, like=x).transpose(0, 1)
    assert got.shape == (2, 3, 6, 4)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('size', [(64, 96), (100, 150)])
def test_graph_form_computes_what_the_eager_form_does(monkeypatch, size):
    """The forms a graph with symbolic sizes takes (ONNX export: carrier tokens pooled by averaging matrices, every
    transformer stage padded and cropped even by 0, tables built instead of cached), evaluated eagerly: the same
    outputs within float rounding (the export test checks the graph itself)."""
    import mmlightvit.models.backbones.fastervit as fastervit_module
    model = randomise(FasterViT(TINY)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model(x)
        monkeypatch.setattr(fastervit_module, 'is_symbolic', lambda *sizes: True)
        monkeypatch.setattr(fastervit_module, 'is_tracing', lambda: True)
        got = model(x)
    assert_outputs_close(got, expected, tol=1e-5)


def test_custom_arch_options():
    model = FasterViT(TINY)
    assert model.do_propagation and model.layer_scale == 1e-5
    with pytest.raises(ValueError, match='ct_size'):
        FasterViT(TINY, ct_size=8)


# ------------------------------------------------------------------------------------------------------------------
# Equivalence with the official implementation (same weights, eval mode, 224x224)


def _paired(fastervit, ref_name='faster_vit_0_224', arch='0', ref_kwargs=None, resolution=224, **kwargs):
    torch.manual_seed(0)
    ref = fastervit.create_model(ref_name, pretrained=False, resolution=resolution, **(ref_kwargs or {}))
    randomise(ref).eval()
    model = FasterViT(arch, **kwargs).eval()
    model.load_state_dict(model.convert_checkpoint(ref.state_dict()), strict=True)
    return ref, model


def test_equivalence_variant_0(fastervit):
    ref, model = _paired(fastervit)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert_outputs_close(model(x), reference_stage_outputs(ref, x))


@pytest.mark.parametrize('resolution, ct_size', [(224, 2), (224, 1), (224, 3), (448, 2)])
def test_equivalence_propagation_and_layer_scale(fastervit, resolution, ct_size):
    """Variants 3-6's features (propagation, layer scale) on a small model; other ct sizes; and at 448 the runtime
    carrier-token geometry equals the official model constructed for 448."""
    ref, model = _paired(fastervit, arch=TINY, ref_kwargs=dict(TINY_REF_KWARGS, ct_size=ct_size),
                         resolution=resolution, ct_size=ct_size)
    assert ref.levels[2].blocks[-1].do_propagation and ref.levels[2].blocks[-1].last
    x = torch.randn(1, 3, resolution, resolution)
    with torch.no_grad():
        assert_outputs_close(model(x), reference_stage_outputs(ref, x))


@pytest.mark.parametrize('resolution', [224, 448])
def test_equivalence_21k_layout(fastervit, resolution):
    """The FasterViT-4-21K layout (the official DINO release's backbone) on small widths: no carrier tokens
    (official hat all False) and 14x14 windows in stage 3 (official window_size [7, 7, 14, 7]): one window at 224,
    2x2 at 448."""
    ref_kwargs = {k: v for k, v in TINY_REF_KWARGS.items() if k != 'do_propagation'}  # the 21K builder sets it
    ref, model = _paired(fastervit, ref_name='faster_vit_4_21k_224', arch=TINY, ref_kwargs=ref_kwargs,
                         resolution=resolution, window_size=(14, 7), use_carrier_tokens=False)
    assert ref.levels[2].window_size == 14 and not hasattr(ref.levels[2].blocks[0], 'hat_attn')
    x = torch.randn(1, 3, resolution, resolution)
    with torch.no_grad():
        assert_outputs_close(model(x), reference_stage_outputs(ref, x))


# ------------------------------------------------------------------------------------------------------------------
# Any input size


@pytest.fixture(scope='module')
def model0():
    torch.manual_seed(0)
    return randomise(FasterViT('0')).eval()


@pytest.mark.parametrize('size', [(800, 1216), (600, 1000), (225, 333)])
def test_window_padding_at_detection_sizes(model0, size):
    """Padded window grids and carrier tokens of the real variant (small odd sizes: test_backbone_contract.py)."""
    _shape_check(model0, *size, [64, 128, 256, 512])


def test_padding_does_not_mix_images(model0):
    """Each image is processed on its own: batch results equal single-image results at a padded size."""
    x = torch.randn(2, 3, 225, 333)
    with torch.no_grad():
        batch = model0(x)
        single = model0(x[1:])
    assert_outputs_close([o[1:] for o in batch], single, tol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# Ablation switches


def test_drop_path_rate():
    model = FasterViT(TINY, drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages for b in s.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.3) and len(rates) == 7


def test_use_carrier_tokens_switch():
    model = FasterViT(TINY, use_carrier_tokens=False).eval()
    assert model.stages[2].global_tokenizer is None
    assert not any('hat_' in k or 'gamma1' in k for k in model.state_dict())
    assert not any(b.carrier_tokens or b.propagate for b in model.stages[2].blocks)
    full = FasterViT(TINY)
    assert num_params(model) < num_params(full)
    _shape_check(model, 225, 333, [32, 64, 128, 256])
    # Same weights without the HAT parts: a different function.
    full_state = full.state_dict()
    model.load_state_dict({k: full_state[k] for k in model.state_dict()})
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x)[2], full.eval()(x)[2])


@pytest.mark.parametrize('ct_size', [1, 3])
def test_ct_size_switch(ct_size):
    model = FasterViT(TINY, ct_size=ct_size).eval()
    tokens = model.stages[2].global_tokenizer(torch.randn(1, 128, 14, 14))
    assert tokens.shape == (4, ct_size**2, 128)  # 2x2 windows, ct_size x ct_size carrier tokens each
    _shape_check(model, 225, 333, [32, 64, 128, 256])


@pytest.mark.parametrize('window_size', [4, (14, 7)])
def test_window_size_switch(window_size):
    model = FasterViT(TINY, window_size=window_size).eval()
    expected = (window_size, window_size) if isinstance(window_size, int) else window_size
    assert (model.stages[2].window_size, model.stages[3].window_size) == expected
    assert all(b.window_size == expected[0] for b in model.stages[2].blocks)
    _shape_check(model, 225, 333, [32, 64, 128, 256])
    _shape_check(model, 224, 224, [32, 64, 128, 256])


def test_official_dino_backbone_computations():
    """coord_norm='tokens' / pad_conv_stages: what the official DINO detection backbone computes (compared once with
    the official code on the CPU: configs/fastervit/README.md). At 224x224 the padding changes nothing."""
    from mmlightvit.models.backbones.fastervit import _grid_coords
    coords = _grid_coords(14, 14, 'cpu', 'tokens').reshape(14, 14, 2)
    assert torch.allclose(coords[:, 0, 0], (torch.arange(14.) - 98) / 98)
    assert torch.allclose(coords[0, :, 1], (torch.arange(14.) - 98) / 98)
    assert torch.allclose(_grid_coords(14, 14, 'cpu', 'side').reshape(14, 14, 2)[:, 0, 0], (torch.arange(14.) - 7) / 7)
    with pytest.raises(ValueError, match="coord_norm must be one of"):
        FasterViT(TINY, coord_norm='area')

    torch.manual_seed(0)
    plain = randomise(FasterViT(TINY, out_indices=(0, 1))).eval()
    padded = FasterViT(TINY, out_indices=(0, 1), pad_conv_stages=True).eval()
    padded.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 4 * 30, 4 * 33)  # stage maps 30x33 and 15x17: not multiples of 7
    with torch.no_grad():
        ours = padded(x)
        # the official computation by hand: each conv stage on its map zero-padded to multiples of 7, cropped back
        y = plain.stem(x)
        reference = []
        for stage in plain.stages[:2]:
            y = stage.downsample(y)
            h, w = y.shape[-2:]
            y = stage.forward_blocks(torch.nn.functional.pad(y, (0, -w % 7, 0, -h % 7)))[:, :, :h, :w]
            reference.append(y)
        assert all(torch.equal(a, b) for a, b in zip(ours, reference))
        assert not torch.allclose(ours[0], plain(x)[0])  # the borders differ
        x = torch.randn(1, 3, 224, 224)
        assert all(torch.equal(a, b) for a, b in zip(padded(x), plain(x)))


def test_hat_block_carrier_tokens_roundtrip():
    """The carrier tokens keep their per-window layout through a block, also for non-square window grids."""
    block = HATBlock(32, 2, window_size=7, carrier_tokens=True, ct_size=2).eval()
    x, ct = torch.randn(2 * 2 * 3, 49, 32), torch.randn(2 * 2 * 3, 4, 32)
    with torch.no_grad():
        y, ct2 = block(x, ct, 2, 2, 3)
    assert y.shape == x.shape and ct2.shape == ct.shape


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints


_load_via_init_cfg = partial(load_via_init_cfg, FasterViT)


@pytest.fixture(scope='module')
def tiny_pair(fastervit):
    return _paired(fastervit, arch=TINY, ref_kwargs=TINY_REF_KWARGS)


def test_load_official_layout(tmp_path, tiny_pair):
    ref, model = tiny_pair
    official = ref.state_dict()
    assert any(k.endswith('relative_bias') for k in official) and 'head.weight' in official
    path = tmp_path / 'official.pth.tar'
    torch.save({'state_dict': {'module.' + k: v for k, v in official.items()}, 'epoch': 300}, path)
    loaded = _load_via_init_cfg(TINY, path).eval()
    assert_same_weights(loaded, model.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert_outputs_close(loaded(x), reference_stage_outputs(ref, x))


def test_load_official_buffers_of_another_size(tmp_path, fastervit):
    """An official model built for 448 (other relative-bias / index / coords buffers) loads all the same."""
    torch.manual_seed(0)
    ref = randomise(fastervit.create_model('faster_vit_0_224', pretrained=False, resolution=448, **TINY_REF_KWARGS))
    key = 'levels.2.blocks.0.hat_attn.pos_emb_funct.relative_bias'
    assert ref.state_dict()[key].shape == (1, 4, 64, 64)  # 8x8 carrier tokens
    path = tmp_path / 'official_448.pth'
    torch.save({'model': ref.state_dict()}, path)
    model = _load_via_init_cfg(TINY, path).eval()
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        assert_outputs_close(model(x), reference_stage_outputs(ref.eval(), x))


def test_official_round_trip(tiny_pair):
    ref, model = tiny_pair
    official = model.to_official_state_dict()
    ref_keys = {k for k in ref.state_dict()
                if not k.startswith(('head.', 'norm.'))
                and not k.endswith(('relative_bias', 'relative_coords_table', 'relative_position_index'))}
    assert set(official) == ref_keys
    assert_same_weights(model, model.convert_checkpoint(official))


def test_official_checkpoint_needs_carrier_tokens(tmp_path, tiny_pair):
    ref, _ = tiny_pair
    path = tmp_path / 'official.pth'
    torch.save(ref.state_dict(), path)
    with pytest.raises(CheckpointError, match=r'unexpected keys: .*hat_'):
        _load_via_init_cfg(TINY, path, use_carrier_tokens=False)


def test_wrong_variant_is_an_error(tmp_path, tiny_pair):
    _, source = tiny_pair
    path = tmp_path / 'tiny.pth'
    torch.save(source.to_official_state_dict(), path)
    with pytest.raises(CheckpointError, match=r'has dim=32, .*but this FasterViT has dim=48, .*wrong arch'):
        _load_via_init_cfg(dict(TINY, dim=48), path)


# ------------------------------------------------------------------------------------------------------------------
# Converter tool


def test_converter_tool(tmp_path, fastervit, capsys):
    main = converter_main()

    torch.manual_seed(0)
    ref = randomise(fastervit.create_model('faster_vit_0_224', pretrained=False))
    src = tmp_path / 'fastervit_0_224_1k.pth.tar'
    torch.save({'state_dict': ref.state_dict(), 'epoch': 310}, src)
    dst = tmp_path / 'converted.pth'
    summary = main([str(src), str(dst)])
    assert summary['arch'] == '0' and summary['layout'] == 'official'
    assert {'head.weight', 'head.bias', 'norm.weight', 'norm.running_var'} <= set(summary['dropped'])
    assert any(k.endswith('relative_position_index') for k in summary['dropped'])
    assert 'official layout' in capsys.readouterr().out
    model = _load_via_init_cfg('0', dst)
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['arch'] == '0' and not any(k.startswith('backbone.') for k in saved['state_dict'])
    assert_same_weights(model, FasterViT('0').convert_checkpoint(ref.state_dict()))

    dst2 = tmp_path / 'prefixed.pth'
    summary = main([str(src), str(dst2), '--prefix', 'backbone.', '--arch', 'faster_vit_0'])
    assert all(k.startswith('backbone.') for k in torch.load(dst2, weights_only=True)['state_dict'])
    _load_via_init_cfg('0', dst2)
    with pytest.raises(SystemExit, match='not --arch'):
        main([str(src), str(tmp_path / 'unused.pth'), '--arch', '1'])
