"""TransNeXt: Robust Foveal Visual Perception for Vision Transformers (CVPR 2024, arXiv 2311.17132).
Official code: https://github.com/DaiShiResearch/TransNeXt (this follows its dense-prediction backbone,
``detection/*/transnext_native.py`` / ``segmentation/*/transnext_native.py``).

Four stages with overlapping patch embeddings (7x7 stride 4, then 3x3 stride 2; conv + LayerNorm). Blocks are
pre-norm: a token mixer, then a Convolutional GLU channel mixer, each with stochastic depth. Stages 1-3 mix tokens
with Aggregated Attention (a 3x3 sliding window at full resolution and a pooled summary of the map, one softmax,
length-scaled cosine similarity, query embedding, CPB bias for the pooled keys, learnable tokens after the softmax);
stage 4 with full self-attention using the same scaling and CPB bias. Every stage ends with ``norm{i}``, whose output
is both the stage's feature map and the next stage's input.

The attention layers and their position bias live in :mod:`mmlightvit.models.backbones.transnext_attention_layers`,
the attention core they run in :mod:`mmlightvit.models.backbones.transnext_attention`, with two implementations
(``attn_impl='efficient'`` default, ``'reference'``). In eval mode without autograd on the CPU, the efficient one runs
in its flash inference form (the CPU flash-attention kernel, the position-bias tables cached per input size;
``fast_inference``).

Module tree: ``stem`` (= official ``patch_embed1``), ``stages.{i}.patch_embed`` (= ``patch_embed{i+1}``, stages
1-3), ``stages.{i}.blocks.{j}`` (= ``block{i+1}.{j}``, with the official sub-names: ``norm1``, ``attn.{q, kv, sr,
norm, proj, query_embedding, temperature, relative_pos_bias_local, learnable_tokens, learnable_bias, cpb_fc1,
cpb_fc2}`` / ``attn.qkv``, ``norm2``, ``mlp.{fc1, dwconv.dwconv, fc2}``), ``stages.{i}.norm`` (= ``norm{i+1}``).

Depends on torch, mmengine and mmlightvit only.
"""
import re
from collections import OrderedDict
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.registry import MODELS
from ..layers import (DropPath, LightBackbone, count_blocks, drop_path_rates, init_trunc_normal, is_symbolic,
                      size_max)
from .transnext_attention import (check_impl, cpb_axis_tables, cpb_axis_tables_in_graph, cpb_coords_table,
                                  length_scale, window_padding_mask)
# ATTENTION_SCALINGS, CPBBias and keys_in_xy_order are not used here: imported so that they stay importable from
# this module, where they were defined before the attention layers moved.
from .transnext_attention_layers import (ATTENTION_SCALINGS, AggregatedAttention, Attention, CPBBias,  # noqa: F401
                                         StageContext, keys_in_xy_order)


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, (tuple, list)):
        assert len(value) == 2, value
        return int(value[0]), int(value[1])
    return int(value), int(value)


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
    # ONNX graphs are dynamic (checked at sizes outside these guards); ExecuTorch and Core ML programs hold one size:
    fixed_size_program = (
        'torch.export with bounded sizes (ExecuTorch) refuses the guards its graph records on the pooled grids, and '
        'coremltools 9.0 has no converter for the aten.__and__, aten.__or__ and sym_max of its size-dependent tables')

    @classmethod
    def detect_layout(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        return 'official' if is_official_layout(state_dict) else 'mmlightvit'

    @classmethod
    def infer_arch(cls, state_dict: Dict[str, torch.Tensor]) -> dict:
        if is_official_layout(state_dict):
            state_dict = official_to_mmlightvit(state_dict)
        return infer_transnext_arch(state_dict)

    @classmethod
    def is_dropped_on_conversion(cls, key: str, layout: str) -> bool:
        # also the official models' non-persistent buffers, should a file hold them
        return super().is_dropped_on_conversion(key, layout) or (
            layout == 'official' and _OFFICIAL_BUFFERS.match(key) is not None)

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
        self.check_per_stage(widths=widths, depths=depths, num_heads=num_heads, mlp_ratios=mlp_ratios,
                             sr_ratios=sr_ratios)
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
        for module in self.modules():  # the official initialisation
            init_trunc_normal(module, conv_init='he_fan_out')
        self._init_contract()

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
        return self._context(index, hw, device)

    def _context(self, index: int, hw: Tuple[int, int], device: torch.device, in_graph: bool = False) -> StageContext:
        """The tables of :meth:`stage_context`; ``in_graph``: computed in a traced graph from the symbolic runtime
        size ``hw``, without ``torch.unique`` (:func:`cpb_axis_tables_in_graph`; the CPB table grids must then be
        multiples of the pooling ratio, see :meth:`check_export_size`)."""
        sr = self.sr_ratios[index]
        stride = 2**(index + 2)
        full = sr == 1
        if full:
            pool_hw = hw
        elif in_graph and self.extrapolation:  # the input is a multiple of 32 there: sr divides the map
            pool_hw = (hw[0] // sr, hw[1] // sr)
        else:
            pool_hw = (size_max(1, hw[0] // sr), size_max(1, hw[1] // sr))
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
            if in_graph:
                self.check_export_size(index, cpb_hw)
                values_h, index_h = cpb_axis_tables_in_graph(cpb_hw[0], sr, pretrain[0], device)
                values_w, index_w = cpb_axis_tables_in_graph(cpb_hw[1], sr, pretrain[1], device)
                coords_w = values_w.shape[0]
            else:
                values_h, index_h = cpb_axis_tables(cpb_hw[0], cpb_pool_hw[0], pretrain[0], device)
                values_w, index_w = cpb_axis_tables(cpb_hw[1], cpb_pool_hw[1], pretrain[1], device)
                coords_w = len(values_w)
            coords = cpb_coords_table(values_h, values_w)
        return StageContext(hw, pool_hw, padding_mask, scale, coords, index_h, index_w, cpb_hw, cpb_pool_hw,
                            coords_w, in_graph, self.extrapolation)

    def check_export_size(self, index: int, grid: Tuple[int, int]) -> None:
        """In a traced graph the CPB coordinates of stage ``index`` are built without ``torch.unique``
        (:func:`cpb_axis_tables_in_graph`), which needs its pooling ratio to divide the table grid: ``img_size`` /
        2**(index + 2) in interpolation mode (a ValueError here if not), the runtime map in extrapolation mode (the
        input a multiple of :attr:`export_size_divisor`, which the exported graph records)."""
        sr = self.sr_ratios[index]
        if not is_symbolic(*grid) and any(side < sr or side % sr for side in grid):
            raise ValueError(
                f'TransNeXt exports its position bias for CPB table grids that are multiples of the pooling ratio: '
                f'stage {index + 1} has a {grid[0]}x{grid[1]} grid and ratio {sr}; use an img_size that is a '
                'multiple of 32.')

    @property
    def export_size_divisor(self) -> int:
        """What input height and width must be multiples of in an exported graph: 32 in extrapolation mode (every
        stage's map divides into its pooled grid), 1 in interpolation mode (any size)."""
        return 32 if self.extrapolation and self.use_pooled_branch else 1

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
        if is_symbolic(height, width):  # a graph traced with dynamic sizes: the tables from the runtime size
            ctx = self._context(index, (height, width), x.device, in_graph=True)
        else:
            ctx = self.stage_context(index, (height, width), x.device)
        flash = self.flash_inference_allowed()
        x = x.flatten(2).transpose(1, 2)
        x = self.run_blocks([partial(block, hw=(height, width), ctx=ctx, flash=flash) for block in stage.blocks], x)
        x = stage.norm(x)
        return x.transpose(1, 2).reshape(batch, channels, height, width)

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints

    def to_own_layout(self, state_dict: Dict[str, torch.Tensor], layout: str) -> 'OrderedDict':
        """The official layout: the ImageNet classifier, or the mmdet / mmseg backbone once the loader stripped
        ``backbone.`` (``patch_embed{i}``, ``block{i}.{j}``, ``norm{i}``)."""
        return official_to_mmlightvit(state_dict)

    def to_official_layout(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict':
        return mmlightvit_to_official(state_dict)


def infer_transnext_arch(state: Dict[str, torch.Tensor]) -> dict:
    """``widths`` and ``depths`` of a state dict in our layout; ``KeyError`` when it is not a complete backbone."""
    widths = [int(state['stem.proj.weight'].shape[0])]
    widths += [int(state[f'stages.{s}.patch_embed.proj.weight'].shape[0]) for s in (1, 2, 3)]
    return dict(widths=tuple(widths), depths=count_blocks(state))
