"""FasterViT: Fast Vision Transformers with Hierarchical Attention (ICLR 2024, arXiv 2306.06189).
Official code: https://github.com/NVlabs/FasterViT (PyPI ``fastervit`` 1.0.0).

A conv stem (two 3x3 stride-2 conv + BN + ReLU), two stages of residual conv blocks, then two stages of window
transformer blocks (window 7). Stage 3 uses Hierarchical Attention (HAT): a token initialiser (depth-wise 3x3 conv
position embedding + average pooling) summarises the map into a grid of *carrier tokens*, ``ct_size x ct_size`` per
window; in every block the carrier tokens attend to each other globally (``hat_attn``, ``hat_mlp``), then each
window attends over ``[its carrier tokens ; its tokens]``. Variants 3-6 propagate the carrier tokens back into their
windows after the stage's last block and use layer scale. Every transformer block adds an MLP absolute position
embedding, and attention biases are Swin-v2 continuous position biases (``16 * sigmoid(MLP(log-spaced coords))``).

Any input size. The official model fixes the carrier-token grid and the window layout from ``resolution`` at
construction; here everything is derived from each batch's size: every transformer stage pads its map (zeros,
right / bottom) to a multiple of the window size, computes the carrier-token pooling, the carrier-token grid, the
position embeddings and the attention biases for that padded size, and crops back at the end. The pooling uses the
official formula per axis (``fastervit``'s ``TokenInitializer`` / ``faster_vit_any_res``) for the padded size
``n * window``: ``ct_size * n`` outputs, stride ``window // ct_size``, kernel ``size - (ct_size * n - 1) * stride``
(14x14 at 224: kernel 5, stride 3, a 4x4 grid), so a 224 input computes exactly what the official model computes.
Nothing size-dependent is stored in the state dict (coordinate tables are cached per size); the official files'
``relative_bias`` / ``relative_coords_table`` / ``relative_position_index`` buffers are dropped on loading.

The module tree follows the official one inside the blocks (``norm1``, ``attn.{qkv,proj,pos_emb_funct.cpb_mlp}``,
``mlp.{fc1,fc2}``, ``pos_embed.cpb_mlp``, ``hat_*``, ``gamma1-4``, conv blocks ``conv1/norm1/conv2/norm2``);
:meth:`FasterViT.convert_checkpoint` maps ``patch_embed.conv_down`` -> ``stem``, ``levels.{i}`` -> ``stages.{i}``
and each ``levels.{i}.downsample`` (the end of an official level) -> ``stages.{i+1}.downsample`` (the start of
ours, so stage outputs are taken before the next down-sampling).

Depends on torch, mmengine and mmlightvit only.
"""
import math
import re
from collections import OrderedDict
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.registry import MODELS
from ..layers import (DropPath, LayerNorm2d, LightBackbone, apply_blocks, apply_layer_scale, count_blocks,
                      drop_path_rates, init_trunc_normal, is_exporting, is_symbolic, is_tracing,
                      layer_scale_parameter, size_max, traced_value)

# ----------------------------------------------------------------------------------------------------------------
# Size-dependent coordinate tables (computed per size and device, cached; never in the state dict)
#
# Eagerly they are built once per size and kept. While a graph with symbolic sizes is traced (ONNX export with
# dynamic sizes, torch.compile) they are built in the graph from arange / meshgrid of the runtime size, with the same
# ops, so one exported graph serves every size; a fixed-size graph takes the tables an eager forward at its size
# cached (constants, as before), and nothing traced is kept for eager use.

_COORD_CACHE: Dict[tuple, torch.Tensor] = {}


def _cached(key: tuple, build) -> torch.Tensor:
    if is_tracing():
        table = None if is_symbolic(*key) else _COORD_CACHE.get(key)
        return build() if table is None else table
    table = _COORD_CACHE.get(key)
    if table is None:
        if len(_COORD_CACHE) > 512:  # many distinct sizes (multi-scale training): start over
            _COORD_CACHE.clear()
        table = _COORD_CACHE[key] = build()
    return table


#: How the absolute position embedding normalises grid coordinates: by half of each side (the ImageNet models), or
#: by half of the grid's token count on both axes (the official DINO detection backbone, which its released
#: detector was trained with; a 14 x 14 window gives ``(i - 98) / 98``).
COORD_NORMS = ('side', 'tokens')


def _grid_coords(h: int, w: int, device, norm: str = 'side') -> torch.Tensor:
    """``(h * w, 2)`` centred, normalised (row, col) coordinates ``(i - n) / n`` of an ``h x w`` grid, with
    ``n = side // 2`` per axis (``norm='side'``) or ``n = h * w // 2`` on both (``'tokens'``); an ``n`` of 0
    gives 0."""

    def build():
        axes = []
        for side in (h, w):
            centre = side // 2 if norm == 'side' else h * w // 2
            axes.append((torch.arange(side, dtype=torch.float32, device=device) - centre) / size_max(centre, 1))
        return torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1).reshape(-1, 2)

    return _cached(('grid', norm, h, w, device), build)


def _log_relative_coords(h: int, w: int, device) -> torch.Tensor:
    """``((2h-1) * (2w-1), 2)`` Swin-v2 log-spaced relative coordinates: ``d / (n - 1)`` scaled to [-8, 8], then
    ``sign * log2(|x| + 1) / log2(8)``."""

    def build():
        axes = []
        for n in (h, w):
            # a side of 1 has the single offset 0, which stays 0 (divided by 1, not by 0)
            axes.append(torch.arange(-(n - 1), n, dtype=torch.float32, device=device) / size_max(n - 1, 1))
        table = torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1) * 8
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
        return table.reshape(-1, 2)

    return _cached(('log', h, w, device), build)


def _relative_position_index(h: int, w: int, device) -> torch.Tensor:
    """``(h*w, h*w)`` index of each token pair's relative offset into the ``(2h-1) x (2w-1)`` table."""

    def build():
        coords = torch.stack(torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                                            indexing='ij')).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        return (rel[..., 0] + h - 1) * (2 * w - 1) + rel[..., 1] + w - 1

    return _cached(('index', h, w, device), build)


def _cpb_mlp(out_features: int) -> nn.Sequential:
    """Linear(2, 512) - ReLU - Linear(512, out, no bias): the MLP of both position encodings."""
    return nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, out_features, bias=False))


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


class MlpPositionEmbedding(nn.Module):
    """Absolute position embedding: ``x + MLP(normalised (row, col))`` for tokens of an ``h x w`` grid."""

    def __init__(self, channels: int, coord_norm: str = 'side'):
        super().__init__()
        self.cpb_mlp = _cpb_mlp(channels)
        self.coord_norm = coord_norm

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        coords = _grid_coords(h, w, x.device, self.coord_norm).to(self.cpb_mlp[0].weight.dtype)
        return x + self.cpb_mlp(coords).to(x.dtype)


class ContinuousPositionBias(nn.Module):
    """Swin-v2 continuous position bias ``16 * sigmoid(MLP(log coords))`` for attention within an ``h x w`` grid,
    shape ``(heads, h*w, h*w)``."""

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.cpb_mlp = _cpb_mlp(num_heads)

    def forward(self, h: int, w: int) -> torch.Tensor:
        device = self.cpb_mlp[0].weight.device
        table = self.cpb_mlp(_log_relative_coords(h, w, device).to(self.cpb_mlp[0].weight.dtype))
        bias = table[_relative_position_index(h, w, device).reshape(-1)].reshape(h * w, h * w, self.num_heads)
        return 16 * torch.sigmoid(bias.permute(2, 0, 1))


class WindowAttention(nn.Module):
    """Multi-head self-attention over a token sequence whose last ``h * w`` tokens form a grid (continuous position
    bias); ``num_extra`` leading tokens (carrier tokens) get a zero bias, as in the official code."""

    def __init__(self, channels: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f'channels {channels} must be divisible by num_heads {num_heads}.')
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pos_emb_funct = ContinuousPositionBias(num_heads)

    def forward(self, x: torch.Tensor, grid: Tuple[int, int], num_extra: int = 0) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.pos_emb_funct(*grid)
        if num_extra:
            bias = F.pad(bias, (num_extra, 0, num_extra, 0))
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype).unsqueeze(0),
                                           dropout_p=self.attn_drop if self.training else 0.)
        # An explicit copy before merging the heads (same values): the CPU attention kernel may return this
        # transpose already contiguous, and ONNX export then records a view that is invalid for the strides of
        # its decomposed attention.
        x = x.transpose(1, 2).clone(memory_format=torch.contiguous_format)
        return self.proj_drop(self.proj(x.reshape(batch, tokens, channels)))


class Mlp(nn.Module):
    """Linear - GELU - Linear (with dropout)."""

    def __init__(self, channels: int, hidden_channels: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_channels, channels)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ConvBlock(nn.Module):
    """Residual conv block: conv3x3 - BN - GELU - conv3x3 - BN (optional layer scale), stochastic depth."""

    def __init__(self, channels: int, drop_path: float = 0., layer_scale: Optional[float] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(channels, eps=1e-5)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.gamma = layer_scale_parameter(channels, layer_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.gamma is not None:
            y = y * self.gamma.reshape(1, -1, 1, 1)
        return x + self.drop_path(y)


class Downsample(nn.Module):
    """LayerNorm2d (eps 1e-6) + conv3x3 stride 2 (no bias), channels x2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = LayerNorm2d(in_channels, eps=1e-6)
        self.reduction = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(x))


def carrier_pool_geometry(size: int, window_size: int, ct_size: int) -> Tuple[int, int, int]:
    """``(outputs, kernel, stride)`` of the carrier-token average pooling along one axis of a map of ``size``
    (a multiple of ``window_size``): the official ``TokenInitializer`` formula, evaluated at the runtime size.

    The official ``outputs = int(ct_size * size / window_size)`` and ``stride = int(size / outputs)`` are, for
    ``size = n * window_size``, exactly ``ct_size * n`` and ``window_size // ct_size``: written so in integers, they
    stay expressions of a symbolic size. The kernel grows with the map (``n + 3`` for window 7 and ct_size 2)."""
    outputs = ct_size * (size // window_size)
    stride = window_size // ct_size
    kernel = size - (outputs - 1) * stride
    return outputs, kernel, stride


def pooling_matrix(size, outputs, kernel, stride, like: torch.Tensor) -> torch.Tensor:
    """``(outputs, size)``: row ``o`` averages positions ``o * stride`` to ``o * stride + kernel - 1``, the windows
    of an average pooling without padding; built from (possibly symbolic) sizes."""
    start = torch.arange(outputs, device=like.device) * stride
    position = torch.arange(size, device=like.device)
    inside = (position >= start[:, None]) & (position < start[:, None] + kernel)
    return inside.to(like.dtype) / kernel


class TokenInitializer(nn.Module):
    """Carrier tokens of a padded ``(B, C, nh * ws, nw * ws)`` map: depth-wise 3x3 conv position embedding, then
    average pooling to ``(nh * ct, nw * ct)``; returned per window, ``(B * nh * nw, ct * ct, C)``."""

    def __init__(self, channels: int, window_size: int, ct_size: int):
        super().__init__()
        self.pos_embed = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.window_size = window_size
        self.ct_size = ct_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        geo_h = carrier_pool_geometry(height, self.window_size, self.ct_size)
        geo_w = carrier_pool_geometry(width, self.window_size, self.ct_size)
        x = self.pos_embed(x)
        if is_symbolic(height, width):
            # ONNX's AveragePool takes its kernel as a constant attribute, and this kernel grows with the map: the
            # same windows averaged by two products with 0 / (1 / kernel) matrices (equal within float rounding)
            rows = pooling_matrix(height, *geo_h, like=x)
            columns = pooling_matrix(width, *geo_w, like=x)
            x = rows @ x @ columns.transpose(0, 1)
        else:
            x = F.avg_pool2d(x, kernel_size=(geo_h[1], geo_w[1]), stride=(geo_h[2], geo_w[2]))
        cs = self.ct_size
        nh, nw = geo_h[0] // cs, geo_w[0] // cs
        x = x.reshape(batch, channels, nh, cs, nw, cs).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(batch * nh * nw, cs * cs, channels)


def _carrier_to_grid(ct: torch.Tensor, batch: int, nh: int, nw: int, cs: int) -> torch.Tensor:
    """Per-window carrier tokens ``(B * nh * nw, cs * cs, C)`` -> raster order over the whole grid
    ``(B, nh * cs * nw * cs, C)``."""
    channels = ct.shape[-1]
    ct = ct.reshape(batch, nh, nw, cs, cs, channels).permute(0, 1, 3, 2, 4, 5)
    return ct.reshape(batch, nh * cs * nw * cs, channels)


def _grid_to_carrier(ct: torch.Tensor, batch: int, nh: int, nw: int, cs: int) -> torch.Tensor:
    """Inverse of :func:`_carrier_to_grid`."""
    channels = ct.shape[-1]
    ct = ct.reshape(batch, nh, cs, nw, cs, channels).permute(0, 1, 3, 2, 4, 5)
    return ct.reshape(batch * nh * nw, cs * cs, channels)


class HATBlock(nn.Module):
    """Transformer block on windows, with Hierarchical Attention when ``carrier_tokens`` is on.

    Args:
        channels, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path: as usual.
        window_size (int): side of the (square) windows.
        layer_scale (float, optional): initial layer scale (``gamma1``-``gamma4``); None: none.
        carrier_tokens (bool): HAT: carrier-token attention + MLP, then window attention over
            ``[carrier tokens ; window tokens]``.
        ct_size (int): carrier tokens per window side.
        propagate (bool): add the carrier tokens, nearest-upsampled to the window, to the window tokens at the end
            (the official ``last and do_propagation``).
        coord_norm (str): coordinate normalisation of the position embeddings, one of :data:`COORD_NORMS`.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop: float = 0.,
                 attn_drop: float = 0.,
                 drop_path: float = 0.,
                 layer_scale: Optional[float] = None,
                 carrier_tokens: bool = False,
                 ct_size: int = 2,
                 propagate: bool = False,
                 coord_norm: str = 'side'):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.window_size = window_size
        self.carrier_tokens = carrier_tokens
        self.ct_size = ct_size
        self.propagate = propagate and carrier_tokens
        self.pos_embed = MlpPositionEmbedding(channels, coord_norm)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = Mlp(channels, hidden, drop)
        self.gamma3 = layer_scale_parameter(channels, layer_scale)
        self.gamma4 = layer_scale_parameter(channels, layer_scale)
        if carrier_tokens:
            self.hat_norm1 = nn.LayerNorm(channels)
            self.hat_norm2 = nn.LayerNorm(channels)
            self.hat_attn = WindowAttention(channels, num_heads, qkv_bias, attn_drop, drop)
            self.hat_mlp = Mlp(channels, hidden, drop)
            self.hat_pos_embed = MlpPositionEmbedding(channels, coord_norm)
            self.gamma1 = layer_scale_parameter(channels, layer_scale)
            self.gamma2 = layer_scale_parameter(channels, layer_scale)

    def forward(self, x: torch.Tensor, ct: Optional[torch.Tensor], batch: int, nh: int,
                nw: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``x``: window tokens ``(B * nh * nw, ws * ws, C)``; ``ct``: carrier tokens ``(B * nh * nw, cs * cs, C)``
        (None without HAT). Returns both, updated."""
        ws = self.window_size
        x = self.pos_embed(x, ws, ws)
        num_ct = 0
        if self.carrier_tokens:
            cs = self.ct_size
            gh, gw = nh * cs, nw * cs
            g = self.hat_pos_embed(_carrier_to_grid(ct, batch, nh, nw, cs), gh, gw)
            g = g + self.drop_path(apply_layer_scale(self.hat_attn(self.hat_norm1(g), (gh, gw)), self.gamma1))
            g = g + self.drop_path(apply_layer_scale(self.hat_mlp(self.hat_norm2(g)), self.gamma2))
            ct = _grid_to_carrier(g, batch, nh, nw, cs)
            num_ct = ct.shape[1]
            x = torch.cat((ct, x), dim=1)
        x = x + self.drop_path(apply_layer_scale(self.attn(self.norm1(x), (ws, ws), num_ct), self.gamma3))
        x = x + self.drop_path(apply_layer_scale(self.mlp(self.norm2(x)), self.gamma4))
        if self.carrier_tokens:
            ct, x = x.split([num_ct, ws * ws], dim=1)
            if self.propagate:
                cs = self.ct_size
                ct_map = ct.transpose(1, 2).reshape(ct.shape[0], -1, cs, cs)
                up = F.interpolate(ct_map.float(), size=(ws, ws), mode='nearest').to(x.dtype)
                x = x + apply_layer_scale(up.flatten(2).transpose(1, 2), self.gamma1)
        return x, ct


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, C, H, W)`` (multiples of ``ws``) -> ``(B * H/ws * W/ws, ws * ws, C)``, windows in raster order."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height // ws, ws, width // ws, ws).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, ws * ws, channels)


def window_reverse(windows: torch.Tensor, ws: int, batch: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    x = windows.reshape(batch, height // ws, width // ws, ws, ws, -1).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(batch, -1, height, width)


class FasterViTStage(nn.Module):
    """``downsample`` (identity in stage 0), then conv blocks, or transformer blocks on windows of the map padded
    to a multiple of ``window_size`` (with a ``global_tokenizer`` for HAT), cropped back to the input size.
    ``pad_conv``: conv blocks too run on the padded map (the official DINO backbone), which changes the bottom and
    right borders of a map whose size is not a multiple of ``window_size``.

    :meth:`forward_blocks` applies the blocks with ``run_blocks`` (:func:`~mmlightvit.models.layers.apply_blocks`
    by default; the backbone passes its :meth:`~mmlightvit.models.layers.LightBackbone.run_blocks`, which adds
    gradient checkpointing)."""

    def __init__(self, downsample: nn.Module, blocks: List[nn.Module], transformer: bool = False,
                 window_size: int = 7, global_tokenizer: Optional[nn.Module] = None, pad_conv: bool = False):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.transformer = transformer
        self.window_size = window_size
        self.global_tokenizer = global_tokenizer
        self.pad_conv = pad_conv

    def forward_blocks(self, x: torch.Tensor, run_blocks: Callable = apply_blocks) -> torch.Tensor:
        ws = self.window_size
        height, width = x.shape[-2:]
        # ``ceil(n / ws) * ws - n`` (= ``-n % ws``): a multiple of ws minus n keeps a traced graph's size
        # expressions simple (the padded map is exactly ``ws * ceil(n / ws)``)
        pad_h, pad_w = ((height + ws - 1) // ws * ws - height, (width + ws - 1) // ws * ws - width) \
            if self.transformer or self.pad_conv else (0, 0)
        # with symbolic sizes, whether padding is needed is unknown until run time: pad (by 0 perhaps) and crop
        padded = is_symbolic(pad_h, pad_w) or pad_h or pad_w
        if padded:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        if self.transformer:
            x = self._window_blocks(x, run_blocks)
        else:
            x = run_blocks(self.blocks, x)
        if padded:
            x = x[:, :, :height, :width].contiguous()
        return x

    def _window_blocks(self, x: torch.Tensor, run_blocks: Callable) -> torch.Tensor:
        """The transformer blocks on the windows of a map whose sides are multiples of ``window_size``; the
        carrier tokens (None without HAT) are the state the blocks pass on."""
        ws = self.window_size
        batch, _, hp, wp = x.shape
        nh, nw = hp // ws, wp // ws
        if is_exporting() and is_symbolic(nh, nw) and min(traced_value(nh), traced_value(nw)) < 2:
            # A count of 1 at the traced size is fixed to 1 in the graph (torch.export's 0/1 specialisation of the
            # window batch): it would fail or be wrong wherever the map has more windows. torch.onnx retries a
            # capture that raised in strict mode, which passes this check (and exports that graph): export_onnx
            # therefore traces at dynamic_export_min_size or more, and this error stops torch.export callers only.
            raise ValueError(
                f'FasterViT with dynamic sizes must be traced at a size with at least 2 x 2 windows in every '
                f'transformer stage; this one has {traced_value(nh)} x {traced_value(nw)} windows of {ws} (window 7: '
                'trace at more than 224 px per side, e.g. --shape 256 256).')
        ct = self.global_tokenizer(x) if self.global_tokenizer is not None else None
        blocks = [partial(block, batch=batch, nh=nh, nw=nw) for block in self.blocks]
        x, ct = run_blocks(blocks, window_partition(x, ws), ct)
        return window_reverse(x, ws, batch, hp, wp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_blocks(self.downsample(x))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint layouts

#: Classifier-side keys of the official layout: the head and the final BatchNorm before pooling.
HEAD_PREFIXES = ('head.', 'norm.')
#: Size-dependent buffers of the official files (recomputed here at run time).
SIZE_BUFFERS = ('relative_bias', 'relative_coords_table', 'relative_position_index')


def is_size_buffer(key: str) -> bool:
    return key.rsplit('.', 1)[-1] in SIZE_BUFFERS


def is_official_layout(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(('patch_embed.', 'levels.')) for k in state)


def official_to_mmlightvit(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Official keys -> ours; drops the classifier (``head.*``, ``norm.*``), the size-dependent buffers and the
    duplicate ``global_tokenizer.to_global_feature.pos`` (the same conv as ``global_tokenizer.pos_embed``)."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith(HEAD_PREFIXES) or is_size_buffer(key):
            continue
        if key.startswith('patch_embed.conv_down.'):
            key = 'stem.' + key[len('patch_embed.conv_down.'):]
        else:
            m = re.match(r'levels\.(\d+)\.(.*)$', key)
            if m:
                level, rest = int(m.group(1)), m.group(2)
                if rest.startswith('downsample.'):
                    rest = rest.replace('downsample.reduction.0.', 'downsample.reduction.')
                    key = f'stages.{level + 1}.{rest}'
                elif rest.startswith('global_tokenizer.to_global_feature.pos.'):
                    twin = f'levels.{level}.global_tokenizer.pos_embed.' + rest.rsplit('.', 1)[-1]
                    if twin in state:
                        continue
                    key = f'stages.{level}.global_tokenizer.pos_embed.' + rest.rsplit('.', 1)[-1]
                else:
                    key = f'stages.{level}.{rest}'
        out[key] = value
    return out


def infer_fastervit_arch(state: Dict[str, torch.Tensor]) -> dict:
    """``dim``, ``in_dim``, ``depths``, ``transformer_heads`` (heads of stages 2 and 3, None where a stage has no
    blocks) and ``layer_scale`` (whether ``gamma*`` tensors exist) of a state dict in either layout."""
    if is_official_layout(state):
        state = official_to_mmlightvit(state)
    depths = count_blocks(state)
    heads = []
    for i in (2, 3):
        key = f'stages.{i}.blocks.0.attn.pos_emb_funct.cpb_mlp.2.weight'
        heads.append(state[key].shape[0] if key in state else None)
    return dict(dim=state['stem.3.weight'].shape[0], in_dim=state['stem.0.weight'].shape[0], depths=tuple(depths),
                transformer_heads=tuple(heads), layer_scale=any(k.endswith('.gamma3') for k in state))


def mmlightvit_to_official(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Our keys -> the official layout (no head, no size-dependent buffers; the tokenizer conv under both names)."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith('stem.'):
            out['patch_embed.conv_down.' + key[len('stem.'):]] = value
            continue
        m = re.match(r'stages\.(\d+)\.(.*)$', key)
        if not m:
            out[key] = value
            continue
        stage, rest = int(m.group(1)), m.group(2)
        if rest.startswith('downsample.'):
            rest = rest.replace('downsample.reduction.', 'downsample.reduction.0.')
            out[f'levels.{stage - 1}.{rest}'] = value
        elif rest.startswith('global_tokenizer.pos_embed.'):
            out[f'levels.{stage}.{rest}'] = value
            out[f'levels.{stage}.global_tokenizer.to_global_feature.pos.' + rest.rsplit('.', 1)[-1]] = value
        else:
            out[f'levels.{stage}.{rest}'] = value
    return out


# ----------------------------------------------------------------------------------------------------------------
# Backbone


@MODELS.register_module()
class FasterViT(LightBackbone):
    """FasterViT backbone (variants 0-6).

    Args:
        arch (str | dict): ``'0'`` ... ``'6'`` (aliases ``'faster_vit_0'``, ``'fastervit-0'``,
            ``'faster_vit_0_224'``, ...) or ``dict(dim=int, in_dim=int, depths=(4 ints), num_heads=(4 ints)
            [, layer_scale=None | float, layer_scale_conv=None | float, do_propagation=False, mlp_ratio=4])``.
            Stage widths are ``dim * 2**i``; ``in_dim`` is the width of the stem's first conv.
        in_channels (int): input channels.
        window_size (int | Sequence[int]): window side of the two transformer stages (official 7).
        ct_size (int): carrier tokens per window side in the HAT stage (official 2), ``1 <= ct_size <=
            window_size``.
        use_carrier_tokens (bool): HAT in stage 3 (official). False: plain window attention there (ablation; the
            HAT modules and the token initialiser are not built, so official checkpoints do not load).
        do_propagation (bool, optional): add the carrier tokens back into their windows after the HAT stage's last
            block; None: the arch's (variants 3-6).
        mlp_ratio (float, optional): MLP expansion; None: the arch's (4).
        qkv_bias (bool): bias of the qkv projections.
        drop_path_rate (float): stochastic depth, increasing linearly over all blocks (official schedule; the
            official ImageNet training used 0.2 for 0-2, 0.3 for 3-5, 0.5 for 6).
        coord_norm (str): ``'side'`` (the ImageNet models) or ``'tokens'`` (the official DINO backbone): how the
            absolute position embeddings normalise window and carrier-token coordinates (:data:`COORD_NORMS`).
        pad_conv_stages (bool): the conv stages too run on the map padded to a multiple of 7 at the bottom and
            right, cropped back after (the official DINO backbone); changes their borders at sizes that are not
            multiples of 7. The DINO configs turn both on, since the released detector was trained so.
        out_indices, frozen_stages, norm_eval, with_cp, out_norm_cfg, init_cfg: see :class:`LightBackbone`.

    Any input size works: the stem and down-sampling convs (3x3, stride 2, padding 1) give ``ceil(n / 2)`` each,
    so stage ``i`` outputs ``ceil(H / 2**(i + 2))``; the transformer stages pad to a multiple of the window and
    crop back (see the module docstring). A 224x224 input computes exactly what the official model computes.
    """

    arch_settings = {
        '0': dict(dim=64, in_dim=64, depths=(2, 3, 6, 5), num_heads=(2, 4, 8, 16)),
        '1': dict(dim=80, in_dim=32, depths=(1, 3, 8, 5), num_heads=(2, 4, 8, 16)),
        '2': dict(dim=96, in_dim=64, depths=(3, 3, 8, 5), num_heads=(2, 4, 8, 16)),
        '3': dict(dim=128, in_dim=64, depths=(3, 3, 12, 5), num_heads=(2, 4, 8, 16), layer_scale=1e-5,
                  do_propagation=True),
        '4': dict(dim=196, in_dim=64, depths=(3, 3, 12, 5), num_heads=(4, 8, 16, 32), layer_scale=1e-5,
                  do_propagation=True),
        '5': dict(dim=320, in_dim=64, depths=(3, 3, 12, 5), num_heads=(4, 8, 16, 32), layer_scale=1e-5,
                  do_propagation=True),
        '6': dict(dim=320, in_dim=64, depths=(3, 3, 16, 8), num_heads=(4, 8, 16, 32), layer_scale=1e-5,
                  do_propagation=True),
    }
    arch_aliases = {}
    for _name in arch_settings:
        arch_aliases[f'faster_vit_{_name}'] = _name
        arch_aliases[f'faster_vit_{_name}_224'] = _name
    del _name
    head_prefixes = HEAD_PREFIXES
    # BatchNorm2d ``norm`` before the pooling, then ``head``
    classifier_key_map = {'norm.': 'pre_norm.', 'head.': 'classifier.fc.'}
    # only the transformer stages (2, 3) have tensors whose shape gives the head count
    arch_fields = ('dim', 'in_dim', 'depths', 'transformer_heads', 'layer_scale')
    # the official DINO detector puts BatchNorm ``norm{i}`` on the returned maps, under our names
    official_out_norms = True
    reference_models = ('fastervit', {name: f'faster_vit_{name}_224' for name in arch_settings})
    # ONNX graphs are dynamic (checked at sizes outside these guards: one window, no padding); ExecuTorch and Core ML
    # programs hold one size:
    fixed_size_program = (
        'torch.export with bounded sizes (ExecuTorch) refuses the guards its graph records on the window counts and '
        'the padding to the window (true at the traced size only, e.g. a count other than 1), and coremltools 9.0 has '
        'no converter for the aten.__and__ of its carrier-token pooling matrices')

    @classmethod
    def detect_layout(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        """``'official'`` (``patch_embed.*`` / ``levels.*``) or ``'mmlightvit'``."""
        return 'official' if is_official_layout(state_dict) else 'mmlightvit'

    @classmethod
    def infer_arch(cls, state_dict: Dict[str, torch.Tensor]) -> dict:
        return infer_fastervit_arch(state_dict)

    @classmethod
    def arch_signature(cls, settings: dict) -> dict:
        return dict(dim=settings['dim'], in_dim=settings['in_dim'], depths=tuple(settings['depths']),
                    transformer_heads=tuple(settings['num_heads'][2:]),
                    layer_scale=settings.get('layer_scale') is not None)

    @classmethod
    def is_dropped_on_conversion(cls, key: str, layout: str) -> bool:
        # also the size-dependent buffers (in any layout), which are recomputed at run time
        return super().is_dropped_on_conversion(key, layout) or is_size_buffer(key)

    #: Stages with hierarchical attention (official ``hat``).
    hat_stages = (False, False, True, False)

    def __init__(self,
                 arch: Union[str, dict] = '0',
                 in_channels: int = 3,
                 window_size: Union[int, Sequence[int]] = 7,
                 ct_size: int = 2,
                 use_carrier_tokens: bool = True,
                 do_propagation: Optional[bool] = None,
                 mlp_ratio: Optional[float] = None,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.,
                 coord_norm: str = 'side',
                 pad_conv_stages: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 out_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, out_norm_cfg=out_norm_cfg, init_cfg=init_cfg)
        settings = self.resolve_arch(arch, required_keys=('dim', 'in_dim', 'depths', 'num_heads'))
        dim, in_dim = int(settings['dim']), int(settings['in_dim'])
        depths, num_heads = tuple(settings['depths']), tuple(settings['num_heads'])
        self.check_per_stage(depths=depths, num_heads=num_heads)
        window_sizes = (window_size, ) * 2 if isinstance(window_size, int) else tuple(window_size)
        if len(window_sizes) != 2 or min(window_sizes) < 1:
            raise ValueError(f'window_size must be a positive int or one per transformer stage (2), got '
                             f'{window_size}.')
        if not 1 <= ct_size <= window_sizes[0]:
            raise ValueError(f'ct_size must be in [1, window_size={window_sizes[0]}], got {ct_size}.')
        if coord_norm not in COORD_NORMS:
            raise ValueError(f'coord_norm must be one of {COORD_NORMS}, got {coord_norm!r}.')
        self.dim, self.depths, self.num_heads = dim, depths, num_heads
        self.window_sizes, self.ct_size = window_sizes, ct_size
        self.use_carrier_tokens = use_carrier_tokens
        self.layer_scale = settings.get('layer_scale')
        layer_scale_conv = settings.get('layer_scale_conv')
        self.do_propagation = bool(settings.get('do_propagation', False)) if do_propagation is None \
            else bool(do_propagation)
        mlp_ratio = settings.get('mlp_ratio', 4.) if mlp_ratio is None else mlp_ratio
        self.stage_channels = [dim * 2**i for i in range(4)]

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, in_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(in_dim, eps=1e-4),
            nn.ReLU(), nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim, eps=1e-4),
            nn.ReLU())
        rates = drop_path_rates(drop_path_rate, depths)
        stages = []
        for i, depth in enumerate(depths):
            channels = self.stage_channels[i]
            downsample = nn.Identity() if i == 0 else Downsample(self.stage_channels[i - 1], channels)
            if i < 2:
                blocks = [ConvBlock(channels, rates[i][j], layer_scale_conv) for j in range(depth)]
                stages.append(FasterViTStage(downsample, blocks, pad_conv=pad_conv_stages))
                continue
            ws = window_sizes[i - 2]
            hat = self.hat_stages[i] and use_carrier_tokens
            blocks = [
                HATBlock(channels, num_heads[i], ws, mlp_ratio, qkv_bias, drop_path=rates[i][j],
                         layer_scale=self.layer_scale, carrier_tokens=hat, ct_size=ct_size,
                         propagate=self.do_propagation and j == depth - 1, coord_norm=coord_norm)
                for j in range(depth)
            ]
            tokenizer = TokenInitializer(channels, ws, ct_size) if hat and depth > 0 else None
            stages.append(FasterViTStage(downsample, blocks, transformer=True, window_size=ws,
                                         global_tokenizer=tokenizer))
        self.stages = nn.ModuleList(stages)
        self.apply(init_trunc_normal)  # the official initialisation (convs keep PyTorch's default)
        self._init_contract()

    @property
    def dynamic_export_min_size(self) -> int:
        """The smallest input side a graph with dynamic sizes is traced at: 2 windows in each transformer stage
        (stride 16 and 32; 225 for window 7). torch.export fixes a window count of 1 at the traced size."""
        return max(stride * ws for stride, ws in zip((16, 32), self.window_sizes)) + 1

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.stages[index]
        return stage.forward_blocks(stage.downsample(x), run_blocks=self.run_blocks)

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints

    def to_own_layout(self, state_dict: Dict[str, torch.Tensor], layout: str) -> 'OrderedDict':
        return official_to_mmlightvit(state_dict)

    def to_official_layout(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict':
        """The official layout without the classifier and the size-dependent buffers (the official loader is
        non-strict)."""
        return mmlightvit_to_official(state_dict)
