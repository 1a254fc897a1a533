"""TransNeXt's attention layers and their position bias: Aggregated Attention (stages 1-3) and full attention
(stage 4), with the official parameter names, and everything that turns their continuous position bias (CPB) MLP
into the bias of a runtime size.

* :class:`StageContext`: the size-dependent tables of one stage (window padding mask, length scale, CPB
  coordinates), which the backbone builds and caches per runtime size and hands to every block of the stage;
* :func:`cpb_mlp` and :class:`CPBBias`: the bias of the training / efficient path, rebuilt on every forward and
  expanded by blocks of queries;
* :class:`FlashCPBLayout`, :class:`FlashCPBBias` and :func:`keys_in_xy_order`: the bias of the flash inference path,
  factored into a height part that each layer caches per runtime size (``_AttentionBase.flash_cpb_bias``) and a
  width part expanded per chunk of query rows;
* :class:`AggregatedAttention` and :class:`Attention` (on :class:`_AttentionBase`: query scaling, the CPB MLP and its
  cache), which run the attention cores of :mod:`mmlightvit.models.backbones.transnext_attention`.

Depends on torch, :mod:`~mmlightvit.models.backbones.transnext_attention` and
:func:`~mmlightvit.models.layers.averaging_matrix` only.
"""
from collections import OrderedDict
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..layers import averaging_matrix
from .transnext_attention import (aggregated_attention, check_impl, flash_aggregated_attention,
                                  flash_attention_supported, flash_rows_per_chunk, gather_cpb_bias, linear_taps,
                                  padded_window_map)

ATTENTION_SCALINGS = ('cosine_length', 'dot_product')


# ----------------------------------------------------------------------------------------------------------------
# Size-dependent context of a stage (tables without parameters, cached per runtime size by the backbone)


class StageContext:
    """What every block of a stage needs for one runtime size: the map and pooled sizes, the window padding mask,
    the per-query length scale and the CPB coordinate tables (for the runtime size in extrapolation mode, for the
    training size ``img_size`` in interpolation mode)."""

    def __init__(self, hw, pool_hw, padding_mask, seq_length_scale, cpb_coords=None, cpb_index_h=None,
                 cpb_index_w=None, cpb_hw=None, cpb_pool_hw=None, cpb_coords_w=0, in_graph=False,
                 extrapolation=False):
        self.hw, self.pool_hw = hw, pool_hw
        # Built in a traced graph from symbolic sizes (never cached): the layers then take the graph's forms of the
        # pooling and of the position bias. ``extrapolation``: the CPB tables are the runtime size's.
        self.in_graph, self.extrapolation = in_graph, extrapolation
        self.padding_mask, self.seq_length_scale = padding_mask, seq_length_scale
        self.cpb_coords, self.cpb_index_h, self.cpb_index_w = cpb_coords, cpb_index_h, cpb_index_w
        # Query / key grids the CPB tables were built for; the bias is resized from them when they differ from
        # the runtime ``hw`` / ``pool_hw`` (interpolation mode).
        self.cpb_hw, self.cpb_pool_hw = cpb_hw, cpb_pool_hw
        # Distinct coordinates along the width (the table's inner size), known without a device sync; symbolic in
        # a graph traced with dynamic sizes (extrapolation mode).
        self.cpb_coords_w = cpb_coords_w if isinstance(cpb_coords_w, torch.SymInt) else int(cpb_coords_w)
        self._flash_layout: Optional['FlashCPBLayout'] = None

    def flash_layout(self) -> 'FlashCPBLayout':
        """The index tables of the flash inference path (built on first use, then kept)."""
        if self._flash_layout is None:
            self._flash_layout = FlashCPBLayout(self)
        return self._flash_layout


# ----------------------------------------------------------------------------------------------------------------
# The position bias (CPB): the MLP on the coordinate table; the efficient path's bias, by blocks of queries


#: Rows of the CPB coordinate table evaluated at once. Large inputs in extrapolation mode have large tables
#: (800x1280, stage 1: ~400 x 640 rows, a 512-wide hidden layer of ~0.5 GB): they run in row blocks, checkpointed
#: when gradients are needed, so only the (rows, heads) output is kept.
CPB_ROWS_PER_BLOCK = 2**16


def _cpb_mlp_rows(attn: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    return attn.cpb_fc2(attn.cpb_act(attn.cpb_fc1(coords)))


def cpb_mlp(attn: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    """``cpb_fc2(relu(cpb_fc1(coords)))`` row block by row block (same numbers, bounded memory)."""
    rows = coords.shape[0]
    if isinstance(rows, torch.SymInt) or rows <= CPB_ROWS_PER_BLOCK:  # a traced graph: one block (no size guard)
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

    In a graph traced with symbolic sizes (``ctx.in_graph``), the whole ``(heads, N, P)`` bias is built at once from
    the runtime size: extrapolation gathers it from the table (which is the runtime size's); interpolation resizes
    the key axes, then the query axes, with ``F.interpolate`` (equal within float rounding to the query taps).
    """

    def __init__(self, attn: nn.Module, ctx: StageContext):
        table = cpb_mlp(attn, ctx.cpb_coords.to(attn.cpb_fc1.weight.dtype))  # (U_h * U_w, heads)
        self.heads = table.shape[1]
        self.width = ctx.hw[1]
        self.tokens = ctx.hw[0] * ctx.hw[1]
        (h_t, w_t), (ph_t, pw_t) = ctx.cpb_hw, ctx.cpb_pool_hw
        (height, width), (pool_h, pool_w) = ctx.hw, ctx.pool_hw
        self.in_graph = ctx.in_graph
        if ctx.in_graph:
            bias = gather_cpb_bias(table, ctx.cpb_index_h, ctx.cpb_index_w, ctx.cpb_coords_w)  # (heads, N_t, P_t)
            if not ctx.extrapolation:  # the table's grids are img_size's: resize keys, then queries, to the runtime's
                bias = F.interpolate(bias.reshape(self.heads, h_t * w_t, ph_t, pw_t), (pool_h, pool_w),
                                     mode='bilinear')
                bias = bias.reshape(self.heads, h_t, w_t, pool_h * pool_w).permute(0, 3, 1, 2)
                bias = F.interpolate(bias, (height, width), mode='bilinear').flatten(2).transpose(1, 2)
            self.full_bias = bias
            return
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
        if self.in_graph:
            return self.full_bias[:, start:end]
        queries = torch.arange(start, end, device=(self.table if self.keys_resized is None
                                                   else self.keys_resized).device)
        qy, qx = queries // self.width, queries % self.width
        if self.keys_resized is None:
            bias = self.table[:, self.index_h[qy][:, :, None], self.index_w[qx][:, None, :]]
            return bias.reshape(self.heads, end - start, -1)
        src = self.keys_resized
        if not self.resize_queries:
            return src[:, qy, qx]
        out = None
        for index_y, weight_y in self.taps_h:  # bilinear: sum over the height taps of (sum over the width taps)
            row = None
            for index_x, weight_x in self.taps_w:
                term = weight_x[qx].to(src.dtype)[:, None] * src[:, index_y[qy], index_x[qx]]
                row = term if row is None else row + term
            term = weight_y[qy].to(src.dtype)[:, None] * row
            out = term if out is None else out + term
        return out


# ----------------------------------------------------------------------------------------------------------------
# The position bias of the flash inference path: a height part cached per size, a width part per chunk of rows


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

    def __init__(self, ctx: StageContext):
        (h_t, w_t), (ph_t, pw_t) = ctx.cpb_hw, ctx.cpb_pool_hw
        (height, width), (pool_h, pool_w) = ctx.hw, ctx.pool_hw
        device = ctx.cpb_index_h.device
        self.width, self.pool_hw, self.num_w = width, (pool_h, pool_w), ctx.cpb_coords_w
        self.y_taps = [(ctx.cpb_index_h[iq][:, ik], wq[:, None] * wk[None, :])
                       for iq, wq in linear_taps(h_t, height, device) for ik, wk in linear_taps(ph_t, pool_h, device)]
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
# The attention layers


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

    def _scale_queries(self, q: torch.Tensor, seq_length_scale: torch.Tensor,
                       unit_q: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cosine: ``(normalize(q) + query_embedding) * softplus(temperature) * log(length)``; dot product:
        ``(q + query_embedding) * head_dim ** -0.5``.

        ``unit_q`` (the flash form, no autograd): ``normalize(q)`` already computed, in a tensor of its own that
        becomes the result in place (the cosine factors applied as one product), so no other query-sized tensor is
        written."""
        in_place, embedding = unit_q is not None, self.query_embedding
        if self.attention_scaling == 'cosine_length':
            q = unit_q if in_place else F.normalize(q, dim=-1)
            if embedding is not None:
                q = q.add_(embedding) if in_place else q + embedding
            temperature, length = F.softplus(self.temperature), seq_length_scale.to(q.dtype)
            return q.mul_(temperature * length) if in_place else q * temperature * length
        if in_place:  # q + query_embedding written over the normalised queries
            return torch.add(q, embedding if embedding is not None else 0, out=unit_q).mul_(self.head_dim**-0.5)
        if embedding is not None:
            q = q + embedding
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
            window_size=self.window_size, padding_mask=ctx.padding_mask, impl=self.impl,
            max_chunk_elements=0 if ctx.in_graph else None)  # chunk counts would fix the traced size
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))

    def _pooled_keys_values(self, x: torch.Tensor, hw: Tuple[int, int], ctx: StageContext):
        """Pooled keys (normalised for cosine scaling) and values, ``(B, heads, Ph * Pw, d)`` each."""
        batch, _, channels = x.shape
        pool_h, pool_w = ctx.pool_hw
        x_ = x.reshape(batch, hw[0], hw[1], channels).permute(0, 3, 1, 2)  # channels-last view, as in DWConv
        x_ = self.act(self.sr(x_))
        if ctx.in_graph:  # adaptive pooling whose windows follow the runtime size (see averaging_matrix)
            x_ = averaging_matrix(hw[0], pool_h, x_) @ x_ @ averaging_matrix(hw[1], pool_w, x_).transpose(0, 1)
        else:
            x_ = F.adaptive_avg_pool2d(x_, (pool_h, pool_w))
        x_ = self.norm(x_.permute(0, 2, 3, 1).reshape(batch, pool_h * pool_w, channels))
        kv = self.kv(x_).reshape(batch, pool_h * pool_w, 2 * self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        k_pool, v_pool = kv.chunk(2, 1)
        return self._keys(k_pool), v_pool

    @torch.no_grad()
    def forward_flash(self, x: torch.Tensor, q: torch.Tensor, hw: Tuple[int, int], ctx: StageContext) -> torch.Tensor:
        """The flash inference form of :meth:`forward` (its numbers; no autograd), given the queries ``q`` (``(B,
        heads, N, d)``, before scaling): queries normalised once, into a contiguous tensor that becomes the scaled
        queries in place (:meth:`_scale_queries`); window keys normalised and values copied straight into
        zero-bordered maps (:func:`padded_window_map`); the attention core :func:`flash_aggregated_attention` with
        the cached position bias, its output already in ``proj``'s layout."""
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
        queries = self._scale_queries(q, ctx.seq_length_scale, unit_q=queries)
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
            out = aggregated_attention(q, None, None, k, v, hw, pool_bias=CPBBias(self, ctx), impl=self.impl,
                                       max_chunk_elements=0 if ctx.in_graph else None)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))

