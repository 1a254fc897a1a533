"""RepViT: Revisiting Mobile CNN From ViT Perspective (CVPR 2024, arXiv 2307.09283).

Official code: https://github.com/THU-MIG/RepViT. The module tree mirrors timm's ``RepVit`` (``stem.conv1``,
``stages.{s}.downsample.{pre_block,spatial_downsample,channel_downsample,ffn}``, ``stages.{s}.blocks.{j}``), so a
timm state dict loads as it is once its classifier is dropped; the official flat ``features.{i}`` layout is
renamed by :func:`official_to_mmlightvit` (and back by :func:`mmlightvit_to_official`).

Depends on torch, mmengine and mmlightvit only.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from mmlightvit.registry import MODELS
from ..layers import (ConvBN, DropPath, LightBackbone, Stage, build_activation, conv_like, count_blocks,
                      drop_path_rates, fold_bn)

# ----------------------------------------------------------------------------------------------------------------
# Building blocks


def make_divisible(value: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor`` (at least ``divisor``), as timm's ``SEModule`` rounds its reduced width."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as timm's ``SEModule(channels, rd_ratio=0.25)``: mean pool, 1x1 conv to
    ``make_divisible(channels * 0.25, 8)`` channels, ReLU, 1x1 conv back, sigmoid gate."""

    def __init__(self, channels: int, rd_ratio: float = 0.25, divisor: int = 8):
        super().__init__()
        reduced = make_divisible(channels * rd_ratio, divisor)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.fc2(self.act(self.fc1(scale)))
        return x * self.gate(scale)


class RepVggDW(nn.Module):
    """RepVGG-style depthwise token mixer: ``bn(DW3x3-BN(x) + DW1x1(x) + x)``; the 1x1 conv has a bias.

    ``fuse()`` folds the three branches and the outer BN into one depthwise 3x3 conv with bias.
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = ConvBN(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, 1, 0, groups=channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        # ``fuse_model`` works bottom-up, so ``conv`` may already be the folded nn.Conv2d.
        f64 = torch.float64
        if isinstance(self.conv, ConvBN):
            conv = self.conv.c
            weight, bias = fold_bn(conv.weight.to(f64), None, self.conv.bn)
        else:
            conv = self.conv
            weight = conv.weight.to(f64).clone()
            bias = conv.bias.to(f64).clone() if conv.bias is not None else weight.new_zeros(weight.shape[0])
        assert conv.groups == conv.in_channels == conv.out_channels, 'the identity branch needs a depthwise conv'
        k_h, k_w = weight.shape[2:]
        center = (slice(None), slice(None), k_h // 2, k_w // 2)
        weight[center] += self.conv1.weight.to(f64)[:, :, 0, 0]  # the 1x1 branch sits at the kernel centre
        weight[center] += 1.  # the identity branch (depthwise: one input channel per output)
        if self.conv1.bias is not None:
            bias += self.conv1.bias.to(f64)
        weight, bias = fold_bn(weight, bias, self.bn)
        dtype = self.conv1.weight.dtype
        return conv_like(conv, weight.to(dtype), bias.to(dtype))


class RepViTMlp(nn.Module):
    """Channel mixer: 1x1 conv-BN (x ``mlp_ratio``), activation, 1x1 conv-BN back (BN scale initialised to 0)."""

    def __init__(self, channels: int, hidden_channels: int, act_cfg: Union[str, dict]):
        super().__init__()
        self.conv1 = ConvBN(channels, hidden_channels, 1)
        self.act = build_activation(act_cfg)
        self.conv2 = ConvBN(hidden_channels, channels, 1, bn_weight_init=0.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


class RepViTBlock(nn.Module):
    """Stride-1 RepViT block: token mixer (RepVGG DW or plain DW3x3-BN), optional SE, residual FFN."""

    def __init__(self,
                 channels: int,
                 mlp_ratio: float = 2.,
                 use_se: bool = False,
                 act_cfg: Union[str, dict] = 'GELU',
                 use_rep_branch: bool = True,
                 drop_path: float = 0.):
        super().__init__()
        if use_rep_branch:
            self.token_mixer = RepVggDW(channels)
        else:
            self.token_mixer = ConvBN(channels, channels, 3, 1, 1, groups=channels)
        self.se = SqueezeExcite(channels) if use_se else nn.Identity()
        self.channel_mixer = RepViTMlp(channels, int(channels * mlp_ratio), act_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.drop_path(self.channel_mixer(x))


class RepViTDownsample(nn.Module):
    """Between stages: the pre-block (a stride-1 block, SE off), DW3x3 stride 2 + BN, 1x1 conv + BN to the new
    width, residual FFN. The official code lists the pre-block as the previous stage's last row."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 mlp_ratio: float = 2.,
                 act_cfg: Union[str, dict] = 'GELU',
                 use_rep_branch: bool = True,
                 pre_block_se: bool = False,
                 drop_paths: Sequence[float] = (0., 0.)):
        super().__init__()
        self.pre_block = RepViTBlock(in_channels, mlp_ratio, pre_block_se, act_cfg, use_rep_branch, drop_paths[0])
        self.spatial_downsample = ConvBN(in_channels, in_channels, 3, 2, 1, groups=in_channels)
        self.channel_downsample = ConvBN(in_channels, out_channels, 1)
        self.ffn = RepViTMlp(out_channels, int(out_channels * mlp_ratio), act_cfg)
        self.drop_path = DropPath(drop_paths[1]) if drop_paths[1] > 0 else nn.Identity()

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the pre-block: the stride-2 row of the official cfg."""
        x = self.channel_downsample(self.spatial_downsample(x))
        return x + self.drop_path(self.ffn(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.pre_block(x))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint layouts

HEAD_PREFIXES = ('head.', 'head_dist.', 'classifier.', 'dist_head.', 'fc.')

# Official ``features.{i}`` sub-keys -> ours, per kind of row.
_OFFICIAL_BLOCK = (('token_mixer.0.conv.', 'token_mixer.conv.'), ('token_mixer.0.conv1.', 'token_mixer.conv1.'),
                   ('token_mixer.0.bn.', 'token_mixer.bn.'), ('token_mixer.1.', 'se.'),
                   ('channel_mixer.m.0.', 'channel_mixer.conv1.'), ('channel_mixer.m.2.', 'channel_mixer.conv2.'))
_OFFICIAL_DOWNSAMPLE = (('token_mixer.0.', 'spatial_downsample.'), ('token_mixer.2.', 'channel_downsample.'),
                        ('channel_mixer.m.0.', 'ffn.conv1.'), ('channel_mixer.m.2.', 'ffn.conv2.'))


def official_prefix_pairs(depths: Sequence[int]) -> List[Tuple[str, str]]:
    """``(official prefix, our prefix)`` for every module with parameters, given timm-style ``depths``.

    The official flat list is: the stem (``features.0``), the blocks of stage 0, then for each later stage its
    pre-block (a stride-1 row), its stride-2 row and its blocks.
    """
    pairs = [('features.0.0.', 'stem.conv1.'), ('features.0.2.', 'stem.conv2.')]
    index = 1
    for stage, depth in enumerate(depths):
        if stage > 0:
            ours = f'stages.{stage}.downsample.'
            pairs += [(f'features.{index}.{a}', f'{ours}pre_block.{b}') for a, b in _OFFICIAL_BLOCK]
            pairs += [(f'features.{index + 1}.{a}', f'{ours}{b}') for a, b in _OFFICIAL_DOWNSAMPLE]
            index += 2
        for block in range(depth):
            pairs += [(f'features.{index}.{a}', f'stages.{stage}.blocks.{block}.{b}') for a, b in _OFFICIAL_BLOCK]
            index += 1
    return pairs


def _rename(state: Dict[str, torch.Tensor], pairs: Sequence[Tuple[str, str]]) -> 'OrderedDict[str, torch.Tensor]':
    """Replace the longest matching prefix of each key; keys without a match stay as they are."""
    mapping = dict(pairs)
    out = OrderedDict()
    for key, value in state.items():
        new_key = key
        for end in range(len(key) - 1, -1, -1):
            if key[end] == '.' and key[:end + 1] in mapping:
                new_key = mapping[key[:end + 1]] + key[end + 1:]
                break
        out[new_key] = value
    return out


def official_to_mmlightvit(state: Dict[str, torch.Tensor], depths: Sequence[int]) -> 'OrderedDict':
    """Official ``features.{i}`` keys -> ours (classifier keys, if any, are left for the caller to drop)."""
    return _rename(state, official_prefix_pairs(depths))


def mmlightvit_to_official(state: Dict[str, torch.Tensor], depths: Sequence[int]) -> 'OrderedDict':
    """Ours (= timm's backbone keys) -> the official ``features.{i}`` layout."""
    return _rename(state, [(b, a) for a, b in official_prefix_pairs(depths)])


def infer_repvit_arch(state: Dict[str, torch.Tensor]) -> dict:
    """``dict(widths=..., depths=...)`` read from a state dict in our/timm layout or the official layout."""
    if any(k.startswith('features.') for k in state):
        rows = sorted({int(m.group(1)) for k in state for m in [re.match(r'features\.(\d+)\.', k)] if m} - {0})
        if not rows:
            raise ValueError('No RepViT blocks found under features.*')
        stride2 = [i for i in rows if f'features.{i}.token_mixer.2.c.weight' in state]
        if len(stride2) != 3:
            raise ValueError(f'Expected 3 stride-2 rows in the official layout, found {len(stride2)}.')
        bounds = [0] + stride2
        depths = [bounds[1] - 2] + [bounds[s + 1] - bounds[s] - 2 for s in (1, 2)] + [rows[-1] - stride2[-1]]
        widths = [state['features.0.2.c.weight'].shape[0]]
        widths += [state[f'features.{i}.token_mixer.2.c.weight'].shape[0] for i in stride2]
    else:
        widths = [state['stem.conv2.c.weight'].shape[0]]
        widths += [state[f'stages.{s}.downsample.channel_downsample.c.weight'].shape[0] for s in (1, 2, 3)]
        depths = count_blocks(state)
    return dict(widths=tuple(int(w) for w in widths), depths=tuple(depths))


# ----------------------------------------------------------------------------------------------------------------
# Backbone


@MODELS.register_module()
class RepViT(LightBackbone):
    """RepViT backbone (M0.9 / M1.0 / M1.1 / M1.5 / M2.3).

    Args:
        arch (str | dict): variant name (``'m1.1'``, ``'m1_1'``, ``'repvit_m1_1'``, ...) or
            ``dict(widths=(4 ints), depths=(4 ints)[, mlp_ratio=2])``; ``depths`` counts the stride-1 blocks of
            each stage as timm does (the pre-block and the stride-2 row are in the stage's ``downsample``).
        in_channels (int): input channels.
        out_indices, frozen_stages, norm_eval, with_cp, out_norm_cfg, init_cfg: see :class:`LightBackbone`.
        drop_path_rate (float): stochastic depth on the residual FFN branches (blocks, pre-blocks and the
            down-sampling FFNs), increasing linearly; the official model has none (0).
        se_mode (str): ``'alternate'`` (official: SE in every other block of a stage, starting with the first;
            none in the pre-blocks), ``'all'`` (every stride-1 block, pre-blocks included) or ``'none'``.
        use_rep_branch (bool): True builds the RepVGG depthwise token mixer (DW3x3-BN + DW1x1 + identity, then
            BN); False a plain DW3x3-BN (the ablation without re-parameterisation branches).
        act_cfg (str | dict): activation of the stem and FFNs; ``'GELU'`` (official) or ``'HSwish'``, ...
            (the SE keeps its ReLU and sigmoid).
        out_after_preblock (bool): where stage outputs are taken. False (default): after the stage's last block,
            before the next stage's pre-block, as the official *detection* code and timm do. True: after the
            pre-block, as the official *segmentation* code does. Weights are the same either way; with True,
            ``frozen_stages`` and ``get_layer_depth`` count the pre-block with the stage it ends.

    Deployment: ``mmlightvit.models.layers.fuse_model(model.eval())`` folds every conv-BN and RepVGG branch.
    """

    arch_settings = {
        'm0.9': dict(widths=(48, 96, 192, 384), depths=(2, 2, 14, 2)),
        'm1.0': dict(widths=(56, 112, 224, 448), depths=(2, 2, 14, 2)),
        'm1.1': dict(widths=(64, 128, 256, 512), depths=(2, 2, 12, 2)),
        'm1.5': dict(widths=(64, 128, 256, 512), depths=(4, 4, 24, 4)),
        'm2.3': dict(widths=(80, 160, 320, 640), depths=(6, 6, 34, 2)),
    }
    arch_aliases = {f'repvit_{name}': name for name in arch_settings}
    head_prefixes = HEAD_PREFIXES
    # BN + Linear twice (the distillation head): official ``Classfier``, timm ``head.head`` / ``head.head_dist``
    classifier_key_map = {
        'classifier.classifier.bn.': 'classifier.norm.', 'classifier.classifier.l.': 'classifier.fc.',
        'classifier.classifier_dist.bn.': 'classifier_dist.norm.',
        'classifier.classifier_dist.l.': 'classifier_dist.fc.',
        'head.head.bn.': 'classifier.norm.', 'head.head.l.': 'classifier.fc.',
        'head.head_dist.bn.': 'classifier_dist.norm.', 'head.head_dist.l.': 'classifier_dist.fc.'}
    reference_models = ('timm', {name: 'repvit_' + name.replace('.', '_') for name in arch_settings})

    @classmethod
    def infer_arch(cls, state_dict: Dict[str, torch.Tensor]) -> dict:
        return infer_repvit_arch(state_dict)

    @classmethod
    def detect_layout(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        """``'official'`` (``features.*``), ``'timm'`` (ours plus ``head.*``) or ``'mmlightvit'``."""
        if any(k.startswith('features.') for k in state_dict):
            return 'official'
        if any(k.startswith('head.') for k in state_dict):
            return 'timm'
        return 'mmlightvit'

    @classmethod
    def custom_arch(cls, found: dict) -> Optional[dict]:
        return dict(found)  # widths and depths are all a custom RepViT needs
    se_modes = ('alternate', 'all', 'none')

    def __init__(self,
                 arch: Union[str, dict] = 'm1.1',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 se_mode: str = 'alternate',
                 use_rep_branch: bool = True,
                 act_cfg: Union[str, dict] = dict(type='GELU'),
                 out_after_preblock: bool = False,
                 out_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, out_norm_cfg=out_norm_cfg, init_cfg=init_cfg)
        settings = self.resolve_arch(arch, required_keys=('widths', 'depths'))
        widths, depths = tuple(settings['widths']), tuple(settings['depths'])
        self.check_per_stage(widths=widths, depths=depths)
        if se_mode not in self.se_modes:
            raise ValueError(f'se_mode must be one of {self.se_modes}, got {se_mode!r}.')
        mlp_ratio = settings.get('mlp_ratio', 2)
        self.widths, self.depths = widths, depths
        self.stage_channels = list(widths)
        self.se_mode = se_mode
        self.use_rep_branch = use_rep_branch
        self.out_after_preblock = out_after_preblock

        self.stem = nn.Sequential(
            OrderedDict(conv1=ConvBN(in_channels, widths[0] // 2, 3, 2, 1), act1=build_activation(act_cfg),
                        conv2=ConvBN(widths[0] // 2, widths[0], 3, 2, 1)))

        # Residual units per stage in forward order: [pre-block, down-sampling FFN,] blocks.
        units = [depth + (2 if s > 0 else 0) for s, depth in enumerate(depths)]
        rates = drop_path_rates(drop_path_rate, units)
        stages = []
        for s, depth in enumerate(depths):
            stage_rates = list(rates[s])
            if s > 0:
                downsample = RepViTDownsample(widths[s - 1], widths[s], mlp_ratio, act_cfg, use_rep_branch,
                                              pre_block_se=se_mode == 'all', drop_paths=stage_rates[:2])
                stage_rates = stage_rates[2:]
            else:
                downsample = nn.Identity()
            blocks = [
                RepViTBlock(widths[s], mlp_ratio, self._block_se(j), act_cfg, use_rep_branch, stage_rates[j])
                for j in range(depth)
            ]
            stages.append(Stage(downsample, blocks))
        self.stages = nn.ModuleList(stages)
        self._init_contract()

    def _block_se(self, index: int) -> bool:
        if self.se_mode == 'alternate':
            return index % 2 == 0
        return self.se_mode == 'all'

    # ------------------------------------------------------------------------------------------------------------
    # Forward

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.stages[index]
        if index > 0:
            if not self.out_after_preblock:
                x = self.run_blocks([stage.downsample.pre_block], x)
            x = self.run_blocks([stage.downsample.reduce], x)
        x = self.run_blocks(stage.blocks, x)
        if self.out_after_preblock and index + 1 < len(self.stages):
            x = self.run_blocks([self.stages[index + 1].downsample.pre_block], x)
        return x

    # ------------------------------------------------------------------------------------------------------------
    # Training controls

    def _frozen_modules(self) -> List[nn.Module]:
        modules = super()._frozen_modules()
        k = self.frozen_stages
        if self.out_after_preblock and 1 <= k < len(self.stages):
            modules.append(self.stages[k].downsample.pre_block)  # part of stage k - 1's output
        return modules

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        layer_id, max_layer_id = super().get_layer_depth(param_name, prefix)
        if self.out_after_preblock and param_name.startswith(prefix):
            if re.match(r'stages\.\d+\.downsample\.pre_block\.', param_name[len(prefix):]):
                layer_id -= 1
        return layer_id, max_layer_id

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints

    def to_own_layout(self, state_dict: Dict[str, torch.Tensor], layout: str) -> 'OrderedDict':
        if layout == 'timm':  # our keys; its head.* is left out already
            return OrderedDict(state_dict)
        return official_to_mmlightvit(state_dict, self.depths)

    def to_official_layout(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict':
        return mmlightvit_to_official(state_dict, self.depths)
