"""TransNeXt backbone and the Aggregated Attention core: variants, both attention implementations equal, any input
size, interpolation / extrapolation modes, contract, ablations, checkpoint loading."""
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.models.backbones import TransNeXt
from mmlightvit.models.backbones.transnext import ConvolutionalGLU, infer_transnext_arch, official_to_mmlightvit
from mmlightvit.models.backbones import transnext_attention as aa_module
from mmlightvit.models.backbones import transnext_attention_layers as layers_module
from mmlightvit.models.backbones.transnext_attention_layers import (AggregatedAttention, Attention, CPBBias,
                                                                    keys_in_xy_order)
from mmlightvit.models.backbones.transnext_attention import (aggregated_attention, cpb_axis_tables,
                                                             cpb_axis_tables_in_graph,
                                                             flash_aggregated_attention, gather_cpb_bias,
                                                             linear_taps, padded_window_map, window_padding_mask)
from mmlightvit.utils import CheckpointError
from tests.backbone_utils import (assert_same_weights, assert_with_cp_equivalent, converter_main, load_via_init_cfg,
                                  num_params)

pytestmark = pytest.mark.usefixtures('single_thread')
ARCHS = ['micro', 'tiny', 'small', 'base']
# Whole ImageNet classifier = this backbone + head Linear(C4, 1000) (the official classifier has no other
# parameters: it averages norm4's output). Exact counts of the official classification models
# (classification/transnext.py, counted once from the official code); the paper's table shows them truncated
# to 0.1M (Tiny 28.259M -> 28.2M).
OFFICIAL_PARAMS = {'micro': 12_809_304, 'tiny': 28_258_960, 'small': 49_741_564, 'base': 89_721_496}
TABLE_PARAMS_M = {'micro': 12.8, 'tiny': 28.2, 'small': 49.7, 'base': 89.7}
# A Micro-width model with fewer blocks keeps the equivalence tests fast.
SMALL_ARCH = dict(widths=(48, 96, 192, 384), depths=(1, 1, 2, 1), num_heads=(2, 4, 8, 16))


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """O(1) weights everywhere (non-zero learnable_bias, CPB, temperatures away from init) so every term matters."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=gen) * p[0].numel()**-0.5)
        elif re.search(r'norm\d?\.weight$', name):
            p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model


def expected_hw(h: int, w: int):
    """Stage i outputs ceil(n / 2**(i + 2)): 7x7 stride-4 pad-3 stem, then 3x3 stride-2 pad-1 convs."""
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]


def small_model(**kwargs) -> TransNeXt:
    torch.manual_seed(0)
    return randomise(TransNeXt(SMALL_ARCH, **kwargs))


# ------------------------------------------------------------------------------------------------------------------
# Variants


@pytest.mark.parametrize('arch', ARCHS)
def test_param_counts(arch):
    model = TransNeXt(arch)
    c4 = model.stage_channels[-1]
    total = num_params(model) + c4 * 1000 + 1000
    assert total == OFFICIAL_PARAMS[arch]
    assert math.floor(total / 1e5) / 10 == TABLE_PARAMS_M[arch]
    assert model.out_channels == list(TransNeXt.arch_settings[arch]['widths'])


def test_architecture_facts():
    model = TransNeXt('tiny')
    assert model.stem.proj.kernel_size == (7, 7) and model.stem.proj.stride == (4, 4)
    assert model.stem.proj.padding == (3, 3) and model.stem.norm.eps == 1e-5
    for s in (1, 2, 3):
        embed = model.stages[s].patch_embed
        assert embed.proj.kernel_size == (3, 3) and embed.proj.stride == (2, 2) and embed.norm.eps == 1e-5
    for s in range(4):
        stage = model.stages[s]
        assert stage.norm.eps == 1e-6 and len(stage.blocks) == model.depths[s]
        for block in stage.blocks:
            assert block.norm1.eps == 1e-6 and block.norm2.eps == 1e-6
            assert isinstance(block.attn, Attention if s == 3 else AggregatedAttention)
    attn = model.stages[0].blocks[0].attn
    assert attn.sr_ratio == 8 and attn.norm.eps == 1e-5 and attn.q.bias is not None
    assert attn.relative_pos_bias_local.shape == (3, 9) and attn.learnable_tokens.shape == (3, 24, 9)
    torch.testing.assert_close(F.softplus(attn.temperature), torch.full((3, 1, 1), 1 / 0.24))
    assert attn.cpb_fc1.out_features == 512 and attn.cpb_fc2.out_features == 3
    mlp = model.stages[0].blocks[0].mlp
    assert isinstance(mlp, ConvolutionalGLU) and mlp.fc1.weight.shape == (768, 72)
    assert mlp.dwconv.dwconv.groups == 384 and mlp.fc2.weight.shape == (72, 384)
    assert [model.stages[s].blocks[0].attn.sr_ratio for s in range(3)] == [8, 4, 2]
    # No size-dependent tables in the state dict.
    assert not any(re.search(r'relative_pos_index|coords_table|seq_length|padding_mask', k)
                   for k in model.state_dict())


# ------------------------------------------------------------------------------------------------------------------
# The attention core: both implementations


def _core_inputs(dtype, hw, pool_len, local=True, pool=True, seed=0, batch=2, heads=3, dim=4):
    gen = torch.Generator().manual_seed(seed)
    tokens = hw[0] * hw[1]

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()

    return dict(q=rand(batch, heads, tokens, dim),
                k_local=rand(batch, heads, tokens, dim) if local else None,
                v_local=rand(batch, heads, tokens, dim) if local else None,
                k_pool=rand(batch, heads, pool_len, dim) if pool else None,
                v_pool=rand(batch, heads, pool_len, dim) if pool else None,
                local_bias=rand(heads, 9) if local else None,
                pool_bias=rand(heads, tokens, pool_len) if pool else None,
                local_extra=rand(batch, heads, tokens, 9) if local else None)


def _run_core(inputs, hw, **kwargs):
    tensors = [v for v in inputs.values() if v is not None]
    out = aggregated_attention(*[inputs[k] for k in ('q', 'k_local', 'v_local', 'k_pool', 'v_pool')], hw,
                               local_bias=inputs['local_bias'], pool_bias=inputs['pool_bias'],
                               local_extra=inputs['local_extra'], **kwargs)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weight).sum(), tensors)
    return out, grads


@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize('hw, pool_len', [((5, 7), 6), ((1, 9), 2), ((8, 3), 1), ((4, 4), 16)])
@pytest.mark.parametrize('branches', ['both', 'local', 'pool'])
def test_core_implementations_equal(dtype, tol, hw, pool_len, branches):
    inputs = _core_inputs(dtype, hw, pool_len, local=branches != 'pool', pool=branches != 'local')
    out_ref, grads_ref = _run_core(inputs, hw, impl='reference')
    # Unchunked, and chunked (3 queries per chunk) with per-chunk checkpointing.
    for budget in (None, 3 * 2 * 3 * (9 + pool_len)):
        out, grads = _run_core(inputs, hw, impl='efficient', max_chunk_elements=budget)
        torch.testing.assert_close(out, out_ref, rtol=tol, atol=tol)
        for a, b in zip(grads, grads_ref):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_core_masks_borders_with_minus_inf():
    """A query at the corner sees 4 of its 9 window positions; the masked ones get zero weight, and the values
    there are zero, so the post-softmax extra weights add nothing."""
    mask = window_padding_mask((3, 4), 3)
    assert mask.shape == (12, 9)
    assert (~mask).sum(1).tolist() == [4, 6, 6, 4, 6, 9, 9, 6, 4, 6, 6, 4]
    assert mask[0].tolist() == [True, True, True, True, False, False, True, False, False]
    # Equal to F.unfold's zero padding.
    ones = F.unfold(torch.ones(1, 1, 3, 4), 3, padding=1)[0].t()
    assert torch.equal(mask, ones == 0)
    inputs = _core_inputs(torch.float64, (3, 4), 2)
    with torch.no_grad():
        inputs['v_local'][:, :, 0] = 1e6  # query 0's value: seen by its neighbours, finite output still
    for impl in ('reference', 'efficient'):
        out, _ = _run_core(inputs, (3, 4), impl=impl)
        assert torch.isfinite(out).all()


def test_core_rejects_bad_arguments():
    inputs = _core_inputs(torch.float32, (2, 3), 2)
    with pytest.raises(ValueError, match='impl'):
        _run_core(inputs, (2, 3), impl='cuda')
    with pytest.raises(ValueError, match='do not match'):
        _run_core(inputs, (3, 3))


def test_cpb_axis_tables_match_the_2d_unique():
    """The per-axis tables give the official table (torch.unique over (dh, dw) rows) as their Cartesian product."""
    hq, wq, hk, wk, pre = 7, 9, 2, 3, 14
    vals_h, idx_h = cpb_axis_tables(hq, hk, pre)
    vals_w, idx_w = cpb_axis_tables(wq, wk, pre)
    qh, qw = torch.meshgrid(torch.arange(hq).float(), torch.arange(wq).float(), indexing='ij')
    kh, kw = torch.meshgrid(F.adaptive_avg_pool1d(torch.arange(hq).float()[None], hk)[0],
                            F.adaptive_avg_pool1d(torch.arange(wq).float()[None], wk)[0], indexing='ij')
    rel_h = (qh.reshape(-1)[:, None] - kh.reshape(-1)[None]) / (pre - 1) * 8
    rel_w = (qw.reshape(-1)[:, None] - kw.reshape(-1)[None]) / (pre - 1) * 8
    table, index = torch.unique(torch.stack([rel_h, rel_w], -1).view(-1, 2), return_inverse=True, dim=0)
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / torch.log2(torch.tensor(8.))
    ours = torch.stack(torch.meshgrid(vals_h, vals_w, indexing='ij'), -1).reshape(-1, 2)
    assert torch.equal(ours, table)
    ours_index = (idx_h[:, None, :, None] * len(vals_w) + idx_w[None, :, None, :]).reshape(hq * wq, hk * wk)
    assert torch.equal(ours_index.reshape(-1), index)


@pytest.mark.parametrize('query_len, ratio, pretrain_len', [(56, 8, 56), (32, 8, 16), (20, 4, 56), (14, 2, 14),
                                                            (7, 1, 7), (8, 8, 8), (100, 4, 56)])
def test_cpb_axis_tables_in_graph_equal_the_unique_ones(query_len, ratio, pretrain_len):
    """Without torch.unique (a traced graph with symbolic sizes), for a pooling ratio that divides the axis: the
    same values and index, bit for bit."""
    values, index = cpb_axis_tables(query_len, query_len // ratio, pretrain_len)
    values_graph, index_graph = cpb_axis_tables_in_graph(query_len, ratio, pretrain_len)
    assert torch.equal(values_graph, values) and torch.equal(index_graph, index)


@pytest.mark.parametrize('in_size, out_size', [(4, 7), (7, 4), (5, 5), (1, 3), (3, 1)])
def test_linear_taps_resize_as_interpolate(in_size, out_size):
    """One axis's taps (one identity tap for equal sizes, else two) resize as F.interpolate (align_corners=False)."""
    x = torch.randn(3, in_size, dtype=torch.float64)
    taps = linear_taps(in_size, out_size)
    assert len(taps) == (1 if in_size == out_size else 2)
    ours = sum(weight * x[:, index] for index, weight in taps)
    expected = F.interpolate(x[None], size=out_size, mode='linear', align_corners=False)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# The backbone: both implementations, any size, test modes


# Per-stage (sum, sum |x|, sum x^2) of the official dense-prediction backbone (detection/maskrcnn/transnext_native.py,
# run outside this project with its timm/mmdet imports stubbed) on the weights of `small_model` (converted with
# `to_official_state_dict`), float64, input randn(1, 3, 65, 97) from seed 7, img_size = pretrain_size = 64: the
# runtime size differs from img_size, so interpolation mode resizes its bias. There, ours and the official outputs
# differed by at most 2e-15 relative (both implementations).
OFFICIAL_STATS = {
    False: [(910.8406529006888, 16618.85464547122, 21521.404565513098),
            (-930.540295859171, 9051.619157595944, 11926.554426281993),
            (84.66166186196364, 5672.695650814107, 7913.020166079099),
            (163.29917395132895, 3795.5948346640635, 5105.409936643455)],
    True: [(897.5760824169993, 16607.550633419363, 21494.229644768107),
           (-931.8750288827006, 9051.902137910647, 11917.272314126025),
           (80.68652141321192, 5668.744619651548, 7909.541028990941),
           (162.09524435180626, 3795.7733521107366, 5112.745709395804)],
}


@pytest.mark.parametrize('impl', ['reference', 'efficient'])
@pytest.mark.parametrize('extrapolation', [False, True])
def test_matches_official_outputs(impl, extrapolation):
    model = small_model(img_size=64, pretrain_size=64, extrapolation=extrapolation, attn_impl=impl).double().eval()
    x = torch.randn(1, 3, 65, 97, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
    for out, expected in zip(outs, OFFICIAL_STATS[extrapolation]):
        stats = (out.sum().item(), out.abs().sum().item(), out.square().sum().item())
        assert stats == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize('size', [(64, 96), (65, 97)])
def test_backbone_implementations_equal(size):
    ref = small_model(attn_impl='reference').double().train()
    eff = small_model(attn_impl='efficient').double().train()
    assert ref.attn_impl == 'reference' and eff.attn_impl == 'efficient'
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    outs_ref, outs_eff = ref(x), eff(x)
    sum(o.square().mean() for o in outs_ref).backward()
    sum(o.square().mean() for o in outs_eff).backward()
    for a, b in zip(outs_ref, outs_eff):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    grads = dict(eff.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-9, atol=1e-10, msg=name)


def test_backbone_chunked_pooled_branch_equal(monkeypatch):
    """The efficient path's query chunks (forced small here) give the same outputs and gradients, float32."""
    ref = small_model(attn_impl='reference').train()
    eff = small_model().train()
    x = torch.randn(1, 3, 65, 97)
    outs_ref = ref(x)
    monkeypatch.setattr(aa_module, 'MAX_CHUNK_ELEMENTS', 2000)
    outs_eff = eff(x)
    sum(o.square().mean() for o in outs_ref).backward()
    sum(o.square().mean() for o in outs_eff).backward()
    for a, b in zip(outs_ref, outs_eff):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * a.abs().max().item())
    grads = dict(eff.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-5 * max(1, p.grad.abs().max().item()),
                                   msg=name)


def test_cpb_mlp_row_blocks_equal(monkeypatch):
    """Large CPB tables run in (checkpointed) row blocks: same outputs and gradients (forced small here)."""
    x = torch.randn(1, 3, 65, 97, dtype=torch.float64)
    results = []
    for rows in (None, 7):
        if rows:
            monkeypatch.setattr(layers_module, 'CPB_ROWS_PER_BLOCK', rows)
        model = small_model(extrapolation=True).double().train()
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        results.append((outs, {n: p.grad for n, p in model.named_parameters()}))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_set_attn_impl():
    model = small_model().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        b = model.set_attn_impl('reference')(x)
    assert model.attn_impl == 'reference'
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='impl'):
        TransNeXt(SMALL_ARCH, attn_impl='cuda')


# ------------------------------------------------------------------------------------------------------------------
# The flash inference path (eval, no autograd, CPU): cached position-bias tables + the CPU flash-attention kernel


@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize('hw, pool_len', [((5, 7), 6), ((1, 9), 2), ((8, 3), 1), ((4, 4), 16)])
@pytest.mark.parametrize('local', ['plain', 'padded', None])
def test_flash_core_equals_reference(dtype, tol, hw, pool_len, local):
    """The flash core (pooled branch by rows through the flash kernel, joined through log-sum-exps) equals the
    reference core, with and without the window branch (its keys / values as given or as padded maps), batch 2;
    its output is a view of the (B, N, heads, d) layout."""
    inputs = _core_inputs(dtype, hw, pool_len, local=bool(local))
    args = [inputs[k] for k in ('q', 'k_local', 'v_local', 'k_pool', 'v_pool')]
    bias, width = inputs['pool_bias'], hw[1]
    with torch.no_grad():
        expected = aggregated_attention(*args, hw, local_bias=inputs['local_bias'], pool_bias=bias,
                                        local_extra=inputs['local_extra'], impl='reference')
        if local == 'padded':
            args[1:3] = [padded_window_map(t, hw) for t in args[1:3]]
        out = flash_aggregated_attention(*args, hw, lambda start, end: bias[:, start * width:end * width],
                                         local_bias=inputs['local_bias'], local_extra=inputs['local_extra'])
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    assert out.transpose(1, 2).is_contiguous()


@pytest.mark.parametrize('scaling', ['cosine_length', 'dot_product'])
@pytest.mark.parametrize('query_embedding', [True, False])
def test_scale_queries_in_place(scaling, query_embedding):
    """The flash form's query scaling, in place over the normalised queries it is given, is the training path's."""
    attn = AggregatedAttention(16, 2, 2, attention_scaling=scaling, use_query_embedding=query_embedding).double()
    q = torch.randn(2, 2, 12, 8, dtype=torch.float64)
    length_scale = torch.rand(12, 1, dtype=torch.float64) + 1
    with torch.no_grad():
        expected = attn._scale_queries(q, length_scale)
        unit_q = F.normalize(q, dim=-1)
        assert attn._scale_queries(q, length_scale, unit_q=unit_q) is unit_q
    torch.testing.assert_close(unit_q, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize('window_size', [1, 3, 5])
def test_padded_window_map(window_size):
    """The map inside a zero border, from a strided view, optionally scaled (the keys' normalisation)."""
    t = torch.randn(2, 5, 3, 4).transpose(1, 2)  # (B, heads, N, d) view of (B, N, heads, d), N = 5 = 1 x 5
    scale = torch.rand(2, 3, 5, 1)
    r = window_size // 2
    for s in (None, scale):
        expected = F.pad((t if s is None else t * s).reshape(2, 3, 1, 5, 4), (0, 0, r, r, r, r))
        torch.testing.assert_close(padded_window_map(t, (1, 5), window_size, s), expected, rtol=0, atol=0)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _assert_outputs_close(outs, expected, rel):
    for a, b in zip(outs, expected):
        assert a.shape == b.shape
        assert _relative_error(a, b) <= rel


def _eval_outputs(model, x, impl=None, fast=True):
    """Outputs in eval mode without autograd, with the given implementation / fast-inference switch."""
    previous = (model.attn_impl, model.fast_inference)
    model.set_attn_impl(impl or previous[0])
    model.fast_inference = fast
    with torch.no_grad():
        outs = model.eval()(x)
    model.set_attn_impl(previous[0])
    model.fast_inference = previous[1]
    return outs


def _flash_calls(monkeypatch):
    """Counts the calls of the flash attention core (to see which path a forward took)."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return aa_module.flash_aggregated_attention(*args, **kwargs)

    monkeypatch.setattr(layers_module, 'flash_aggregated_attention', counting)
    return calls


@pytest.mark.parametrize('extrapolation', [False, True])
@pytest.mark.parametrize('dtype, rel', [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize('chunk', [None, 700])
def test_fast_inference_equals_reference(monkeypatch, extrapolation, dtype, rel, chunk):
    """Odd, non-square sizes (65x97: maps 17x25 ... 3x4), sizes below and above img_size (the bias is resized down
    and up on every axis in interpolation mode), batch 2, and the size changing back and forth (per-size cache).
    Whole maps per kernel call, and chunks of 2 query rows at 65x97 (budget 700; an odd row count leaves one)."""
    calls = _flash_calls(monkeypatch)
    if chunk:
        monkeypatch.setattr(aa_module, 'FLASH_CHUNK_ELEMENTS', chunk)
    model = small_model(img_size=64, pretrain_size=64, extrapolation=extrapolation).to(dtype)
    gen = torch.Generator().manual_seed(5)
    for size in [(65, 97), (33, 50), (97, 65), (65, 97)]:
        x = torch.randn(2, 3, *size, generator=gen, dtype=dtype)
        before = len(calls)
        fast = _eval_outputs(model, x)
        assert len(calls) - before == sum(model.depths)  # every block took the flash path
        _assert_outputs_close(fast, _eval_outputs(model, x, impl='reference'), rel)
        _assert_outputs_close(fast, _eval_outputs(model, x, fast=False), rel)  # today's efficient path
    assert len(calls) == 4 * sum(model.depths)


@pytest.mark.parametrize('kwargs', [dict(use_window_branch=False), dict(use_pooled_branch=False),
                                    dict(attention_scaling='dot_product'), dict(use_query_embedding=False),
                                    dict(attention_scaling='dot_product', use_query_embedding=False)])
def test_fast_inference_equals_reference_for_ablations(monkeypatch, kwargs):
    """Every ablation switch keeps the flash form's numbers (its queries, keys and local terms are computed apart
    from the other paths'); without the pooled branch only stage 4 (full attention) has a flash form."""
    calls = _flash_calls(monkeypatch)
    model = small_model(img_size=64, pretrain_size=64, **kwargs).double()
    x = torch.randn(2, 3, 65, 97, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fast = _eval_outputs(model, x)
    expected_calls = model.depths[3] if kwargs.get('use_pooled_branch') is False else sum(model.depths)
    assert len(calls) == expected_calls
    _assert_outputs_close(fast, _eval_outputs(model, x, impl='reference'), 1e-12)


def test_fast_inference_under_cpu_autocast(monkeypatch):
    """Under bfloat16 autocast (the linear layers' outputs in bf16) the attention keeps the efficient path; the
    channel mixer by rows follows autocast's dtypes like the whole-map form."""
    calls = _flash_calls(monkeypatch)
    model = small_model(img_size=64, pretrain_size=64).eval()
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        fast = model(x)
        model.fast_inference = False
        expected = model(x)
    assert not calls
    for a, b in zip(fast, expected):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize('hw', [(1, 1), (1, 5), (5, 1), (2, 3), (7, 9), (13, 4)])
def test_channel_mixer_by_rows(hw):
    """The channel mixer by chunks of rows (inference) equals the whole map at once, for chunks of one row up to
    the whole map, whatever the remainder."""
    torch.manual_seed(0)
    mlp = ConvolutionalGLU(8, 4).double().eval()
    x = torch.randn(2, hw[0] * hw[1], 8, dtype=torch.float64)
    with torch.no_grad():
        expected = mlp(x, hw)
        for budget in (1, 30, 64, 200, 10**6):  # hidden = 21: rows of 21 * W values
            mlp.rows_chunk_elements = budget
            torch.testing.assert_close(mlp(x, hw, by_rows=True), expected, rtol=1e-12, atol=1e-12)


def test_flash_cpb_bias_equals_cpb_bias():
    """The factored bias (height part cached, width part per query row) is the official bias, keys in (x, y) order,
    for a size below img_size, above it, and at it (no resizing)."""
    model = small_model(img_size=64, pretrain_size=64).double()
    for stage, block in ((0, 0), (2, 1), (3, 0)):
        attn = model.stages[stage].blocks[block].attn
        for hw in [(5, 7), (17, 25), (16 // 2**stage, 16 // 2**stage)]:
            ctx = model.stage_context(stage, hw, torch.device('cpu'))
            with torch.no_grad():
                expected = CPBBias(attn, ctx).full()  # (heads, N, P), keys row-major
                flash = attn.flash_cpb_bias(ctx)
                rows = torch.cat([flash(row, row + 1) for row in range(hw[0])], dim=1)
                torch.testing.assert_close(flash(0, hw[0]), rows, rtol=0, atol=0)
            heads, tokens, pool_len = expected.shape
            expected = keys_in_xy_order(expected.reshape(1, heads * tokens, pool_len, 1), ctx.pool_hw)
            torch.testing.assert_close(rows, expected.reshape(heads, tokens, pool_len), rtol=1e-12, atol=1e-12)


def test_fast_inference_cache_follows_weight_changes():
    """The cached tables are rebuilt when the CPB weights change, whatever the way: an in-place write through
    .data (no version bump), load_state_dict, an optimiser step."""
    model = small_model(img_size=64, pretrain_size=64)
    x = torch.randn(1, 3, 65, 97)
    _eval_outputs(model, x)  # fills the cache
    attn = model.stages[0].blocks[0].attn
    assert len(attn._cpb_cache) == 2  # the MLP's table and the per-size height part

    with torch.no_grad():
        attn.cpb_fc2.weight.data.mul_(-2.0)
    fast = _eval_outputs(model, x)
    _assert_outputs_close(fast, _eval_outputs(model, x, impl='reference'), 1e-5)

    other = small_model(img_size=64, pretrain_size=64)
    randomise(other, seed=11)
    model.load_state_dict(other.state_dict())
    _assert_outputs_close(_eval_outputs(model, x), _eval_outputs(other, x, impl='reference'), 1e-5)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    sum(o.mean() for o in model(x)).backward()
    optimizer.step()
    fast = _eval_outputs(model, x)
    _assert_outputs_close(fast, _eval_outputs(model, x, impl='reference'), 1e-5)
    assert not torch.allclose(fast[0], _eval_outputs(other, x, impl='reference')[0], atol=1e-4)


def test_fast_inference_cache_is_not_used_in_training(monkeypatch):
    """Train mode drops the cache and never takes the flash path, with or without autograd: a poisoned cache changes
    nothing there; the position-bias MLPs get the reference path's gradients."""
    calls = _flash_calls(monkeypatch)
    model = small_model(img_size=64, pretrain_size=64).double()
    ref = small_model(img_size=64, pretrain_size=64, attn_impl='reference').double()
    x = torch.randn(1, 3, 65, 97, dtype=torch.float64)
    _eval_outputs(model, x)
    attns = [m for m in model.modules() if isinstance(m, (AggregatedAttention, Attention))]
    poisoned = [dict(attn._cpb_cache) for attn in attns]
    for entries in poisoned:
        for key, value in entries.items():
            for table in (value.chunks.values() if key[0] == 'rows' else [value]):
                table.fill_(1e3)
    reference_eval = _eval_outputs(ref, x)
    assert _relative_error(_eval_outputs(model, x)[0], reference_eval[0]) > 1e-3  # eval mode reads the poison
    model.train()
    assert all(not attn._cpb_cache for attn in attns)  # dropped by train()
    for attn, entries in zip(attns, poisoned):  # put back, poisoned: training must not read it
        attn._cpb_cache.update(entries)
    calls.clear()
    outs, outs_ref = model(x), ref.train()(x)
    sum(o.square().mean() for o in outs).backward()
    sum(o.square().mean() for o in outs_ref).backward()
    assert not calls
    _assert_outputs_close(outs, outs_ref, 1e-12)
    grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        if 'cpb_fc' in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-9, atol=1e-12, msg=name)
    with torch.no_grad():  # train mode without autograd: still the training path
        _assert_outputs_close(model(x), ref(x), 1e-12)
    assert not calls


def test_fast_inference_switches(monkeypatch):
    """Off with fast_inference=False, with autograd on, in train mode and for the reference implementation; the
    cache keeps a bounded number of entries and follows .to()."""
    calls = _flash_calls(monkeypatch)
    model = small_model(fast_inference=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)
        model.set_attn_impl('reference')(x)
    model.set_attn_impl('efficient').fast_inference = True
    model(x)  # autograd on
    assert not calls
    with torch.no_grad():
        model(x)
    assert len(calls) == sum(model.depths)
    attn = model.stages[0].blocks[0].attn
    with torch.no_grad():
        for size in range(32, 32 + 4 * (attn.max_cached_tables + 2), 4):  # a new stage-1 map size each
            model(torch.randn(1, 3, size, size))
    assert len(attn._cpb_cache) == attn.max_cached_tables
    model.double()
    assert not attn._cpb_cache
    with torch.no_grad():
        model(x.double())
    assert {key[3] for key in attn._cpb_cache} == {torch.float64}


def test_interpolation_and_extrapolation_modes():
    interp = small_model(img_size=64, pretrain_size=64, extrapolation=False).eval()
    extrap = small_model(img_size=64, pretrain_size=64, extrapolation=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(interp(x), extrap(x)):  # at the pretrain size both build the same bias
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        y = torch.randn(1, 3, 96, 80)  # elsewhere both run and differ (resized vs rebuilt bias)
        outs_i, outs_e = interp(y), extrap(y)
    assert [tuple(o.shape[2:]) for o in outs_i] == [tuple(o.shape[2:]) for o in outs_e] == expected_hw(96, 80)
    assert not torch.allclose(outs_i[0], outs_e[0], atol=1e-4)
    # Tables are cached per (stage, size); the interpolation tables follow img_size, not the input.
    assert {k[1:3] for k in interp._contexts} == {(16, 16), (8, 8), (4, 4), (2, 2), (24, 20), (12, 10), (6, 5),
                                                  (3, 3)}
    ctx = interp.stage_context(0, (24, 20), torch.device('cpu'))
    assert ctx.cpb_hw == (16, 16) and ctx.cpb_pool_hw == (2, 2) and ctx.pool_hw == (3, 2)
    assert extrap.stage_context(0, (24, 20), torch.device('cpu')).cpb_hw == (24, 20)
    # Length scale: log(valid window positions + pooled length).
    assert torch.allclose(ctx.seq_length_scale[0], torch.log(torch.tensor([4. + 6])))
    assert torch.allclose(ctx.seq_length_scale[21], torch.log(torch.tensor([9. + 6])))


@pytest.mark.parametrize('extrapolation, size', [(False, (96, 80)), (False, (64, 97)), (False, (64, 64)),
                                                  (True, (65, 97))])
def test_cpb_bias_by_query_blocks(extrapolation, size):
    """The bias served in blocks of queries equals the whole bias computed the official way: gathered from the
    MLP's table, resized with F.interpolate on the key axes and then on the query axes (interpolation mode)."""
    model = small_model(img_size=64, pretrain_size=64, extrapolation=extrapolation).double()
    attn = model.stages[0].blocks[0].attn
    hw = ((size[0] + 3) // 4, (size[1] + 3) // 4)
    ctx = model.stage_context(0, hw, torch.device('cpu'))
    with torch.no_grad():
        provider = CPBBias(attn, ctx)
        full = provider.full()
        parts = torch.cat([provider(s, min(s + 7, full.shape[1])) for s in range(0, full.shape[1], 7)], dim=1)
        table = attn.cpb_fc2(attn.cpb_act(attn.cpb_fc1(ctx.cpb_coords.double())))
        expected = gather_cpb_bias(table, ctx.cpb_index_h, ctx.cpb_index_w)
        (h_t, w_t), (ph_t, pw_t), (ph, pw) = ctx.cpb_hw, ctx.cpb_pool_hw, ctx.pool_hw
        expected = F.interpolate(expected.reshape(2, h_t * w_t, ph_t, pw_t), (ph, pw), mode='bilinear')
        expected = expected.reshape(2, h_t * w_t, ph * pw).transpose(-1, -2).reshape(2, ph * pw, h_t, w_t)
        expected = F.interpolate(expected, hw, mode='bilinear').reshape(2, ph * pw, -1).transpose(-1, -2)
    assert full.shape == (2, hw[0] * hw[1], ph * pw)
    torch.testing.assert_close(full, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(parts, full, rtol=0, atol=0)


def test_img_size_changes_the_interpolated_bias():
    a = small_model(img_size=64, pretrain_size=64).eval()
    b = small_model(img_size=96, pretrain_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(a(x)[0], b(x)[0], atol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# Contract


@pytest.mark.parametrize('chunked', [True])
def test_with_cp_same_outputs_and_gradients(monkeypatch, chunked):
    """Per-block checkpointing, also around the attention's own checkpointed query chunks (nested)."""
    if chunked:
        monkeypatch.setattr(aa_module, 'MAX_CHUNK_ELEMENTS', 2000)
    plain = small_model().train()
    ckpt = small_model(with_cp=True).train()
    assert_with_cp_equivalent(plain, ckpt, torch.randn(1, 3, 64, 96))


def test_drop_path_rate():
    model = TransNeXt('tiny', drop_path_rate=0.4)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages for b in s.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.4) and len(rates) == 21
    assert rates == pytest.approx([0.4 * i / 20 for i in range(21)])  # official torch.linspace(0, rate, 21)
    assert isinstance(TransNeXt('tiny').stages[3].blocks[1].drop_path, nn.Identity)


# ------------------------------------------------------------------------------------------------------------------
# Ablation switches


def _outputs(model, size=(64, 96)):
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(3)))
    assert [tuple(o.shape[2:]) for o in outs] == expected_hw(*size)
    return outs


def _differs(kwargs):
    """The switch changes the parameters or the outputs (the shared weights copied over)."""
    base = small_model()
    ablated = TransNeXt(SMALL_ARCH, **kwargs)
    shared = {k: v for k, v in base.state_dict().items() if k in ablated.state_dict()
              and ablated.state_dict()[k].shape == v.shape}
    ablated.load_state_dict(shared, strict=False)
    outs_a, outs_b = _outputs(base), _outputs(ablated)
    return ablated, not torch.allclose(outs_a[-1], outs_b[-1], atol=1e-4)


def test_use_pooled_branch_switch():
    model, changed = _differs(dict(use_pooled_branch=False))
    attn = model.stages[0].blocks[0].attn
    assert changed and not hasattr(attn, 'sr') and not hasattr(attn, 'cpb_fc1')
    assert isinstance(model.stages[3].blocks[0].attn, Attention)  # stage 4 keeps full attention
    ctx = model.stage_context(0, (16, 24), torch.device('cpu'))
    assert torch.allclose(ctx.seq_length_scale[0], torch.log(torch.tensor([4.])))


def test_use_window_branch_switch():
    model, changed = _differs(dict(use_window_branch=False))
    attn = model.stages[0].blocks[0].attn
    assert changed and not hasattr(attn, 'learnable_tokens') and not hasattr(attn, 'relative_pos_bias_local')
    with pytest.raises(ValueError, match='branch'):
        TransNeXt(SMALL_ARCH, use_window_branch=False, use_pooled_branch=False)


def test_attention_scaling_switch():
    model, changed = _differs(dict(attention_scaling='dot_product'))
    assert changed and not any('temperature' in k for k in model.state_dict())
    with pytest.raises(ValueError, match='attention_scaling'):
        TransNeXt(SMALL_ARCH, attention_scaling='cosine')


def test_use_query_embedding_switch():
    model, changed = _differs(dict(use_query_embedding=False))
    assert changed and not any('query_embedding' in k for k in model.state_dict())


def test_sr_ratios_switch():
    model, changed = _differs(dict(sr_ratios=(4, 2, 2, 1)))
    assert changed and model.stages[0].blocks[0].attn.sr_ratio == 4
    assert model.stage_context(0, (16, 24), torch.device('cpu')).pool_hw == (4, 6)
    full = TransNeXt(SMALL_ARCH, sr_ratios=(8, 4, 1, 1))  # ratio 1 -> full attention, as in the official code
    assert isinstance(full.stages[2].blocks[0].attn, Attention)
    _outputs(full, (65, 97))


def test_ablations_train_at_odd_size():
    for kwargs in (dict(use_pooled_branch=False), dict(use_window_branch=False),
                   dict(attention_scaling='dot_product', use_query_embedding=False)):
        model = TransNeXt(SMALL_ARCH, **kwargs).train()
        sum(o.mean() for o in model(torch.randn(1, 3, 65, 97))).backward()


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints


@pytest.fixture(scope='module')
def source_model():
    return small_model()


def _load_via_init_cfg(path, arch=SMALL_ARCH, **kwargs):
    return load_via_init_cfg(TransNeXt, arch, path, **kwargs)


def _official(model, with_head=True):
    state = dict(model.to_official_state_dict())
    if with_head:
        c4 = model.stage_channels[-1]
        state.update({'head.weight': torch.randn(1000, c4), 'head.bias': torch.randn(1000)})
    return state


def test_official_layout_keys(source_model):
    official = _official(source_model, with_head=False)
    for key in ['patch_embed1.proj.weight', 'patch_embed1.norm.bias', 'patch_embed4.proj.weight', 'norm1.weight',
                'norm4.bias', 'block1.0.norm1.weight', 'block1.0.attn.q.weight', 'block1.0.attn.kv.bias',
                'block1.0.attn.sr.weight', 'block1.0.attn.norm.weight', 'block1.0.attn.proj.weight',
                'block1.0.attn.query_embedding', 'block1.0.attn.relative_pos_bias_local',
                'block1.0.attn.learnable_tokens', 'block1.0.attn.learnable_bias', 'block1.0.attn.temperature',
                'block3.1.attn.cpb_fc1.weight', 'block3.1.attn.cpb_fc2.bias', 'block4.0.attn.qkv.weight',
                'block4.0.attn.cpb_fc2.weight', 'block4.0.mlp.fc1.weight', 'block2.0.mlp.dwconv.dwconv.weight',
                'block2.0.mlp.fc2.bias']:
        assert key in official, key
    assert len(official) == len(source_model.state_dict())
    assert infer_transnext_arch(official_to_mmlightvit(official)) == dict(widths=SMALL_ARCH['widths'],
                                                                          depths=SMALL_ARCH['depths'])


def test_load_official_imagenet_layout(tmp_path, source_model):
    """ImageNet release: `model` wrapper, classifier head (dropped); stray non-persistent buffers are dropped."""
    state = _official(source_model)
    state['relative_pos_index1'] = torch.zeros(3, dtype=torch.long)
    state['block1.0.attn.seq_length_scale'] = torch.zeros(3, 1)
    path = tmp_path / 'transnext_micro_224_1k.pth'
    torch.save({'model': state}, path)
    assert_same_weights(_load_via_init_cfg(path), source_model.state_dict())
    with_norms = _load_via_init_cfg(path, out_norm_cfg=dict(type='LN2d'))  # our extra norms keep their init
    assert hasattr(with_norms, 'norm3')


def test_load_official_dense_prediction_layout(tmp_path, source_model):
    """mmdet / mmseg checkpoints of the official backbone: `backbone.` + official names, plus neck / heads."""
    state = {f'backbone.{k}': v for k, v in _official(source_model, with_head=False).items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 48, 1, 1)
    state['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    path = tmp_path / 'mask_rcnn_transnext.pth'
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, path)
    assert_same_weights(_load_via_init_cfg(path), source_model.state_dict())


def test_wrong_variant_is_an_error(tmp_path, source_model):
    path = tmp_path / 'micro_small.pth'
    torch.save({'model': _official(source_model)}, path)
    with pytest.raises(CheckpointError, match=r'depths \(1, 1, 2, 1\).*wrong arch'):
        _load_via_init_cfg(path, arch=dict(SMALL_ARCH, depths=(1, 1, 3, 1)))


def test_converter_tool(tmp_path):
    """tools/model_converters/to_mmlightvit.py: official ImageNet and official mmdet files, and --arch."""
    main = converter_main()
    torch.manual_seed(0)
    model = TransNeXt('micro', img_size=64, pretrain_size=64)
    official = _official(model)
    src = tmp_path / 'transnext_micro_224_1k.pth'
    torch.save(official, src)
    result = main([str(src), str(tmp_path / 'out.pth')])
    assert result['arch'] == 'micro' and result['layout'] == 'official'
    assert sorted(result['dropped']) == ['head.bias', 'head.weight']
    loaded = TransNeXt('micro', img_size=64, pretrain_size=64,
                       init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'out.pth')))
    loaded.init_weights()
    assert_same_weights(loaded, model.state_dict())

    detector = tmp_path / 'mask_rcnn.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in official.items() if not k.startswith('head.')}},
               detector)
    assert main([str(detector), str(tmp_path / 'det.pth'), '--arch', 'm'])['arch'] == 'micro'
    with pytest.raises(SystemExit, match='not --arch tiny'):
        main([str(src), str(tmp_path / 'x.pth'), '--arch', 'tiny'])



@pytest.mark.parametrize('extrapolation, size', [(False, (64, 96)), (False, (72, 100)), (True, (64, 96))])
def test_graph_tables_compute_what_the_cached_tables_do(monkeypatch, extrapolation, size):
    """The stage tables of a traced graph (``_context(..., in_graph=True)``: no cache, coordinates without
    torch.unique, pooling by averaging matrices, the interpolated bias resized with F.interpolate), evaluated
    eagerly: the backbone's outputs equal the cached path's within float rounding (ONNX export checks the graph
    itself). Interpolation runs at any size, extrapolation at multiples of 32."""
    model = small_model(img_size=128, pretrain_size=128, extrapolation=extrapolation, fast_inference=False).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model(x)
        monkeypatch.setattr(model, 'stage_context',
                            lambda index, hw, device: model._context(index, hw, device, in_graph=True))
        got = model(x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
