"""Aggregated Attention (TransNeXt, CVPR 2024): one softmax over a 3x3 sliding window at full resolution and a
pooled summary of the whole map, plus the continuous position bias (CPB) tables it uses.

:func:`aggregated_attention` is the attention core shared by TransNeXt's Aggregated Attention (stages 1-3) and
its full attention (stage 4: no window, the "pooled" keys are all tokens). It has two implementations with the same
math, selected by ``impl``:

``'reference'``
    Straightforward: the ``ws x ws`` neighbourhoods of keys and values are materialised with ``F.unfold`` (``ws**2``
    copies of K and V), the local and pooled logits are concatenated and go through one softmax, as the official
    native PyTorch code does.
``'efficient'`` (default)
    No ``ws**2`` copies: K and V are zero-padded once and each of the ``ws**2`` offsets is a shifted *view*; the
    local logits are computed offset by offset (``ws**2`` logits per query) and the local output is accumulated
    offset by offset. The pooled branch (``N x P`` logits, the dominant memory term at detection sizes) is processed
    in chunks of queries when ``B * heads * N * (ws**2 + P)`` exceeds ``max_chunk_elements``; each chunk does its
    part of the joint softmax exactly (a query's softmax only involves its own row) and runs under non-reentrant
    checkpointing when gradients are needed, so the pooled attention matrix is never held in full, neither in the
    forward pass nor for the backward pass (it is recomputed chunk by chunk).

Both: border positions of the window are masked with ``-inf`` before the softmax; ``local_extra`` (TransNeXt's
``q_norm @ learnable_tokens + learnable_bias``) is added to the local attention weights *after* the softmax, and
multiplies zero (padded) values at masked positions, as in the official code.

:func:`flash_aggregated_attention` is a third form of the same math for inference without autograd on the CPU: the
pooled branch runs a few query rows at a time through the CPU flash-attention kernel (the one behind
``F.scaled_dot_product_attention``) with the position bias as its additive mask, so the pooled logits are never
written to memory; the kernel also returns each query's log-sum-exp, through which the window branch (computed in
place, offset by offset) joins the one softmax.

Depends on torch only.
"""
from functools import partial
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

ATTN_IMPLS = ('reference', 'efficient')

#: Budget (elements) of the position-bias mask of one chunk of query rows in the flash inference form
#: (``heads x rows * W x P``): 2**22 floats = 16 MB, about half the L3 cache of a small CPU, where the flash kernel
#: reads it right after it is written. At least one row per chunk.
FLASH_CHUNK_ELEMENTS = 2**22

#: Default budget (elements) of one chunk of joint logits ``B x heads x chunk x (ws**2 + P)`` in the efficient
#: implementation: 2**24 floats = 64 MB in float32. Below it the pooled branch runs in one piece.
MAX_CHUNK_ELEMENTS = 2**24


#: The CPU flash-attention kernel behind ``F.scaled_dot_product_attention``, called directly because it also returns
#: the log-sum-exp of every query's logits (``None`` where this torch has no such op: the flash form is then off).
_FLASH_ATTENTION_CPU = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)


def check_impl(impl: str) -> str:
    if impl not in ATTN_IMPLS:
        raise ValueError(f'Unknown aggregated attention impl {impl!r}; choose one of {ATTN_IMPLS}.')
    return impl


# ----------------------------------------------------------------------------------------------------------------
# Size-dependent tables (no parameters; callers cache them per input size)


def window_padding_mask(hw: Tuple[int, int], window_size: int = 3,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """``(H * W, ws**2)`` bool, True where the window position of a query falls outside the map.

    Offsets are ordered row-major over the window (``(dy, dx)`` from ``(-r, -r)`` to ``(r, r)``), the order of
    ``F.unfold``'s kernel positions.
    """
    height, width = hw
    r = window_size // 2
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    masks = []
    for dy in range(-r, r + 1):
        out_y = (ys + dy < 0) | (ys + dy >= height)
        for dx in range(-r, r + 1):
            out_x = (xs + dx < 0) | (xs + dx >= width)
            masks.append((out_y[:, None] | out_x[None, :]).flatten())
    return torch.stack(masks, dim=1)


def length_scale(hw: Tuple[int, int], pool_len: int, window_size: Optional[int] = 3,
                 padding_mask: Optional[torch.Tensor] = None, device: Optional[torch.device] = None) -> torch.Tensor:
    """``log(number of keys a query sees)``: ``(N, 1)`` for a window branch (valid window positions + ``pool_len``),
    a scalar tensor ``log(pool_len)`` without one (``window_size=None``). Sizes may be symbolic (a traced graph)."""
    if window_size is None:
        if isinstance(pool_len, torch.SymInt):  # float() would fix the traced size
            return torch.log(torch.ones((), device=device) * pool_len)
        return torch.log(torch.as_tensor(float(pool_len), device=device))
    if padding_mask is None:
        padding_mask = window_padding_mask(hw, window_size, device)
    valid = (~padding_mask).sum(dim=1, keepdim=True).float()
    return torch.log(valid + pool_len)


@torch.no_grad()
def cpb_axis_tables(query_len: int, key_len: int, pretrain_len: int,
                    device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Log-spaced relative coordinates along one axis for the continuous position bias.

    Key positions are the adaptive-average-pooled query positions (``key_len`` bins of ``arange(query_len)``);
    the relative coordinate ``(q - k) / (pretrain_len - 1) * 8`` becomes ``sign(x) * log2(1 + |x|) / log2(8)``.

    Returns ``(values, index)``: the distinct transformed coordinates (sorted, ``(U,)``) and, for every
    ``(query, key)`` pair, the index of its value (``(query_len, key_len)``). The 2-D table of the official code
    (``torch.unique`` over the ``(dh, dw)`` pairs of all query/key pairs) is exactly the Cartesian product of the
    two axes' values, in the same (lexicographic) order, so a CPB MLP evaluated on
    :func:`cpb_coords_table` gives the same numbers without an ``N x P`` index map.
    """
    if device is not None and torch.device(device).type == 'meta':
        # shape-only builds: torch.unique has no meta kernel, and the tables are small enough for the CPU
        values, index = cpb_axis_tables(query_len, key_len, pretrain_len, torch.device('cpu'))
        return values.to(device), index.to(device)
    axis_q = torch.arange(query_len, dtype=torch.float32, device=device)
    axis_k = F.adaptive_avg_pool1d(axis_q.unsqueeze(0), key_len).squeeze(0)
    relative = (axis_q[:, None] - axis_k[None, :]) / (pretrain_len - 1) * 8
    values, index = torch.unique(relative.reshape(-1), sorted=True, return_inverse=True)
    values = torch.sign(values) * torch.log2(torch.abs(values) + 1.0) / torch.log2(
        torch.tensor(8, dtype=torch.float32, device=device))
    return values, index.reshape(query_len, key_len)


def cpb_axis_tables_in_graph(query_len, ratio: int, pretrain_len: int,
                             device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`cpb_axis_tables` for ``key_len = query_len // ratio`` where ``ratio`` divides ``query_len``, without
    ``torch.unique`` (whose output length depends on the data), so ``query_len`` may be symbolic.

    Key ``j`` then averages positions ``j * ratio`` to ``j * ratio + ratio - 1``: it sits at ``j * ratio + (ratio -
    1) / 2``, and the offsets ``q - j * ratio`` cover every integer from ``-(key_len - 1) * ratio`` to
    ``query_len - 1``: the distinct relative coordinates are that range minus ``(ratio - 1) / 2``, in increasing
    order, and pair ``(q, j)`` has index ``q - j * ratio + (key_len - 1) * ratio``. Same values (each one is the same
    float expression of the same exact offset) and the same index as :func:`cpb_axis_tables`."""
    key_len = query_len // ratio
    low = (key_len - 1) * ratio
    offsets = torch.arange(-low, query_len, dtype=torch.float32, device=device) - (ratio - 1) / 2
    relative = offsets / (pretrain_len - 1) * 8
    values = torch.sign(relative) * torch.log2(torch.abs(relative) + 1.0) / torch.log2(
        torch.tensor(8, dtype=torch.float32, device=device))
    index = (torch.arange(query_len, device=device)[:, None] - torch.arange(key_len, device=device)[None, :] * ratio
             + low)
    return values, index


@torch.no_grad()
def cpb_coords_table(values_h: torch.Tensor, values_w: torch.Tensor) -> torch.Tensor:
    """``(U_h * U_w, 2)`` rows ``(h, w)`` of the Cartesian product, row ``i * U_w + j`` = ``(h_i, w_j)``."""
    grid_h, grid_w = torch.meshgrid(values_h, values_w, indexing='ij')
    return torch.stack([grid_h.reshape(-1), grid_w.reshape(-1)], dim=1)


def gather_cpb_bias(table: torch.Tensor, index_h: torch.Tensor, index_w: torch.Tensor,
                    num_w: Optional[int] = None) -> torch.Tensor:
    """Per-head bias ``(heads, Hq * Wq, Hk * Wk)`` from the MLP's output on :func:`cpb_coords_table`.

    Args:
        table: ``(U_h * U_w, heads)`` MLP output.
        index_h: ``(Hq, Hk)`` and index_w: ``(Wq, Wk)`` from :func:`cpb_axis_tables`.
        num_w: ``U_w``, the number of distinct width coordinates (read from ``index_w`` when not given).
    """
    heads = table.shape[1]
    u_w = num_w if isinstance(num_w, torch.SymInt) or num_w else int(index_w.max()) + 1
    table = table.transpose(0, 1).reshape(heads, -1, u_w)
    h_q, h_k = index_h.shape
    w_q, w_k = index_w.shape
    bias = table[:, index_h[:, None, :, None], index_w[None, :, None, :]]  # (heads, Hq, Wq, Hk, Wk)
    return bias.reshape(heads, h_q * w_q, h_k * w_k)


@torch.no_grad()
def linear_taps(in_size: int, out_size: int,
                device: Optional[torch.device] = None) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """1-D linear resizing ``in_size -> out_size`` as ``F.interpolate(mode='bilinear', align_corners=False)``
    computes it, as a list of ``(index, weight)`` taps, each ``(out_size,)`` (weights in float64), so that ``out[i]
    = sum(weight[i] * x[index[i]] for index, weight in taps)``: one identity tap when the sizes are equal, else
    two."""
    if in_size == out_size:
        return [(torch.arange(out_size, device=device), torch.ones(out_size, dtype=torch.float64, device=device))]
    dst = torch.arange(out_size, dtype=torch.float64, device=device)
    src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    index0 = src.floor().long()
    index1 = index0 + (index0 < in_size - 1).long()
    weight1 = (src - index0).clamp(0, 1)
    return [(index0, 1 - weight1), (index1, weight1)]


# ----------------------------------------------------------------------------------------------------------------
# The attention core


def aggregated_attention(q: torch.Tensor,
                         k_local: Optional[torch.Tensor],
                         v_local: Optional[torch.Tensor],
                         k_pool: Optional[torch.Tensor],
                         v_pool: Optional[torch.Tensor],
                         hw: Sequence[int],
                         local_bias: Optional[torch.Tensor] = None,
                         pool_bias: Optional[torch.Tensor] = None,
                         local_extra: Optional[torch.Tensor] = None,
                         window_size: int = 3,
                         padding_mask: Optional[torch.Tensor] = None,
                         impl: str = 'efficient',
                         max_chunk_elements: Optional[int] = None) -> torch.Tensor:
    """One softmax over a sliding window of keys and a set of pooled keys; returns ``(B, heads, N, head_dim)``.

    Args:
        q: ``(B, heads, N, d)`` queries, already scaled (TransNeXt: normalised, query embedding, temperature and
            length scale applied).
        k_local, v_local: ``(B, heads, N, d)`` keys / values of the ``H x W`` map for the window branch, or
            ``None`` (no window branch).
        k_pool, v_pool: ``(B, heads, P, d)`` pooled keys / values, or ``None`` (no pooled branch).
        hw: ``(H, W)`` with ``H * W == N``.
        local_bias: ``(heads, ws**2)`` added to the window logits before the softmax.
        pool_bias: broadcastable to ``(B, heads, N, P)`` (e.g. ``(heads, N, P)``), added to the pooled logits; or
            a callable ``(start, end) -> bias of queries start..end`` (broadcastable to ``(B, heads, end - start,
            P)``), which the efficient implementation calls per chunk of queries so the ``N x P`` bias is never
            held in full either.
        local_extra: broadcastable to ``(B, heads, N, ws**2)``, added to the window attention weights after the
            softmax.
        window_size: odd window size ``ws``.
        padding_mask: ``(N, ws**2)`` from :func:`window_padding_mask` (computed when ``None``).
        impl: ``'efficient'`` or ``'reference'`` (see the module docstring).
        max_chunk_elements: chunk budget of the efficient implementation (default :data:`MAX_CHUNK_ELEMENTS`;
            ``0`` or less: never chunk).
    """
    check_impl(impl)
    has_local, has_pool = k_local is not None, k_pool is not None
    if not (has_local or has_pool):
        raise ValueError('aggregated_attention needs a window branch, a pooled branch or both.')
    if window_size % 2 != 1:
        raise ValueError(f'window_size must be odd, got {window_size}.')
    height, width = hw[0], hw[1]  # ints, or symbolic sizes in a traced graph
    if q.shape[2] != height * width:
        raise ValueError(f'{q.shape[2]} queries do not match the map size {height}x{width}.')
    if has_local and padding_mask is None:
        padding_mask = window_padding_mask((height, width), window_size, q.device)
    if impl == 'reference':
        if callable(pool_bias):
            pool_bias = pool_bias(0, q.shape[2])
        return _reference(q, k_local, v_local, k_pool, v_pool, (height, width), local_bias, pool_bias, local_extra,
                          window_size, padding_mask)
    return _efficient(q, k_local, v_local, k_pool, v_pool, (height, width), local_bias, pool_bias, local_extra,
                      window_size, padding_mask, MAX_CHUNK_ELEMENTS if max_chunk_elements is None
                      else max_chunk_elements)


def _reference(q, k_local, v_local, k_pool, v_pool, hw, local_bias, pool_bias, local_extra, window_size,
               padding_mask):
    batch, heads, tokens, dim = q.shape
    height, width = hw
    local_len = window_size**2
    logits = []
    if k_local is not None:
        kv = torch.cat([k_local, v_local], dim=1).transpose(-2, -1).reshape(batch, 2 * heads * dim, height, width)
        kv = F.unfold(kv, window_size, padding=window_size // 2, stride=1)
        kv = kv.reshape(batch, 2 * heads, dim, local_len, tokens).permute(0, 1, 4, 2, 3)  # (B, 2h, N, d, L)
        k_unf, v_unf = kv.chunk(2, dim=1)
        attn_local = (q.unsqueeze(-2) @ k_unf).squeeze(-2)  # (B, h, N, L)
        if local_bias is not None:
            attn_local = attn_local + local_bias.unsqueeze(1)
        logits.append(attn_local.masked_fill(padding_mask, float('-inf')))
    if k_pool is not None:
        attn_pool = q @ k_pool.transpose(-2, -1)
        if pool_bias is not None:
            attn_pool = attn_pool + pool_bias
        logits.append(attn_pool)
    attn = torch.cat(logits, dim=-1).softmax(dim=-1)
    out = None
    if k_local is not None:
        weights = attn[..., :local_len]
        if local_extra is not None:
            weights = weights + local_extra
        out = (weights.unsqueeze(-2) @ v_unf.transpose(-2, -1)).squeeze(-2)
    if k_pool is not None:
        pooled = (attn[..., local_len:] if k_local is not None else attn) @ v_pool
        out = pooled if out is None else out + pooled
    return out


def _joint_softmax_chunk(q: torch.Tensor, logits_local: Optional[torch.Tensor], k_pool: torch.Tensor,
                         v_pool: torch.Tensor, pool_bias: Optional[torch.Tensor]):
    """Joint softmax of a block of queries over their local logits and the pooled keys.

    Returns ``(local attention weights or None, pooled output)``."""
    attn_pool = q @ k_pool.transpose(-2, -1)
    if pool_bias is not None:
        attn_pool = attn_pool + pool_bias
    if logits_local is None:
        return None, attn_pool.softmax(dim=-1) @ v_pool
    local_len = logits_local.shape[-1]
    attn = torch.cat([logits_local, attn_pool], dim=-1).softmax(dim=-1)
    return attn[..., :local_len], attn[..., local_len:] @ v_pool


def _chunk(q, logits_local, k_pool, v_pool, pool_bias, bias_fn=None, start=0, end=0):
    if bias_fn is not None:
        pool_bias = bias_fn(start, end)
    return _joint_softmax_chunk(q, logits_local, k_pool, v_pool, pool_bias)


def _efficient(q, k_local, v_local, k_pool, v_pool, hw, local_bias, pool_bias, local_extra, window_size,
               padding_mask, max_chunk_elements):
    batch, heads, tokens, dim = q.shape
    local_len = window_size**2 if k_local is not None else 0

    logits_local = None
    if k_local is not None:
        logits_local = _window_logits(q, k_local, hw, window_size, local_bias, padding_mask)

    out_pool = None
    if k_pool is None:
        weights = logits_local.softmax(dim=-1)
    else:
        pool_len = k_pool.shape[2]
        per_query = batch * heads * (local_len + pool_len)
        chunk = tokens if max_chunk_elements <= 0 else max(1, max_chunk_elements // per_query)
        bias_fn = pool_bias if callable(pool_bias) else None
        if chunk >= tokens:
            bias = bias_fn(0, tokens) if bias_fn is not None else pool_bias
            weights, out_pool = _joint_softmax_chunk(q, logits_local, k_pool, v_pool, bias)
        else:
            need_grad = torch.is_grad_enabled()
            weights_parts, out_parts = [], []
            for start in range(0, tokens, chunk):
                end = min(start + chunk, tokens)
                q_c = q[:, :, start:end]
                local_c = logits_local[:, :, start:end] if logits_local is not None else None
                if bias_fn is not None:
                    bias_c = None  # computed inside the (checkpointed) chunk, recomputed for backward
                elif pool_bias is not None and pool_bias.dim() >= 2 and pool_bias.shape[-2] != 1:
                    bias_c = pool_bias[..., start:end, :]
                else:
                    bias_c = pool_bias
                fn = partial(_chunk, bias_fn=bias_fn, start=start, end=end)
                if need_grad:
                    w_c, out_c = checkpoint(fn, q_c, local_c, k_pool, v_pool, bias_c, use_reentrant=False)
                else:
                    w_c, out_c = fn(q_c, local_c, k_pool, v_pool, bias_c)
                if w_c is not None:
                    weights_parts.append(w_c)
                out_parts.append(out_c)
            out_pool = torch.cat(out_parts, dim=2)
            weights = torch.cat(weights_parts, dim=2) if weights_parts else None

    if k_local is None:
        return out_pool

    if local_extra is not None:
        weights = weights + local_extra
    out = _window_output(weights, v_local, hw, window_size)
    return out if out_pool is None else out + out_pool


def _window_offsets(window_size: int):
    return [(dy, dx) for dy in range(window_size) for dx in range(window_size)]


def _window_logits(q, k_local, hw, window_size, local_bias, padding_mask):
    """``(B, heads, N, ws**2)`` window logits (local bias added, border positions ``-inf``), offset by offset: the
    shifted keys are views of the zero-padded map, never copies."""
    batch, heads, tokens, dim = q.shape
    height, width = hw
    r = window_size // 2
    q_map = q.reshape(batch, heads, height, width, dim)
    k_pad = F.pad(k_local.reshape(batch, heads, height, width, dim), (0, 0, r, r, r, r))
    logits = torch.stack([(q_map * k_pad[:, :, dy:dy + height, dx:dx + width]).sum(-1)
                          for dy, dx in _window_offsets(window_size)], dim=-1)
    logits = logits.reshape(batch, heads, tokens, window_size**2)
    if local_bias is not None:
        logits = logits + local_bias.unsqueeze(1)
    return logits.masked_fill(padding_mask, float('-inf'))


def _window_output(weights, v_local, hw, window_size):
    """``sum_j weights[..., j] * (values shifted by offset j)``, ``(B, heads, N, d)``; shifted values are views."""
    batch, heads, tokens, dim = v_local.shape
    height, width = hw
    r = window_size // 2
    weights = weights.reshape(batch, heads, height, width, window_size**2)
    v_pad = F.pad(v_local.reshape(batch, heads, height, width, dim), (0, 0, r, r, r, r))
    out = None
    for j, (dy, dx) in enumerate(_window_offsets(window_size)):
        term = weights[..., j:j + 1] * v_pad[:, :, dy:dy + height, dx:dx + width]
        out = term if out is None else out + term
    return out.reshape(batch, heads, tokens, dim)


# ----------------------------------------------------------------------------------------------------------------
# Flash inference form


def flash_rows_per_chunk(heads: int, width: int, pool_len: int) -> int:
    """Query rows per call of the flash kernel in :func:`flash_aggregated_attention` (:data:`FLASH_CHUNK_ELEMENTS`)."""
    return max(1, FLASH_CHUNK_ELEMENTS // (heads * width * pool_len))


def flash_attention_supported(q: torch.Tensor) -> bool:
    """Whether :func:`flash_aggregated_attention` runs for queries like ``q``: the CPU flash-attention op exists,
    ``q`` is a float32 / float64 CPU tensor and autograd is off (the kernel is used for its forward only)."""
    return (_FLASH_ATTENTION_CPU is not None and q.device.type == 'cpu' and q.dtype in (torch.float32, torch.float64)
            and not torch.is_grad_enabled())


@torch.no_grad()
def padded_window_map(t: torch.Tensor, hw: Sequence[int], window_size: int = 3,
                      scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(B, heads, H + 2r, W + 2r, d)``: ``t`` (``(B, heads, N, d)``, any strides), times ``scale`` (``(B, heads,
    N, 1)``) when given, as an ``H x W`` map inside a zero border of ``r = window_size // 2``.

    One pass over ``t`` (only the border is zeroed): the window branch's keys / values in the flash form, whose
    ``ws**2`` shifted neighbourhoods are then views. Passing the keys' ``1 / norm`` as ``scale`` folds their
    normalisation into the same pass."""
    batch, heads, tokens, dim = t.shape
    height, width = int(hw[0]), int(hw[1])
    r = window_size // 2
    out = t.new_empty(batch, heads, height + 2 * r, width + 2 * r, dim)
    if r:
        out[:, :, :r].zero_()
        out[:, :, height + r:].zero_()
        out[:, :, r:height + r, :r].zero_()
        out[:, :, r:height + r, width + r:].zero_()
    interior = out[:, :, r:height + r, r:width + r]
    source = t.reshape(batch, heads, height, width, dim)
    if scale is None:
        interior.copy_(source)
    else:
        torch.mul(source, scale.reshape(batch, heads, height, width, 1), out=interior)
    return out


@torch.no_grad()
def flash_aggregated_attention(q: torch.Tensor,
                               k_local: Optional[torch.Tensor],
                               v_local: Optional[torch.Tensor],
                               k_pool: torch.Tensor,
                               v_pool: torch.Tensor,
                               hw: Sequence[int],
                               pool_bias_rows: Callable[[int, int], torch.Tensor],
                               local_bias: Optional[torch.Tensor] = None,
                               local_extra: Optional[torch.Tensor] = None,
                               window_size: int = 3,
                               padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`aggregated_attention` for inference (no autograd, CPU, see :func:`flash_attention_supported`), always
    with a pooled branch.

    ``k_local`` / ``v_local`` are ``(B, heads, N, d)`` or already padded maps from :func:`padded_window_map`.
    Returns ``(B, heads, N, d)`` as a view of a ``(B, N, heads, d)`` tensor: ``out.transpose(1, 2).reshape(B, N,
    heads * d)`` is free.

    The window logits come first (in place, offset by offset, ``ws**2`` values per query) with their log-sum-exp
    ``lse_local``. The pooled branch then runs a few rows of queries at a time (:data:`FLASH_CHUNK_ELEMENTS`)
    through the CPU flash-attention kernel, with ``pool_bias_rows(start, end)`` (``(heads, (end - start) * W, P)``:
    the bias of the queries of map rows ``start..end`` to the pooled keys, in the order of ``k_pool`` / ``v_pool``)
    as the additive mask: neither the ``N x P`` logits nor the ``N x P`` bias is ever held in full. The kernel
    returns the pooled output normalised over the pooled keys and the log-sum-exp ``lse_pool`` of each query's
    pooled logits; with ``lse = logaddexp(lse_local, lse_pool)`` the joint softmax is ``out_pool * exp(lse_pool -
    lse)`` for the pooled part, written straight into the output, and ``exp(logits_local - lse)`` for the window.
    """
    batch, heads, tokens, dim = q.shape
    height, width = int(hw[0]), int(hw[1])
    if tokens != height * width:
        raise ValueError(f'{tokens} queries do not match the map size {height}x{width}.')
    # Queries usually arrive as a permuted view of a linear layer's output; in the contiguous layout the window
    # branch's products (and the flash kernel's reads) are several times faster.
    q = q.contiguous()
    out = q.new_empty(batch, tokens, heads, dim)
    out_heads = out.permute(0, 2, 1, 3)

    has_local = k_local is not None
    if has_local:
        if padding_mask is None:
            padding_mask = window_padding_mask((height, width), window_size, q.device)
        local_len = window_size**2
        offsets = _window_offsets(window_size)
        k_pad = k_local if k_local.dim() == 5 else padded_window_map(k_local, hw, window_size)
        q_map = q.view(batch, heads, height, width, dim)
        logits = q.new_empty(local_len, batch, heads, height, width)
        product = torch.empty_like(q_map)
        for j, (dy, dx) in enumerate(offsets):
            torch.sum(torch.mul(q_map, k_pad[:, :, dy:dy + height, dx:dx + width], out=product), dim=-1,
                      out=logits[j])
        del product
        logits = logits.view(local_len, batch, heads, tokens)
        if local_bias is not None:
            logits += local_bias.t().reshape(local_len, 1, heads, 1)
        logits.masked_fill_(padding_mask.t().unsqueeze(1).unsqueeze(1), float('-inf'))
        lse_local = torch.logsumexp(logits, dim=0)  # (B, heads, N)
        lse = torch.empty_like(lse_local)

    rows_per_chunk = flash_rows_per_chunk(heads, width, k_pool.shape[2])
    for start in range(0, height, rows_per_chunk):
        end = min(start + rows_per_chunk, height)
        queries = slice(start * width, end * width)
        mask = pool_bias_rows(start, end).unsqueeze(0).to(q.dtype)  # broadcast over the batch
        out_c, lse_pool = _FLASH_ATTENTION_CPU(q[:, :, queries], k_pool, v_pool, attn_mask=mask, scale=1.0)
        if not has_local:
            out_heads[:, :, queries] = out_c
            continue
        lse_c = torch.logaddexp(lse_local[:, :, queries], lse_pool, out=lse[:, :, queries])
        torch.mul(out_c, lse_pool.sub_(lse_c).exp_().unsqueeze(-1), out=out_heads[:, :, queries])
    if not has_local:
        return out_heads

    weights = logits.sub_(lse).exp_()  # the joint softmax's window part; masked positions: exp(-inf) = 0
    if local_extra is not None:
        weights += local_extra.permute(3, 0, 1, 2)
    weights = weights.view(local_len, batch, heads, height, width, 1)
    v_pad = v_local if v_local.dim() == 5 else padded_window_map(v_local, hw, window_size)
    out_map = out.view(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4)
    for j, (dy, dx) in enumerate(offsets):
        out_map.addcmul_(weights[j], v_pad[:, :, dy:dy + height, dx:dx + width])
    return out_heads
