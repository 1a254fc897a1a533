"""TransNeXt: Robust Foveal Visual Perception for Vision Transformers (CVPR 2024, arXiv 2311.17132).
Official code: https://github.com/DaiShiResearch/TransNeXt (this follows its dense-prediction backbone,
``detection/*/transnext_native.py`` / ``segmentation/*/transnext_native.py``).

Four stages with overlapping patch embeddings (7x7 stride 4, then 3x3 stride 2; conv + LayerNorm). Blocks are
pre-norm: a token mixer, then a Convolutional GLU channel mixer, each with stochastic depth. Stages 1-3 mix tokens
with Aggregated Attention (a 3x3 sliding window at full resolution and a pooled summary of the map, one softmax,
length-scaled cosine similarity, query embedding, CPB bias for the pooled keys, learnable tokens after the softmax);
stage 4 with full self-attention using the same scaling and CPB bias. Every stage ends with ``norm{i}``, whose output
is both the stage's feature map and the next stage's input.

The attention core lives in :mod:`mmlightvit.models.backbones.transnext_attention` with two implementations
(``attn_impl='efficient'`` default, ``'reference'``). In eval mode without autograd on the CPU, the efficient one runs
in its flash inference form (the CPU flash-attention kernel, the position-bias tables cached per input size;
``fast_inference``).

Module tree: ``stem`` (= official ``patch_embed1``), ``stages.{i}.patch_embed`` (= ``patch_embed{i+1}``, stages
1-3), ``stages.{i}.blocks.{j}`` (= ``block{i+1}.{j}``, with the official sub-names: ``norm1``, ``attn.{q, kv, sr,
norm, proj, query_embedding, temperature, relative_pos_bias_local, learnable_tokens, learnable_bias, cpb_fc1,
cpb_fc2}`` / ``attn.qkv``, ``norm2``, ``mlp.{fc1, dwconv.dwconv, fc2}``), ``stages.{i}.norm`` (= ``norm{i+1}``).

Depends on torch, mmengine and mmlightvit only.
"""
import math
import re
from collections import OrderedDict
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mmlightvit.registry import MODELS
from mmlightvit.utils.checkpoint import CheckpointError
from ..layers import DropPath, LightBackbone, count_blocks, drop_path_rates
from .transnext_attention import (aggregated_attention, check_impl, cpb_axis_tables, cpb_coords_table,
                                  flash_aggregated_attention, flash_attention_supported,
                                  flash_rows_per_chunk, gather_cpb_bias, length_scale, linear_taps, padded_window_map,
                                  window_padding_mask)

ATTENTION_SCALINGS = ('cosine_length', 'dot_product')


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, (tuple, list)):
        assert len(value) == 2, value
        return int(value[0]), int(value[1])
    return int(value), int(value)


# ----------------------------------------------------------------------------------------------------------------
# Size-dependent context of a stage (tables without parameters, cached per runtime size by the backbone)


class StageContext:
    """What every block of a stage needs for one runtime size: the map and pooled sizes, the window padding mask,
    the per-query length scale and the CPB coordinate tables (for the runtime size in extrapolation mode, for the
    training size ``img_size`` in interpolation mode)."""

    def __init__(self, hw, pool_hw, padding_mask, seq_length_scale, cpb_coords=None, cpb_index_h=None,
                 cpb_index_w=None, cpb_hw=None, cpb_pool_hw=None, cpb_coords_w=0):
        self.hw, self.pool_hw = hw, pool_hw
        self.padding_mask, self.seq_length_scale = padding_mask, seq_length_scale
        self.cpb_coords, self.cpb_index_h, self.cpb_index_w = cpb_coords, cpb_index_h, cpb_index_w
        # Query / key grids the CPB tables were built for; the bias is resized from them when they differ from
        # the runtime ``hw`` / ``pool_hw`` (interpolation mode).
        self.cpb_hw, self.cpb_pool_hw = cpb_hw, cpb_pool_hw
        # Distinct coordinates along the width (the table's inner size), known without a device sync.
        self.cpb_coords_w = int(cpb_coords_w)
        self._flash_layout: Optional['FlashCPBLayout'] = None

    def flash_layout(self) -> 'FlashCPBLayout':
        """The index tables of the flash inference path (built on first use, then kept)."""
        if self._flash_layout is None:
            self._flash_layout = FlashCPBLayout(self)
        return self._flash_layout


#: Rows of the CPB coordinate table evaluated at once. Large inputs in extrapolation mode have large tables
#: (800x1280, stage 1: ~400 x 640 rows, a 512-wide hidden layer of ~0.5 GB): they run in row blocks, checkpointed
#: when gradients are needed, so only the (rows, heads) output is kept.
CPB_ROWS_PER_BLOCK = 2**16


def _cpb_mlp_rows(attn: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    return attn.cpb_fc2(attn.cpb_act(attn.cpb_fc1(coords)))


def cpb_mlp(attn: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    """``cpb_fc2(relu(cpb_fc1(coords)))`` row block by row block (same numbers, bounded memory)."""
    rows = coords.shape[0]
    if rows <= CPB_ROWS_PER_BLOCK:
        return _cpb_mlp_rows(attn, coords)
    grad = torch.is_grad_enabled() and any(p.requires_grad for p in attn.cpb_fc1.parameters())
    parts = []
    for start in range(0, rows, CPB_ROWS_PER_BLOCK):
        block = coords[start:start + CPB_ROWS_PER_BLOCK]
        parts.append(checkpoint(_cpb_mlp_rows, attn, block, use_reentrant=False) if grad
                     else _cpb_mlp_rows(attn, block))
    return torch.cat(parts, dim=0)


class CPBBias:
    """The CPB bias of one attention layer for the runtime size, by blocks of queries: ``bias(start, end)`` is
    ``(heads, end - start, P)`` for queries ``start..end`` (so the efficient attention never holds the whole
    ``N x P`` bias); ``bias.full()`` is ``bias(0, N)``.

    Extrapolation (or a runtime size equal to the table's): gathered from the MLP's output on the coordinate table.
    Interpolation: the bias of the training size (``img_size``) resized bilinearly on the key axes
    (``F.interpolate``), then on the query axes (the same ``align_corners=False`` taps, evaluated only for the
    requested queries), the official order.
    """

    def __init__(self, attn: nn.Module, ctx: StageContext):
        table = cpb_mlp(attn, ctx.cpb_coords.to(attn.cpb_fc1.weight.dtype))  # (U_h * U_w, heads)
        self.heads = table.shape[1]
        self.width = ctx.hw[1]
        self.tokens = ctx.hw[0] * ctx.hw[1]
        (h_t, w_t), (ph_t, pw_t) = ctx.cpb_hw, ctx.cpb_pool_hw
        (height, width), (pool_h, pool_w) = ctx.hw, ctx.pool_hw
        self.resize_queries = (h_t, w_t) != (height, width)
        if not self.resize_queries and (ph_t, pw_t) == (pool_h, pool_w):
            self.table = table.transpose(0, 1).reshape(self.heads, -1, ctx.cpb_coords_w)
            self.index_h, self.index_w = ctx.cpb_index_h, ctx.cpb_index_w
            self.keys_resized = None
            return
        bias = gather_cpb_bias(table, ctx.cpb_index_h, ctx.cpb_index_w, ctx.cpb_coords_w)  # (heads, N_t, P_t)
        if (ph_t, pw_t) != (pool_h, pool_w):
            bias = F.interpolate(bias.reshape(self.heads, h_t * w_t, ph_t, pw_t), (pool_h, pool_w), mode='bilinear')
        self.keys_resized = bias.reshape(self.heads, h_t, w_t, pool_h * pool_w)
        if self.resize_queries:
            device = bias.device
            self.taps_h = linear_taps(h_t, height, device)
            self.taps_w = linear_taps(w_t, width, device)

    def full(self) -> torch.Tensor:
        return self(0, self.tokens)

    def __call__(self, start: int, end: int) -> torch.Tensor:
        queries = torch.arange(start, end, device=(self.table if self.keys_resized is None
                                                   else self.keys_resized).device)
        qy, qx = queries // self.width, queries % self.width
        if self.keys_resized is None:
            bias = self.table[:, self.index_h[qy][:, :, None], self.index_w[qx][:, None, :]]
            return bias.reshape(self.heads, end - start, -1)
        src = self.keys_resized
        if not self.resize_queries:
            return src[:, qy, qx]
        (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = self.taps_h, self.taps_w
        y0, y1, x0, x1 = y0[qy], y1[qy], x0[qx], x1[qx]
        dtype = src.dtype
        wy0, wy1 = wy0[qy].to(dtype)[:, None], wy1[qy].to(dtype)[:, None]
        wx0, wx1 = wx0[qx].to(dtype)[:, None], wx1[qx].to(dtype)[:, None]
        return wy0 * (wx0 * src[:, y0, x0] + wx1 * src[:, y0, x1]) + wy1 * (wx0 * src[:, y1, x0] + wx1 * src[:, y1, x1])


def axis_taps(in_size: int, out_size: int, device: Optional[torch.device] = None):
    """Linear resizing of one axis ``in_size -> out_size`` (``align_corners=False``, as ``F.interpolate``) as a list
    of ``(index, weight)`` taps, each ``(out_size,)`` (weights float64): one identity tap when the sizes are equal."""
    if in_size == out_size:
        return [(torch.arange(out_size, device=device), torch.ones(out_size, dtype=torch.float64, device=device))]
    index0, index1, weight0, weight1 = linear_taps(in_size, out_size, device)
    return [(index0, weight0), (index1, weight1)]


class FlashCPBLayout:
    """Index tables (size only, per stage and runtime size) of the flash inference path's CPB bias.

    The bias of query ``(qy, qx)`` to pooled key ``(py, px)`` is the MLP's table ``T[u, v]`` (``u`` indexes the
    distinct height coordinates, ``v`` the width ones) on the table grids (``ctx.cpb_hw`` / ``ctx.cpb_pool_hw``),
    resized linearly to the runtime grids. The official code resizes it bilinearly on the key axes and then on the
    query axes; both are products of 1-D linear maps, one per axis, so the same bias factors into

    * a height part, per layer and runtime size (cached, small): ``G[qy, py, v] = sum w_qy w_py T[u(qy', py'), v]``
      over the linear taps of the query and key height axes (``y_taps``: per tap, the ``(H, Ph)`` rows ``u`` and
      weights);
    * a width part, per chunk of query rows and forward: the columns ``v(qx', px')`` of ``G[qy]`` on the table's
      width grids (``columns``, a gather of whole runs of ``Ph`` values), resized bilinearly to the runtime width
      grids ``(W, Pw)`` with ``F.interpolate`` on a channels-last map whose channels are ``py``: the result is
      already the attention mask's memory layout, with the pooled keys in ``(px, py)`` order.
    """

    def __init__(self, ctx: 'StageContext'):
        (h_t, w_t), (ph_t, pw_t) = ctx.cpb_hw, ctx.cpb_pool_hw
        (height, width), (pool_h, pool_w) = ctx.hw, ctx.pool_hw
        device = ctx.cpb_index_h.device
        self.width, self.pool_hw, self.num_w = width, (pool_h, pool_w), ctx.cpb_coords_w
        self.y_taps = [(ctx.cpb_index_h[iq][:, ik], wq[:, None] * wk[None, :])
                       for iq, wq in axis_taps(h_t, height, device) for ik, wk in axis_taps(ph_t, pool_h, device)]
        self.columns = ctx.cpb_index_w.reshape(-1)  # (w_t * pw_t,) into v
        self.width_grids = (w_t, pw_t)
        self.resize_width = (w_t, pw_t) != (width, pool_w)


class FlashCPBBias:
    """The CPB bias of one attention layer for the flash inference path, by chunks of query rows:
    ``bias(start, end)`` is ``(heads, (end - start) * W, Pw * Ph)`` for map rows ``start..end``, the pooled keys in
    ``(px, py)`` order (see :class:`FlashCPBLayout`).

    Holds the layer's height part ``(heads, H, U_w, Ph)``, split into the chunks of rows the flash attention asks
    for: ``heads * H * Ph * U_w`` values (about 6M for a first-stage layer of TransNeXt-Tiny at 800x1280 with
    ``img_size=800``), where the whole bias has ``heads * H * W * Ph * Pw`` (192M there).
    """

    def __init__(self, table: torch.Tensor, layout: FlashCPBLayout):
        heads, num_w = table.shape[1], layout.num_w
        pool_h, pool_w = layout.pool_hw
        table = table.transpose(0, 1).reshape(heads, -1, num_w)  # (heads, U_h, U_w)
        rows = None
        for index, weight in layout.y_taps:
            term = table[:, index] * weight.to(table.dtype)[None, :, :, None]  # (heads, H, Ph, U_w)
            rows = term if rows is None else rows.add_(term)
        rows = rows.transpose(2, 3)  # (heads, H, U_w, Ph): the width part gathers runs of Ph values
        self.layout, self.heads, self.pool_h, self.pool_len = layout, heads, pool_h, pool_h * pool_w
        # Kept as the contiguous height parts of the chunks of rows the flash attention will ask for.
        height = rows.shape[1]
        step = flash_rows_per_chunk(heads, layout.width, self.pool_len)
        self.chunks = {(start, min(start + step, height)): rows[:, start:start + step].reshape(-1, num_w, pool_h)
                       for start in range(0, height, step)}

    def height_part(self, start: int, end: int) -> torch.Tensor:
        """``(heads * (end - start), U_w, Ph)``: the height part of map rows ``start..end``."""
        rows = self.chunks.get((start, end))
        if rows is None:  # another chunking (FLASH_CHUNK_ELEMENTS changed): reassemble
            parts = [part.view(self.heads, end_ - start_, self.layout.num_w, self.pool_h)
                     for (start_, end_), part in self.chunks.items()]
            rows = torch.cat(parts, dim=1)[:, start:end].reshape(-1, self.layout.num_w, self.pool_h)
        return rows

    def __call__(self, start: int, end: int) -> torch.Tensor:
        layout = self.layout
        bias = self.height_part(start, end).index_select(1, layout.columns)  # (heads * rows, w_t * pw_t, Ph)
        if layout.resize_width:
            # (N, C, H, W) = (heads * rows, Ph, w_t, pw_t) in channels-last memory, resized to (W, Pw)
            bias = bias.view(bias.shape[0], *layout.width_grids, self.pool_h).permute(0, 3, 1, 2)
            bias = F.interpolate(bias, size=(layout.width, layout.pool_hw[1]), mode='bilinear')
            bias = bias.permute(0, 2, 3, 1)
        return bias.reshape(self.heads, (end - start) * layout.width, self.pool_len)


def keys_in_xy_order(t: torch.Tensor, pool_hw: Tuple[int, int]) -> torch.Tensor:
    """``(B, heads, Ph * Pw, d)`` pooled keys or values (row-major) reordered to ``(px, py)`` order, the key order
    of :class:`FlashCPBBias`."""
    batch, heads, _, dim = t.shape
    return t.reshape(batch, heads, pool_hw[0], pool_hw[1], dim).transpose(2, 3).reshape(batch, heads, -1, dim)


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


class OverlapPatchEmbed(nn.Module):
    """``k x k`` conv with stride ``s`` and padding ``k // 2`` (output ``ceil(n / s)``), then LayerNorm (eps 1e-5)
    over the channels; NCHW in and out."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DWConv(nn.Module):
    """Depth-wise 3x3 conv on a token sequence ``(B, N, C)`` of an ``H x W`` map (key ``dwconv.dwconv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        batch, tokens, channels = x.shape
        # The tokens viewed as a channels-last map: no transposing copies in and out, and the product with the
        # GLU's value half stays contiguous (several times faster on the CPU than a channels-first map).
        x = self.dwconv(x.reshape(batch, hw[0], hw[1], channels).permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1).reshape(batch, tokens, channels)


class ConvolutionalGLU(nn.Module):
    """``fc1`` to ``2 x hidden``, split into (gate, value); depth-wise 3x3 conv + GELU on the gate, times value,
    ``fc2``. ``hidden = int(2 * int(C * mlp_ratio) / 3)`` (official)."""

    def __init__(self, channels: int, mlp_ratio: float):
        super().__init__()
        hidden = int(2 * int(channels * mlp_ratio) / 3)
        self.fc1 = nn.Linear(channels, hidden * 2)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], by_rows: bool = False) -> torch.Tensor:
        """``by_rows``: after ``fc1``, run the rest a few map rows at a time (inference: same numbers, see
        :meth:`forward_by_rows`)."""
        if by_rows:
            return self.forward_by_rows(x, hw)
        x, v = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(self.act(self.dwconv(x, hw)) * v)

    #: Hidden activations per chunk of rows in :meth:`forward_by_rows`: 2**20 floats (4 MB) stay in the cache
    #: between the depth-wise conv, the gating and ``fc2``.
    rows_chunk_elements = 2**20

    def forward_by_rows(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """:meth:`forward` a few map rows at a time: ``fc1`` on a chunk of rows, then the depth-wise conv, GELU,
        gating and ``fc2`` of every row whose 3x3 neighbourhood is complete (the last row of a chunk waits for the
        next chunk's first). The full-size hidden temporaries (100-200 MB each in TransNeXt-Tiny's first stage at
        800x1280, which the allocator maps fresh from the system on every forward) become a few MB that stay in the
        cache. Identical outputs; about 1.7x faster in the first two stages on a 2-core CPU. Used without autograd
        only."""
        batch, tokens, channels = x.shape
        height, width = hw
        x = x.reshape(batch, height, width, channels)
        conv = self.dwconv.dwconv
        hidden = conv.weight.shape[0]
        out = None  # allocated with the first chunk's dtype (autocast may change it)
        step = max(1, self.rows_chunk_elements // (width * hidden))
        done = 0  # rows of ``out`` written
        gate = value = None  # held rows: gate from max(done - 1, 0), value from done
        for start in range(0, height, step):
            end = min(start + step, height)
            new_gate, new_value = self.fc1(x[:, start:end]).chunk(2, dim=-1)
            gate = new_gate if gate is None else torch.cat([gate, new_gate], dim=1)
            value = new_value if value is None else torch.cat([value, new_value], dim=1)
            first = max(done - 1, 0)
            ready = height if end == height else end - 1  # rows done..ready have their neighbourhood
            if ready > done:
                # Gate rows first..ready (+ the row below when there is one), channels-last; the conv's zero
                # padding only reaches rows that are not taken, except at the map's own edges.
                y = F.conv2d(gate[:, :min(ready + 1, height) - first].permute(0, 3, 1, 2), conv.weight, conv.bias,
                             padding=1, groups=hidden)
                y = y[:, :, done - first:ready - first].permute(0, 2, 3, 1)
                y = self.fc2(self.act(y).mul_(value[:, :ready - done]))
                if out is None:
                    out = y.new_empty(batch, height, width, channels)
                out[:, done:ready] = y
            gate = gate[:, max(ready - 1, 0) - first:]
            value = value[:, ready - done:]
            done = ready
        return out.reshape(batch, tokens, channels)


def _inverse_norm(t: torch.Tensor) -> torch.Tensor:
    """``1 / max(||t||, 1e-12)`` over the last axis, keeping it: ``t * _inverse_norm(t)`` is ``F.normalize(t)``."""
    return torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min_(1e-12).reciprocal_()


class _AttentionBase(nn.Module):
    """Shared parameters and query scaling of both attention kinds."""

    def _init_scaling(self, num_heads: int, head_dim: int, attention_scaling: str, use_query_embedding: bool):
        if attention_scaling not in ATTENTION_SCALINGS:
            raise ValueError(f'attention_scaling must be one of {ATTENTION_SCALINGS}, got {attention_scaling!r}.')
        self.attention_scaling = attention_scaling
        if attention_scaling == 'cosine_length':
            # softplus(temperature) starts at 1 / 0.24.
            self.temperature = nn.Parameter(torch.log((torch.ones(num_heads, 1, 1) / 0.24).exp() - 1))
        self.query_embedding = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, 1, head_dim), mean=0, std=0.02)) \
            if use_query_embedding else None

    def _scale_queries(self, q: torch.Tensor, seq_length_scale: torch.Tensor) -> torch.Tensor:
        """Cosine: ``(normalize(q) + query_embedding) * softplus(temperature) * log(length)``; dot product:
        ``(q + query_embedding) * head_dim ** -0.5``."""
        if self.attention_scaling == 'cosine_length':
            q = F.normalize(q, dim=-1)
            if self.query_embedding is not None:
                q = q + self.query_embedding
            return q * F.softplus(self.temperature) * seq_length_scale.to(q.dtype)
        if self.query_embedding is not None:
            q = q + self.query_embedding
        return q * self.head_dim**-0.5

    def _keys(self, k: torch.Tensor) -> torch.Tensor:
        return F.normalize(k, dim=-1) if self.attention_scaling == 'cosine_length' else k

    def _init_cpb(self, num_heads: int):
        self.cpb_fc1 = nn.Linear(2, 512, bias=True)
        self.cpb_act = nn.ReLU(inplace=True)
        self.cpb_fc2 = nn.Linear(512, num_heads, bias=True)
        # Flash inference path: the MLP's tables and the height parts of the bias, per size (see flash_cpb_bias).
        self._cpb_cache: 'OrderedDict[tuple, Union[torch.Tensor, FlashCPBBias]]' = OrderedDict()
        self._cpb_weights: Optional[List[torch.Tensor]] = None

    #: Entries (MLP tables + per-size height parts) kept per layer by the flash inference path, least recently used
    #: dropped first. TransNeXt-Tiny holds 170 MB of height parts for 800x1280 with img_size=800 (40 MB at 320x512).
    max_cached_tables = 8

    def use_flash(self, flash: bool, q: torch.Tensor) -> bool:
        """Whether this forward takes the flash inference form (asked by the backbone, and possible here)."""
        return flash and not self.training and self.impl == 'efficient' and flash_attention_supported(q)

    def clear_cpb_cache(self) -> None:
        if hasattr(self, '_cpb_cache'):
            self._cpb_cache.clear()
            self._cpb_weights = None

    def train(self, mode: bool = True):
        if mode:
            self.clear_cpb_cache()  # the cache serves eval mode only; training always rebuilds the bias
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.clear_cpb_cache()  # device / dtype moves
        return super()._apply(fn, *args, **kwargs)

    def _cpb_weights_unchanged(self) -> bool:
        """Whether the CPB MLP's weights equal the copy taken when the cache was filled (an exact comparison of a
        few thousand numbers: catches optimiser steps, checkpoint loading and ``.data`` writes alike)."""
        params = [self.cpb_fc1.weight, self.cpb_fc1.bias, self.cpb_fc2.weight, self.cpb_fc2.bias]
        saved = self._cpb_weights
        if saved is not None and all(a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
                                     and torch.equal(a, b) for a, b in zip(saved, params)):
            return True
        self._cpb_weights = [p.detach().clone() for p in params]
        return False

    def _cached(self, key: tuple, build):
        value = self._cpb_cache.get(key)
        if value is None:
            value = self._cpb_cache[key] = build()
            while len(self._cpb_cache) > self.max_cached_tables:
                self._cpb_cache.popitem(last=False)
        else:
            self._cpb_cache.move_to_end(key)
        return value

    @torch.no_grad()
    def flash_cpb_bias(self, ctx: StageContext) -> FlashCPBBias:
        """The CPB bias for the flash inference path (eval mode, no autograd), built once per runtime size and kept
        while the CPB weights stay the same: the MLP's output per table grid (one per stage in interpolation mode,
        per size in extrapolation mode) and the per-size height part."""
        if not self._cpb_weights_unchanged():
            self._cpb_cache.clear()
        dtype, device = self.cpb_fc1.weight.dtype, self.cpb_fc1.weight.device
        table = self._cached(('mlp', ctx.cpb_hw, ctx.cpb_pool_hw, dtype, device),
                             lambda: cpb_mlp(self, ctx.cpb_coords.to(dtype)))
        return self._cached(('rows', ctx.hw, ctx.pool_hw, dtype, device),
                            lambda: FlashCPBBias(table, ctx.flash_layout()))


class AggregatedAttention(_AttentionBase):
    """Aggregated Attention of TransNeXt stages 1-3 (official parameter names).

    Ablations: ``use_pooled_branch=False`` (window only: no ``sr``/``norm``/CPB), ``use_window_branch=False``
    (pooled only: no local bias / learnable tokens), ``attention_scaling='dot_product'`` (plain
    ``q k^T / sqrt(d)``, no temperature, no length scale), ``use_query_embedding=False``.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, window_size: int = 3, qkv_bias: bool = True,
                 use_pooled_branch: bool = True, use_window_branch: bool = True,
                 attention_scaling: str = 'cosine_length', use_query_embedding: bool = True,
                 impl: str = 'efficient'):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} should be divisible by num_heads {num_heads}.')
        if not (use_pooled_branch or use_window_branch):
            raise ValueError('Aggregated attention needs the pooled branch, the window branch or both.')
        if window_size % 2 != 1:
            raise ValueError(f'window_size must be odd, got {window_size}.')
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.sr_ratio, self.window_size, self.local_len = sr_ratio, window_size, window_size**2
        self.use_pooled_branch, self.use_window_branch = use_pooled_branch, use_window_branch
        self.impl = check_impl(impl)
        self._init_scaling(num_heads, self.head_dim, attention_scaling, use_query_embedding)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if use_pooled_branch:
            self.sr = nn.Conv2d(dim, dim, kernel_size=1)
            self.norm = nn.LayerNorm(dim)
            self.act = nn.GELU()
            self._init_cpb(num_heads)
        if use_window_branch:
            self.relative_pos_bias_local = nn.Parameter(
                nn.init.trunc_normal_(torch.empty(num_heads, self.local_len), mean=0, std=0.0004))
            self.learnable_tokens = nn.Parameter(
                nn.init.trunc_normal_(torch.empty(num_heads, self.head_dim, self.local_len), mean=0, std=0.02))
            self.learnable_bias = nn.Parameter(torch.zeros(num_heads, 1, self.local_len))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], ctx: StageContext, flash: bool = False) -> torch.Tensor:
        """``flash``: the backbone allows the flash inference form (taken where :meth:`use_flash` agrees)."""
        batch, tokens, channels = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        q = self.q(x).reshape(batch, tokens, heads, head_dim).permute(0, 2, 1, 3)
        if self.use_pooled_branch and self.use_flash(flash, q):  # q's dtype: autocast may have changed it
            return self.forward_flash(x, q, hw, ctx)
        q_scaled = self._scale_queries(q, ctx.seq_length_scale)

        k_local = v_local = local_extra = None
        if self.use_window_branch:
            k_local, v_local = self.kv(x).reshape(batch, tokens, 2 * heads, head_dim).permute(0, 2, 1, 3).chunk(2, 1)
            k_local = self._keys(k_local)
            local_extra = F.normalize(q, dim=-1) @ self.learnable_tokens + self.learnable_bias

        k_pool = v_pool = None
        if self.use_pooled_branch:
            k_pool, v_pool = self._pooled_keys_values(x, hw, ctx)

        out = aggregated_attention(
            q_scaled, k_local, v_local, k_pool, v_pool, hw,
            local_bias=self.relative_pos_bias_local if self.use_window_branch else None,
            pool_bias=CPBBias(self, ctx) if self.use_pooled_branch else None, local_extra=local_extra,
            window_size=self.window_size, padding_mask=ctx.padding_mask, impl=self.impl)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))

    def _pooled_keys_values(self, x: torch.Tensor, hw: Tuple[int, int], ctx: StageContext):
        """Pooled keys (normalised for cosine scaling) and values, ``(B, heads, Ph * Pw, d)`` each."""
        batch, _, channels = x.shape
        pool_h, pool_w = ctx.pool_hw
        x_ = x.reshape(batch, hw[0], hw[1], channels).permute(0, 3, 1, 2)  # channels-last view, as in DWConv
        x_ = F.adaptive_avg_pool2d(self.act(self.sr(x_)), (pool_h, pool_w))
        x_ = self.norm(x_.permute(0, 2, 3, 1).reshape(batch, pool_h * pool_w, channels))
        kv = self.kv(x_).reshape(batch, pool_h * pool_w, 2 * self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        k_pool, v_pool = kv.chunk(2, 1)
        return self._keys(k_pool), v_pool

    @torch.no_grad()
    def forward_flash(self, x: torch.Tensor, q: torch.Tensor, hw: Tuple[int, int], ctx: StageContext) -> torch.Tensor:
        """The flash inference form of :meth:`forward` (its numbers; no autograd), given the queries ``q`` (``(B,
        heads, N, d)``, before scaling): queries normalised once, into a contiguous tensor that becomes the scaled
        queries in place; window keys normalised and values copied straight into zero-bordered maps
        (:func:`padded_window_map`); the attention core :func:`flash_aggregated_attention` with the cached position
        bias, its output already in ``proj``'s layout."""
        batch, tokens, channels = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        queries = torch.mul(q, _inverse_norm(q), out=q.new_empty(q.shape))  # F.normalize(q), contiguous
        k_local = v_local = local_extra = None
        if self.use_window_branch:
            kv = self.kv(x).reshape(batch, tokens, 2 * heads, head_dim).transpose(1, 2)
            k_local, v_local = kv[:, :heads], kv[:, heads:]
            k_local = padded_window_map(k_local, hw, self.window_size,
                                        _inverse_norm(k_local) if self.attention_scaling == 'cosine_length' else None)
            v_local = padded_window_map(v_local, hw, self.window_size)
            local_extra = torch.matmul(queries, self.learnable_tokens).add_(self.learnable_bias)
        if self.attention_scaling == 'cosine_length':
            if self.query_embedding is not None:
                queries.add_(self.query_embedding)
            queries.mul_(F.softplus(self.temperature) * ctx.seq_length_scale.to(q.dtype))
        else:
            queries = torch.add(q, self.query_embedding if self.query_embedding is not None else 0,
                                out=queries).mul_(head_dim**-0.5)
        k_pool, v_pool = self._pooled_keys_values(x, hw, ctx)
        out = flash_aggregated_attention(
            queries, k_local, v_local, keys_in_xy_order(k_pool, ctx.pool_hw), keys_in_xy_order(v_pool, ctx.pool_hw),
            hw, self.flash_cpb_bias(ctx), local_bias=self.relative_pos_bias_local if self.use_window_branch else None,
            local_extra=local_extra, window_size=self.window_size, padding_mask=ctx.padding_mask)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))


class Attention(_AttentionBase):
    """Full self-attention of stage 4 (official names ``qkv``, ``proj``, ``query_embedding``, ``temperature``,
    ``cpb_fc1``, ``cpb_fc2``): the same scaling as Aggregated Attention with ``log(N)``, CPB bias over all pairs.
    Runs through the same attention core (pooled branch = all tokens, no window)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attention_scaling: str = 'cosine_length',
                 use_query_embedding: bool = True, impl: str = 'efficient'):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} should be divisible by num_heads {num_heads}.')
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.impl = check_impl(impl)
        self._init_scaling(num_heads, self.head_dim, attention_scaling, use_query_embedding)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self._init_cpb(num_heads)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], ctx: StageContext, flash: bool = False) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3 * self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.chunk(3, dim=1)
        q, k = self._scale_queries(q, ctx.seq_length_scale), self._keys(k)
        # The dtype of the linear layer's output: under autocast q is promoted by the float32 scaling, k and v not.
        if self.use_flash(flash, qkv):
            out = flash_aggregated_attention(q, None, None, keys_in_xy_order(k, ctx.pool_hw),
                                             keys_in_xy_order(v, ctx.pool_hw), hw, self.flash_cpb_bias(ctx))
        else:
            out = aggregated_attention(q, None, None, k, v, hw, pool_bias=CPBBias(self, ctx), impl=self.impl)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))


class TransNeXtBlock(nn.Module):
    """Pre-norm block (LayerNorm eps 1e-6): ``x + drop_path(attn(norm1(x)))``, ``x + drop_path(mlp(norm2(x)))``.
    ``sr_ratio == 1`` selects full attention, as in the official code."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, drop_path: float = 0.,
                 window_size: int = 3, **attn_kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if sr_ratio == 1:
            attn_kwargs = {k: v for k, v in attn_kwargs.items()
                           if k in ('qkv_bias', 'attention_scaling', 'use_query_embedding', 'impl')}
            self.attn = Attention(dim, num_heads, **attn_kwargs)
        else:
            self.attn = AggregatedAttention(dim, num_heads, sr_ratio, window_size, **attn_kwargs)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ConvolutionalGLU(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], ctx: StageContext, flash: bool = False) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw, ctx, flash))
        # The channel mixer by rows where large temporaries cost most: CPU inference (GPUs cache their memory).
        return x + self.drop_path(self.mlp(self.norm2(x), hw, by_rows=flash and x.device.type == 'cpu'))


class TransNeXtStage(nn.Module):
    """``patch_embed`` (``nn.Identity`` in stage 0, whose embedding is the backbone's ``stem``), ``blocks`` and the
    stage norm ``norm`` (LayerNorm eps 1e-6: the stage output and the next stage's input)."""

    def __init__(self, patch_embed: nn.Module, blocks: List[nn.Module], channels: int):
        super().__init__()
        self.patch_embed = patch_embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(channels, eps=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint layouts

#: Non-persistent buffers of the official models (never in their checkpoints, dropped if a file has them).
_OFFICIAL_BUFFERS = re.compile(r'(relative_pos_index\d|relative_coords_table\d|.*seq_length_scale|.*padding_mask)$')


def official_to_mmlightvit(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Official keys (ImageNet or dense-prediction backbone, no ``backbone.`` prefix) -> ours; ``head.*`` and
    non-persistent buffers are dropped."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith('head.') or _OFFICIAL_BUFFERS.match(key):
            continue
        m = re.match(r'patch_embed(\d)\.(.*)$', key)
        if m:
            stage = int(m.group(1)) - 1
            key = f'stem.{m.group(2)}' if stage == 0 else f'stages.{stage}.patch_embed.{m.group(2)}'
        else:
            m = re.match(r'block(\d)\.(\d+)\.(.*)$', key) or re.match(r'norm(\d)\.()(.*)$', key)
            if m and key.startswith('block'):
                key = f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.{m.group(3)}'
            elif m:
                key = f'stages.{int(m.group(1)) - 1}.norm.{m.group(3)}'
        out[key] = value
    return out


def mmlightvit_to_official(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Our keys -> the official layout (no head; our optional output norms ``norm{i}`` are left out)."""
    out = OrderedDict()
    for key, value in state.items():
        if re.match(r'norm\d\.', key):
            continue
        if key.startswith('stem.'):
            key = 'patch_embed1.' + key[len('stem.'):]
        else:
            m = re.match(r'stages\.(\d)\.(patch_embed|blocks|norm)\.(.*)$', key)
            if m:
                stage, part, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
                key = {'patch_embed': f'patch_embed{stage}.{rest}', 'blocks': f'block{stage}.{rest}',
                       'norm': f'norm{stage}.{rest}'}[part]
        out[key] = value
    return out


def is_official_layout(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(('patch_embed1.', 'block1.')) for k in state)


# ----------------------------------------------------------------------------------------------------------------
# Backbone


@MODELS.register_module()
class TransNeXt(LightBackbone):
    """TransNeXt backbone (Micro / Tiny / Small / Base), the official dense-prediction model.

    Args:
        arch (str | dict): ``'micro'``, ``'tiny'``, ``'small'``, ``'base'`` (aliases ``'m'``, ``'t'``, ``'s'``,
            ``'b'``, ``'transnext_tiny'``, ...) or ``dict(widths=(4 ints), depths=(4 ints), num_heads=(4 ints)
            [, mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)])``.
        in_channels (int): input channels.
        img_size (int | tuple): the size the CPB bias tables are built for in interpolation mode (the official
            ``img_size``: 224 for ImageNet, e.g. 800 / 512 for COCO / ADE20K fine-tuning).
        pretrain_size (int | tuple, optional): ImageNet pre-training size that scales the relative coordinates
            (default ``img_size``; 224 for the released weights).
        extrapolation (bool): the paper's test modes. False (interpolation, official default): the CPB bias is
            computed for ``img_size`` and resized bilinearly to the runtime size. True (extrapolation): computed
            for the runtime size. Both equal each other when the input is ``img_size``. Tables are cached per size.
        attn_impl (str): ``'efficient'`` (default) or ``'reference'``, same math (see
            :mod:`mmlightvit.models.backbones.transnext_attention`).
        fast_inference (bool): with ``attn_impl='efficient'``, in eval mode without autograd
            (``torch.no_grad()``, ``torch.inference_mode()``), float32 / float64 on the CPU, eagerly: the flash form
            of the attention (:func:`~mmlightvit.models.backbones.transnext_attention.flash_aggregated_attention`,
            the CPU flash-attention kernel) with the position-bias tables of each layer cached per input size
            (checked against the CPB weights on every forward, dropped in train mode), and, on the CPU, the channel
            mixer a few map rows at a time (:meth:`ConvolutionalGLU.forward_by_rows`). Same outputs within float
            rounding; several times faster, a fraction of the memory. Elsewhere (training, autograd, other devices /
            dtypes, ``torch.compile``, tracing, export) and with False, the code path of training. The attribute can
            be switched at any time.
        drop_path_rate (float): stochastic depth, linear over all blocks (official detection: 0.4 / 0.6 / 0.7 for
            Tiny / Small / Base; ImageNet 0.15 / 0.25 / 0.45 / 0.6 for Micro-Base).
        sr_ratios (Sequence[int], optional): pooling ratio per stage (default the arch's ``(8, 4, 2, 1)``); a
            stage with ratio 1 uses full attention, as in the official code. The pooled grid is
            ``(H // sr, W // sr)`` (at least 1x1).
        window_size (int): sliding window of Aggregated Attention (3).
        use_pooled_branch, use_window_branch (bool): ablations of Aggregated Attention's two branches.
        attention_scaling (str): ``'cosine_length'`` (official) or ``'dot_product'`` (plain scaled dot product, no
            temperature or length scale).
        use_query_embedding (bool): ablation of the learnable query embedding.
        qkv_bias (bool): biases of ``q`` / ``kv`` / ``qkv`` (True in every released model).
        out_indices, frozen_stages, norm_eval, with_cp, out_norm_cfg, init_cfg: see :class:`LightBackbone`.

    Inputs of any size run: stage ``i`` outputs ``ceil(H / 2**(i + 2))`` (the overlapping convs pad), the pooled
    grid follows the runtime size, the window is masked at the borders.
    """

    arch_settings = {
        'micro': dict(widths=(48, 96, 192, 384), depths=(2, 2, 15, 2), num_heads=(2, 4, 8, 16)),
        'tiny': dict(widths=(72, 144, 288, 576), depths=(2, 2, 15, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(widths=(72, 144, 288, 576), depths=(5, 5, 22, 5), num_heads=(3, 6, 12, 24)),
        'base': dict(widths=(96, 192, 384, 768), depths=(5, 5, 23, 5), num_heads=(4, 8, 16, 32)),
    }
    arch_aliases = {}
    for _name in ('micro', 'tiny', 'small', 'base'):
        arch_aliases[_name[0]] = _name
        arch_aliases['transnext_' + _name] = _name
    del _name
    fixed_size_export = (
        'TransNeXt keys its per-size tables by the map size as Python ints (int() fixes the traced size), and '
        'builds them with torch.unique (the number of distinct position-bias coordinates depends on the data) '
        'and adaptive pooling over size-dependent bins')

    @classmethod
    def detect_layout(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        return 'official' if is_official_layout(state_dict) else 'mmlightvit'

    @classmethod
    def infer_arch(cls, state_dict: Dict[str, torch.Tensor]) -> dict:
        if is_official_layout(state_dict):
            state_dict = official_to_mmlightvit(state_dict)
        found = infer_transnext_arch(state_dict)
        if found is None:
            raise ValueError('not a complete TransNeXt backbone')
        return found

    default_mlp_ratios = (8, 8, 4, 4)
    default_sr_ratios = (8, 4, 2, 1)

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 img_size: Union[int, Sequence[int]] = 224,
                 pretrain_size: Optional[Union[int, Sequence[int]]] = None,
                 extrapolation: bool = False,
                 attn_impl: str = 'efficient',
                 fast_inference: bool = True,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 sr_ratios: Optional[Sequence[int]] = None,
                 window_size: int = 3,
                 use_pooled_branch: bool = True,
                 use_window_branch: bool = True,
                 attention_scaling: str = 'cosine_length',
                 use_query_embedding: bool = True,
                 qkv_bias: bool = True,
                 out_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, out_norm_cfg=out_norm_cfg, init_cfg=init_cfg)
        settings = self.resolve_arch(arch, required_keys=('widths', 'depths', 'num_heads'))
        widths, depths, num_heads = (tuple(settings[k]) for k in ('widths', 'depths', 'num_heads'))
        mlp_ratios = tuple(settings.get('mlp_ratios', self.default_mlp_ratios))
        sr_ratios = tuple(sr_ratios if sr_ratios is not None else settings.get('sr_ratios', self.default_sr_ratios))
        for name, value in (('widths', widths), ('depths', depths), ('num_heads', num_heads),
                            ('mlp_ratios', mlp_ratios), ('sr_ratios', sr_ratios)):
            if len(value) != 4:
                raise ValueError(f'TransNeXt needs 4 {name} (one per stage), got {value}.')
        if any(int(r) < 1 for r in sr_ratios):
            raise ValueError(f'sr_ratios must be >= 1, got {sr_ratios}.')
        check_impl(attn_impl)
        self.widths, self.depths, self.num_heads = widths, depths, num_heads
        self.mlp_ratios, self.sr_ratios, self.window_size = mlp_ratios, sr_ratios, window_size
        self.img_size = _pair(img_size)
        self.pretrain_size = _pair(pretrain_size if pretrain_size is not None else img_size)
        self.extrapolation = bool(extrapolation)
        self.fast_inference = bool(fast_inference)
        self.use_pooled_branch, self.use_window_branch = use_pooled_branch, use_window_branch
        self.attention_scaling, self.use_query_embedding = attention_scaling, use_query_embedding
        self.stage_channels = list(widths)
        self._contexts: 'OrderedDict[tuple, StageContext]' = OrderedDict()

        self.stem = OverlapPatchEmbed(in_channels, widths[0], kernel_size=7, stride=4)
        rates = drop_path_rates(drop_path_rate, depths)
        stages = []
        for s in range(4):
            patch_embed = nn.Identity() if s == 0 else OverlapPatchEmbed(widths[s - 1], widths[s], 3, 2)
            blocks = [
                TransNeXtBlock(widths[s], num_heads[s], mlp_ratios[s], sr_ratios[s], rates[s][j], window_size,
                               qkv_bias=qkv_bias, use_pooled_branch=use_pooled_branch,
                               use_window_branch=use_window_branch, attention_scaling=attention_scaling,
                               use_query_embedding=use_query_embedding, impl=attn_impl) for j in range(depths[s])
            ]
            stages.append(TransNeXtStage(patch_embed, blocks, widths[s]))
        self.stages = nn.ModuleList(stages)
        for module in self.modules():
            self._init_module(module)
        self._init_contract()

    @staticmethod
    def _init_module(module: nn.Module) -> None:
        """The official initialisation: truncated normal (std 0.02) linear weights, He-normal (fan-out) conv
        weights, zero biases, unit LayerNorms."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------------------------------------------------
    # Attention implementation and size-dependent tables

    @property
    def attn_impl(self) -> str:
        return next(m.impl for m in self.modules() if isinstance(m, (AggregatedAttention, Attention)))

    def set_attn_impl(self, impl: str) -> 'TransNeXt':
        """Switch every attention layer to ``impl`` (``'efficient'`` / ``'reference'``); no weights change."""
        check_impl(impl)
        for m in self.modules():
            if isinstance(m, (AggregatedAttention, Attention)):
                m.impl = impl
        return self

    #: How many (stage, size, device) contexts are kept.
    max_cached_contexts = 32

    # torch.compile runs this lookup eagerly: building the tables needs ``torch.unique`` (a data-dependent shape)
    # and the cache is a Python dict; what it returns is constant per size, so each stage's blocks stay one graph.
    @torch.compiler.disable
    def stage_context(self, index: int, hw: Tuple[int, int], device: torch.device) -> StageContext:
        """Tables of stage ``index`` for a runtime map of ``hw`` (cached)."""
        key = (index, int(hw[0]), int(hw[1]), str(device))
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._build_context(index, (int(hw[0]), int(hw[1])), device)
            self._contexts[key] = ctx
            while len(self._contexts) > self.max_cached_contexts:
                self._contexts.popitem(last=False)
        return ctx

    @torch.no_grad()
    def _build_context(self, index: int, hw: Tuple[int, int], device: torch.device) -> StageContext:
        sr = self.sr_ratios[index]
        stride = 2**(index + 2)
        full = sr == 1
        pool_hw = (max(1, hw[0] // sr), max(1, hw[1] // sr))
        pool_len = pool_hw[0] * pool_hw[1] if (full or self.use_pooled_branch) else 0
        window = None if (full or not self.use_window_branch) else self.window_size
        padding_mask = window_padding_mask(hw, window, device) if window is not None else None
        scale = length_scale(hw, pool_len, window, padding_mask, device)
        coords = index_h = index_w = cpb_hw = cpb_pool_hw = None
        coords_w = 0
        if full or self.use_pooled_branch:
            if self.extrapolation:
                cpb_hw, cpb_pool_hw = hw, pool_hw
            else:
                cpb_hw = (self.img_size[0] // stride, self.img_size[1] // stride)
                cpb_pool_hw = (max(1, self.img_size[0] // (stride * sr)), max(1, self.img_size[1] // (stride * sr)))
            pretrain = (self.pretrain_size[0] // stride, self.pretrain_size[1] // stride)
            values_h, index_h = cpb_axis_tables(cpb_hw[0], cpb_pool_hw[0], pretrain[0], device)
            values_w, index_w = cpb_axis_tables(cpb_hw[1], cpb_pool_hw[1], pretrain[1], device)
            coords = cpb_coords_table(values_h, values_w)
            coords_w = len(values_w)
        return StageContext(hw, pool_hw, padding_mask, scale, coords, index_h, index_w, cpb_hw, cpb_pool_hw,
                            coords_w)

    def _apply(self, fn, *args, **kwargs):
        self._contexts.clear()  # device / dtype moves: rebuild the tables lazily
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------------------
    # Forward

    def flash_inference_allowed(self) -> bool:
        """Whether this forward may take the flash inference form (see ``fast_inference``); the attention layers
        also check the device, dtype and implementation. Never while compiling or tracing: graphs keep the code
        path of training (the flash form loops over query rows and keeps Python-side caches)."""
        return (self.fast_inference and not self.training and not torch.is_grad_enabled()
                and not torch.compiler.is_compiling() and not torch.jit.is_tracing())

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.stages[index]
        x = stage.patch_embed(x)
        batch, channels, height, width = x.shape
        ctx = self.stage_context(index, (height, width), x.device)
        flash = self.flash_inference_allowed()
        x = x.flatten(2).transpose(1, 2)
        x = self.run_blocks([partial(block, hw=(height, width), ctx=ctx, flash=flash) for block in stage.blocks], x)
        x = stage.norm(x)
        return x.transpose(1, 2).reshape(batch, channels, height, width)

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints

    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Accept our layout or the official one (ImageNet classifier with ``head``, or the mmdet / mmseg
        backbone once the loader stripped ``backbone.``): ``patch_embed{i}``, ``block{i}.{j}``, ``norm{i}``.

        ``head.*`` and non-persistent buffers are dropped; our optional output norms (in no official file) keep
        their initialisation. A checkpoint of another size is an error naming both; anything else unrecognised is
        left for the strict check, which names the keys.
        """
        if not is_official_layout(state_dict):
            return state_dict
        state = official_to_mmlightvit(state_dict)
        found = infer_transnext_arch(state)
        if found is not None and (found['widths'], found['depths']) != (self.widths, self.depths):
            raise CheckpointError(
                f'The official TransNeXt checkpoint has widths {found["widths"]} and depths {found["depths"]}, '
                f'but this TransNeXt has widths {self.widths} and depths {self.depths} (wrong arch?).')
        return self.with_own_out_norms(state)

    def to_official_state_dict(self, state_dict: Optional[Dict[str, torch.Tensor]] = None) -> 'OrderedDict':
        """This model's weights (or ``state_dict`` in our layout) in the official layout (no head)."""
        return mmlightvit_to_official(self.state_dict() if state_dict is None else state_dict)


def infer_transnext_arch(state: Dict[str, torch.Tensor]) -> Optional[dict]:
    """``widths`` and ``depths`` of a state dict in our layout, or None when it is not a complete backbone."""
    try:
        widths = [int(state['stem.proj.weight'].shape[0])]
        widths += [int(state[f'stages.{s}.patch_embed.proj.weight'].shape[0]) for s in (1, 2, 3)]
    except KeyError:
        return None
    return dict(widths=tuple(widths), depths=count_blocks(state))
