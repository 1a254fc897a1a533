"""EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision Applications
(ECCV-W 2022, arXiv 2206.10589). Official code: https://github.com/mmaaz60/EdgeNeXt.

Four stages of ConvNeXt-style conv encoders (depth-wise kxk conv, norm, MLP x4, layer scale) whose last block in
stages 2-4 is a Split Depth-wise Transpose Attention (SDTA) encoder: hierarchical depth-wise 3x3 convs over channel
splits, a Fourier positional encoding (first SDTA stage only), cross-covariance (channel) attention, MLP.

The module tree mirrors timm's ``EdgeNeXt`` (``stem.{0,1}``, ``stages.{i}.downsample.{0,1}``,
``stages.{i}.blocks.{j}.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``; SDTA blocks ``convs.{k}``,
``pos_embd.token_projection``, ``norm_xca``, ``gamma_xca``, ``xca.{temperature,qkv,proj}``), so a timm state dict
loads once its classifier is dropped. The official release layout (``downsample_layers.{i}``, ``stages.{i}.{j}``,
``dwconv`` / ``pwconv1`` / ``pwconv2``) and mmpretrain's layout (``depthwise_conv``, ``conv_modules``, ``csa``,
...) are renamed by :meth:`EdgeNeXt.convert_checkpoint`.

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

from mmlightvit.registry import MODELS
from ..layers import (DropPath, LayerNorm2d, LightBackbone, Stage, apply_layer_scale, build_activation, count_blocks,
                      drop_path_rates, init_trunc_normal, layer_scale_parameter)

# ----------------------------------------------------------------------------------------------------------------
# Building blocks


class PatchConv(nn.Conv2d):
    """A non-overlapping ``k x k`` stride-``k`` conv (stem, down-sampling) that zero-pads the right and bottom edges
    to a multiple of ``k`` first, so any input size works and the output is ``ceil(n / k)`` (what a conv with
    padding gives). Inputs whose sizes are multiples of ``k`` are untouched (the official model's behaviour).

    The pad is applied unconditionally (a zero pad changes nothing): a Python ``if`` on the size would be decided
    once when the model is traced for ONNX export, fixing the padding of the export size for every input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_h, k_w = self.kernel_size
        pad_h, pad_w = -x.shape[-2] % k_h, -x.shape[-1] % k_w
        return super().forward(F.pad(x, (0, pad_w, 0, pad_h)))


def _norm(channels: int, bn_hs: bool, channels_last: bool) -> nn.Module:
    """LayerNorm (eps 1e-6) over the channels of an NHWC (``channels_last``) or NCHW map, or BatchNorm2d."""
    if bn_hs:
        return nn.BatchNorm2d(channels)
    return nn.LayerNorm(channels, eps=1e-6) if channels_last else LayerNorm2d(channels, eps=1e-6)


class Mlp(nn.Module):
    """Point-wise MLP on channels-last maps: Linear (x ``mlp_ratio``), activation, Linear back."""

    def __init__(self, channels: int, hidden_channels: int, act_cfg: Union[str, dict]):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvEncoder(nn.Module):
    """Conv encoder: depth-wise ``k x k`` conv, norm, MLP, layer scale, residual (stochastic depth).

    ``bn_hs``: BatchNorm on the NCHW map instead of LayerNorm, Hardswish instead of GELU, no bias in the
    depth-wise conv (the official ``ConvEncoderBNHS``). ``layer_scale``: initial layer scale (``gamma``); None:
    none.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int = 7,
                 mlp_ratio: float = 4,
                 layer_scale: Optional[float] = 1e-6,
                 drop_path: float = 0.,
                 bn_hs: bool = False):
        super().__init__()
        self.bn_hs = bn_hs
        self.conv_dw = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                                 bias=not bn_hs)
        self.norm = _norm(channels, bn_hs, channels_last=True)
        self.mlp = Mlp(channels, int(mlp_ratio * channels), 'HSwish' if bn_hs else 'GELU')
        self.gamma = layer_scale_parameter(channels, layer_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x)
        if self.bn_hs:
            x = self.norm(x).permute(0, 2, 3, 1)
        else:
            x = self.norm(x.permute(0, 2, 3, 1))
        x = apply_layer_scale(self.mlp(x), self.gamma)
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class FourierPositionalEncoding(nn.Module):
    """Sine/cosine features of the normalised row and column positions (``hidden_dim`` each, 2*pi scale,
    temperature 10000) projected to ``channels`` by a 1x1 conv; computed for the runtime ``(H, W)``.

    Returns a ``(1, channels, H, W)`` map (the same for every image of a batch).
    """

    def __init__(self, channels: int, hidden_dim: int = 32, temperature: float = 10000.):
        super().__init__()
        self.token_projection = nn.Conv2d(hidden_dim * 2, channels, kernel_size=1)
        self.hidden_dim = hidden_dim
        self.temperature = temperature
        self.scale = 2 * math.pi

    def _features(self, length: int, device: torch.device) -> torch.Tensor:
        """``(length, hidden_dim)`` features of positions 1..length, normalised by ``length`` (+1e-6)."""
        pos = torch.arange(1, length + 1, dtype=torch.float32, device=device)
        pos = pos / (pos[-1:] + 1e-6) * self.scale
        dim_t = torch.arange(self.hidden_dim, dtype=torch.float32, device=device)
        dim_t = self.temperature**(2 * torch.div(dim_t, 2, rounding_mode='floor') / self.hidden_dim)
        pos = pos[:, None] / dim_t
        return torch.stack((pos[:, 0::2].sin(), pos[:, 1::2].cos()), dim=2).flatten(1)

    def forward(self, height: int, width: int) -> torch.Tensor:
        weight = self.token_projection.weight
        pos_y = self._features(height, weight.device)[:, None, :].expand(height, width, self.hidden_dim)
        pos_x = self._features(width, weight.device)[None, :, :].expand(height, width, self.hidden_dim)
        pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)[None]
        return self.token_projection(pos.to(weight.dtype))


class XCA(nn.Module):
    """Cross-covariance (transposed) attention: per head, a ``d x d`` attention between the L2-normalised
    channel vectors of q and k (over the tokens), scaled by a learnable per-head temperature (init 1)."""

    def __init__(self, channels: int, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f'XCA needs channels divisible by num_heads, got {channels} and {num_heads}.')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)  # each (B, heads, head_dim, N)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.permute(0, 3, 1, 2).reshape(batch, tokens, channels))


class SDTAEncoder(nn.Module):
    """Split depth-wise transpose attention encoder.

    The channels are split into ``scales`` groups of ``ceil(C / scales)`` (the last one may be narrower);
    ``scales - 1`` depth-wise 3x3 convs run hierarchically (each on its split plus the previous conv's output,
    Res2Net-like), the last split passes through. Then the optional positional encoding is added, XCA with layer
    scale (residual), and the MLP with layer scale (residual to the block input).

    ``bn_hs`` (the official ``SDTAEncoderBNHS``): BatchNorm2d for both norms and Hardswish; the XCA norm is
    applied to the map itself, so the XCA residual starts from the normalised tensor. The split convs keep their
    bias in both versions (as in the official code). ``layer_scale``: initial layer scale of both residual branches
    (``gamma_xca``, ``gamma``); None: none.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 scales: int = 2,
                 use_pos_embd: bool = False,
                 mlp_ratio: float = 4,
                 layer_scale: Optional[float] = 1e-6,
                 drop_path: float = 0.,
                 bn_hs: bool = False):
        super().__init__()
        width = math.ceil(channels / scales)
        if scales < 2 or (scales - 1) * width >= channels:
            raise ValueError(f'SDTA cannot split {channels} channels into {scales} groups of ceil(C / scales) = '
                             f'{width} (needs 2 <= scales and a non-empty last group).')
        self.width = width
        self.bn_hs = bn_hs
        self.convs = nn.ModuleList(
            [nn.Conv2d(width, width, 3, padding=1, groups=width) for _ in range(scales - 1)])
        self.pos_embd = FourierPositionalEncoding(channels) if use_pos_embd else None
        self.norm_xca = _norm(channels, bn_hs, channels_last=True)
        self.gamma_xca = layer_scale_parameter(channels, layer_scale)
        self.xca = XCA(channels, num_heads)
        self.norm = _norm(channels, bn_hs, channels_last=True)
        self.mlp = Mlp(channels, int(mlp_ratio * channels), 'HSwish' if bn_hs else 'GELU')
        self.gamma = layer_scale_parameter(channels, layer_scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        splits = torch.split(x, self.width, dim=1)
        outs = [self.convs[0](splits[0])]
        for conv, split in zip(self.convs[1:], splits[1:]):
            outs.append(conv(outs[-1] + split))
        outs.append(splits[-1])
        x = torch.cat(outs, dim=1)

        batch, channels, height, width = x.shape
        if self.bn_hs:
            x = self.norm_xca(x)
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        if self.pos_embd is not None:
            x = x + self.pos_embd(height, width).flatten(2).transpose(1, 2)
        attn = self.xca(x if self.bn_hs else self.norm_xca(x))
        x = x + self.drop_path(apply_layer_scale(attn, self.gamma_xca))

        if self.bn_hs:
            x = self.norm(x.transpose(1, 2).reshape(batch, channels, height, width)).permute(0, 2, 3, 1)
        else:
            x = self.norm(x.reshape(batch, height, width, channels))
        x = apply_layer_scale(self.mlp(x), self.gamma)
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint layouts

#: Classifier-side keys in the official / timm layouts: the head, and the final norm (LayerNorm after pooling;
#: BatchNorm before pooling in the bn_hs models).
HEAD_PREFIXES = ('head.', 'norm.', 'head_dropout.')

# Sub-key renames inside a block (applied to keys already under ``stages.{i}.blocks.{j}.``).
_OFFICIAL_BLOCK_RENAMES = (('dwconv.', 'conv_dw.'), ('pwconv1.', 'mlp.fc1.'), ('pwconv2.', 'mlp.fc2.'))
_MMPRETRAIN_BLOCK_RENAMES = (('depthwise_conv.', 'conv_dw.'), ('pointwise_conv1.', 'mlp.fc1.'),
                             ('pointwise_conv2.', 'mlp.fc2.'), ('conv_modules.', 'convs.'),
                             ('pos_embed.proj.', 'pos_embd.token_projection.'), ('norm_csa.', 'norm_xca.'),
                             ('gamma_csa', 'gamma_xca'), ('csa.scale', 'xca.temperature'), ('csa.', 'xca.'))


def _rename_block(rest: str, renames: Sequence[Tuple[str, str]]) -> str:
    for old, new in renames:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def _from_downsample_layers(state: Dict[str, torch.Tensor],
                            renames: Sequence[Tuple[str, str]]) -> 'OrderedDict[str, torch.Tensor]':
    """``downsample_layers.{i}`` / ``stages.{i}.{j}`` (official and mmpretrain) -> our keys."""
    out = OrderedDict()
    for key, value in state.items():
        m = re.match(r'downsample_layers\.(\d+)\.(.*)$', key)
        if m:
            stage = int(m.group(1))
            key = f'stem.{m.group(2)}' if stage == 0 else f'stages.{stage}.downsample.{m.group(2)}'
        else:
            m = re.match(r'stages\.(\d+)\.(\d+)\.(.*)$', key)
            if m:
                key = f'stages.{m.group(1)}.blocks.{m.group(2)}.{_rename_block(m.group(3), renames)}'
        out[key] = value
    return out


def official_to_mmlightvit(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Official release keys -> ours (classifier keys, if any, are left for the caller to drop)."""
    return _from_downsample_layers(state, _OFFICIAL_BLOCK_RENAMES)


def mmpretrain_to_mmlightvit(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """mmpretrain ``EdgeNeXt`` backbone keys (no ``backbone.`` prefix) -> ours (its ``norm{i}`` are left)."""
    return _from_downsample_layers(state, _MMPRETRAIN_BLOCK_RENAMES)


def mmlightvit_to_official(state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Our (= timm's backbone) keys -> the official release layout."""
    renames = [(new, old) for old, new in _OFFICIAL_BLOCK_RENAMES]
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith('stem.'):
            key = 'downsample_layers.0.' + key[len('stem.'):]
        else:
            m = re.match(r'stages\.(\d+)\.downsample\.(.*)$', key)
            if m:
                key = f'downsample_layers.{m.group(1)}.{m.group(2)}'
            else:
                m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.*)$', key)
                if m:
                    key = f'stages.{m.group(1)}.{m.group(2)}.{_rename_block(m.group(3), renames)}'
        out[key] = value
    return out


def infer_edgenext_arch(state: Dict[str, torch.Tensor]) -> dict:
    """``widths``, ``depths``, ``bn_hs`` (and ``num_heads``, ``kernel_sizes`` where found) of a state dict in
    our/timm layout (convert official and mmpretrain files first)."""
    widths = [int(state['stem.0.weight'].shape[0])]
    widths += [int(state[f'stages.{s}.downsample.1.weight'].shape[0]) for s in (1, 2, 3)]
    depths, heads, kernels = count_blocks(state), [None] * 4, [None] * 4
    for key, value in state.items():
        m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)$', key)
        if m:
            stage = int(m.group(1))
            if m.group(3) == 'xca.temperature':
                heads[stage] = int(value.shape[0])
            elif m.group(3) == 'conv_dw.weight':
                kernels[stage] = int(value.shape[-1])
    arch = dict(widths=tuple(widths), depths=tuple(depths), bn_hs='stem.1.running_mean' in state)
    if all(h is not None for h in heads[1:]):
        arch['num_heads'] = tuple(heads[1] if h is None else h for h in heads)
    if all(k is not None for k in kernels):
        arch['kernel_sizes'] = tuple(kernels)
    return arch


# ----------------------------------------------------------------------------------------------------------------
# Backbone


@MODELS.register_module()
class EdgeNeXt(LightBackbone):
    """EdgeNeXt backbone (XX-Small / X-Small / Small / Base, and the BN + Hardswish ``-bn-hs`` variants).

    Args:
        arch (str | dict): variant name (``'xx-small'``, ``'xxs'``, ``'edgenext_xx_small'``, ``'small-bn-hs'``,
            ``'edgenext_small_bn_hs'``, ...) or ``dict(widths=(4 ints), depths=(4 ints), num_heads=(4 ints) | int
            [, kernel_sizes=(4 ints), d2_scales=(4 ints), sdta_blocks=(4 ints), mlp_ratio=4, bn_hs=False])``.
            ``sdta_blocks`` is the number of SDTA encoders ending each stage (official: 0, 1, 1, 1).
        in_channels (int): input channels.
        out_indices, frozen_stages, norm_eval, with_cp, out_norm_cfg, init_cfg: see :class:`LightBackbone`.
            ``norm_eval`` only matters for the bn_hs models (the others have no BatchNorm).
        drop_path_rate (float): stochastic depth, increasing linearly over all blocks (official schedule).
        layer_scale_init_value (float): initial layer scale of every residual branch (1e-6; 0 removes the layer
            scales). The official code passes it to the conv encoders; its SDTA encoders use the same 1e-6.
        kernel_sizes (Sequence[int], optional): depth-wise kernel size of the conv encoders per stage; default
            the arch's (official 3, 5, 7, 9). Ablation: e.g. ``(3, 3, 3, 3)``.
        use_sdta (bool): False replaces every SDTA encoder by a conv encoder (same depths): a pure conv network.
        use_pos_embd (bool): False drops the Fourier positional encoding (official: in the SDTA encoders of the
            first stage that has them, stage 1).
        bn_hs (bool, optional): BatchNorm + Hardswish model (official ``EdgeNeXtBNHS``): BN instead of LN and
            Hardswish instead of GELU, no bias in the stem, down-sampling and conv-encoder convs, XCA residual
            from the normalised tensor. Its final BN before pooling belongs to the classifier and is not part of
            the stage outputs. ``None`` takes it from the arch (True for the ``-bn-hs`` names).

    Inputs of any size >= 32 work: the stem and down-sampling convs zero-pad the right/bottom edge to a multiple of
    their stride, so stage ``i`` outputs ``ceil(H / 2**(i + 2))``; sizes that are multiples of 32 are computed
    exactly as the official model does.
    """

    arch_settings = {
        'xx-small': dict(widths=(24, 48, 88, 168), depths=(2, 2, 6, 2), num_heads=(4, 4, 4, 4)),
        'x-small': dict(widths=(32, 64, 100, 192), depths=(3, 3, 9, 3), num_heads=(4, 4, 4, 4)),
        'small': dict(widths=(48, 96, 160, 304), depths=(3, 3, 9, 3), num_heads=(8, 8, 8, 8)),
        'base': dict(widths=(80, 160, 288, 584), depths=(3, 3, 9, 3), num_heads=(8, 8, 8, 8)),
    }
    arch_aliases = {}
    for _short, _name in (('xxs', 'xx-small'), ('xs', 'x-small'), ('s', 'small'), ('b', 'base')):
        arch_aliases[_short] = _name
        arch_aliases['edgenext_' + _name.replace('-', '_')] = _name
        if _name != 'base':  # no BN-HS Base was released
            arch_settings[_name + '-bn-hs'] = dict(arch_settings[_name], bn_hs=True)
            arch_aliases[_short + '-bn-hs'] = _name + '-bn-hs'
            arch_aliases['edgenext_' + _name.replace('-', '_') + '_bn_hs'] = _name + '-bn-hs'
    del _short, _name
    # ONNX graphs are dynamic; ExecuTorch programs and Core ML packages hold one size:
    fixed_size_program = (
        'its stem and down-sampling convolutions pad the map to a multiple of their stride by an amount computed '
        'from the size (-size % stride): torch.export with bounded sizes (ExecuTorch) cannot prove the guards this '
        'records over a range, and Core ML takes no size-dependent 2-D padding')

    #: The published accuracies of the standard releases are their EMA weights (``model_ema``); the USI releases
    #: hold ``state_dict``; ``model`` is the training key.
    checkpoint_keys = ('model_ema', 'state_dict', 'model')
    head_prefixes = HEAD_PREFIXES
    # official: LayerNorm ``norm`` after pooling (a BatchNorm2d before it in BN + HS, see convert_classifier_head)
    # and ``head``; timm: ``head.norm`` and ``head.fc``
    classifier_key_map = {'norm.': 'norm.', 'head.': 'classifier.fc.', 'head.norm.': 'norm.',
                          'head.fc.': 'classifier.fc.'}
    # the norm type tells 'small' from 'small-bn-hs', which have the same widths and depths
    arch_fields = ('widths', 'depths', 'bn_hs')
    reference_models = ('timm', {name: 'edgenext_' + name.replace('-', '_')
                                 for name in ('xx-small', 'x-small', 'small', 'base')})

    @classmethod
    def detect_layout(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        """``'official'``, ``'mmpretrain'``, ``'timm'`` (ours plus ``head.*``) or ``'mmlightvit'``."""
        if any(k.startswith('downsample_layers.') for k in state_dict):
            mmpretrain = ('.depthwise_conv.', '.pointwise_conv1.', '.conv_modules.', '.csa.', '.norm_csa.')
            if any(marker in k for k in state_dict for marker in mmpretrain):
                return 'mmpretrain'
            return 'official'
        if any(k.startswith('head.') for k in state_dict):
            return 'timm'
        return 'mmlightvit'

    @classmethod
    def infer_arch(cls, state_dict: Dict[str, torch.Tensor]) -> dict:
        layout = cls.detect_layout(state_dict)  # infer_edgenext_arch reads our key names
        if layout == 'official':
            state_dict = official_to_mmlightvit(state_dict)
        elif layout == 'mmpretrain':
            state_dict = mmpretrain_to_mmlightvit(state_dict)
        return infer_edgenext_arch(state_dict)

    @classmethod
    def arch_signature(cls, settings: dict) -> dict:
        return dict(widths=tuple(settings['widths']), depths=tuple(settings['depths']),
                    bn_hs=settings.get('bn_hs', False))

    @classmethod
    def custom_arch(cls, found: dict) -> Optional[dict]:
        # the SDTA head counts are read from the XCA temperatures: without SDTA blocks they cannot be known
        if 'num_heads' not in found:
            return None
        return {k: found[k] for k in ('widths', 'depths', 'bn_hs', 'num_heads', 'kernel_sizes') if k in found}

    @classmethod
    def is_dropped_on_conversion(cls, key: str, layout: str) -> bool:
        # also mmpretrain's norm{i} over the pooled features: classifier-side
        return super().is_dropped_on_conversion(key, layout) or (
            layout == 'mmpretrain' and re.match(r'norm\d+\.', key) is not None)

    @classmethod
    def convert_classifier_head(cls, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        head = super().convert_classifier_head(state_dict)
        if 'norm.running_mean' in state_dict:  # BN + HS: the final norm is a BatchNorm2d before the pooling
            head = OrderedDict(('pre_' + k if k.startswith('norm.') else k, v) for k, v in head.items())
        return head

    default_kernel_sizes = (3, 5, 7, 9)
    default_d2_scales = (2, 2, 3, 4)
    default_sdta_blocks = (0, 1, 1, 1)

    def __init__(self,
                 arch: Union[str, dict] = 'xx-small',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 kernel_sizes: Optional[Sequence[int]] = None,
                 use_sdta: bool = True,
                 use_pos_embd: bool = True,
                 bn_hs: Optional[bool] = None,
                 out_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, out_norm_cfg=out_norm_cfg, init_cfg=init_cfg)
        settings = self.resolve_arch(arch, required_keys=('widths', 'depths', 'num_heads'))
        widths, depths = tuple(settings['widths']), tuple(settings['depths'])
        num_heads = settings['num_heads']
        num_heads = (num_heads, ) * 4 if isinstance(num_heads, int) else tuple(num_heads)
        kernel_sizes = tuple(kernel_sizes if kernel_sizes is not None else
                             settings.get('kernel_sizes', self.default_kernel_sizes))
        d2_scales = tuple(settings.get('d2_scales', self.default_d2_scales))
        sdta_blocks = tuple(settings.get('sdta_blocks', self.default_sdta_blocks))
        self.check_per_stage(widths=widths, depths=depths, num_heads=num_heads, kernel_sizes=kernel_sizes,
                             d2_scales=d2_scales, sdta_blocks=sdta_blocks)
        if any(n > d for n, d in zip(sdta_blocks, depths)):
            raise ValueError(f'sdta_blocks {sdta_blocks} exceed the depths {depths}.')
        if not use_sdta:
            sdta_blocks = (0, 0, 0, 0)
        self.bn_hs = bool(settings.get('bn_hs', False)) if bn_hs is None else bool(bn_hs)
        self.widths, self.depths, self.num_heads = widths, depths, num_heads
        self.kernel_sizes, self.d2_scales, self.sdta_blocks = kernel_sizes, d2_scales, sdta_blocks
        self.use_sdta, self.use_pos_embd = use_sdta, use_pos_embd
        self.stage_channels = list(widths)
        mlp_ratio = settings.get('mlp_ratio', 4)
        # The positional encoding goes into the SDTA encoders of the first stage that has any (stage 1).
        pos_stage = next((s for s, n in enumerate(sdta_blocks) if n > 0), None) if use_pos_embd else None
        conv_bias = not self.bn_hs
        layer_scale = layer_scale_init_value if layer_scale_init_value > 0 else None  # official: 0 means none

        self.stem = nn.Sequential(
            PatchConv(in_channels, widths[0], kernel_size=4, stride=4, bias=conv_bias),
            _norm(widths[0], self.bn_hs, channels_last=False))
        rates = drop_path_rates(drop_path_rate, depths)
        stages = []
        for s, depth in enumerate(depths):
            downsample = nn.Identity() if s == 0 else nn.Sequential(
                _norm(widths[s - 1], self.bn_hs, channels_last=False),
                PatchConv(widths[s - 1], widths[s], kernel_size=2, stride=2, bias=conv_bias))
            blocks = []
            for j in range(depth):
                if j >= depth - sdta_blocks[s]:
                    blocks.append(
                        SDTAEncoder(widths[s], num_heads[s], d2_scales[s], s == pos_stage, mlp_ratio, layer_scale,
                                    rates[s][j], self.bn_hs))
                else:
                    blocks.append(
                        ConvEncoder(widths[s], kernel_sizes[s], mlp_ratio, layer_scale, rates[s][j], self.bn_hs))
            stages.append(Stage(downsample, blocks))
        self.stages = nn.ModuleList(stages)
        self.apply(partial(init_trunc_normal, conv_init='trunc_normal'))  # the official initialisation
        self._init_contract()

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints

    def to_own_layout(self, state_dict: Dict[str, torch.Tensor], layout: str) -> 'OrderedDict':
        if layout == 'official':
            return official_to_mmlightvit(state_dict)
        if layout == 'mmpretrain':
            return mmpretrain_to_mmlightvit(state_dict)
        return OrderedDict(state_dict)  # timm: our keys; its head.* and norm.* are left out already

    def to_official_layout(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict':
        return mmlightvit_to_official(state_dict)
