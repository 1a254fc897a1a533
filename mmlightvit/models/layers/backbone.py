"""The contract every mmlightvit backbone meets, written once.

A family subclasses :class:`LightBackbone`, fills ``arch_settings`` (and ``arch_aliases``), builds ``self.stem``
(anything before stage 0) and ``self.stages`` (an ``nn.ModuleList`` of four stages whose outputs have strides
4, 8, 16 and 32), sets ``self.stage_channels`` and calls :meth:`_init_contract` at the end of its ``__init__``.
The base class then gives it:

* ``arch`` look-up by name or alias (case, ``.``, ``_`` and ``-`` ignored) or a custom dict, with errors that list
  the known names;
* ``out_indices``, ``out_channels`` and ``feature_info`` (known without a forward pass), optional output norms;
* a check that per-stage settings have one entry per stage (:meth:`check_per_stage`);
* ``frozen_stages`` and ``norm_eval`` honoured by ``train()``; ``with_cp`` per-block gradient checkpointing through
  :meth:`run_blocks`;
* ``get_layer_depth`` for stage-wise learning-rate decay;
* strict pretrained loading from ``init_cfg=dict(type='Pretrained', checkpoint=...)`` in any layout the family's
  :meth:`convert_checkpoint` recognises.

What a family knows about checkpoints (its layouts, its one conversion hook, how to read its variant from tensor
shapes) it declares through :class:`~mmlightvit.models.layers.checkpoint_layouts.CheckpointLayouts`, which this class
inherits; its reference implementation (``reference_models``) and whether ONNX export needs fixed sizes
(``fixed_size_export``), or ExecuTorch / Core ML export only (``fixed_size_program``), are declared here.
"""
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmlightvit.utils.checkpoint import read_checkpoint
from .checkpoint_layouts import CheckpointLayouts
from .norm import build_norm2d

NUM_STAGES = 4
STAGE_STRIDES = (4, 8, 16, 32)


def count_blocks(state: Dict[str, torch.Tensor], pattern: str = r'stages\.(\d)\.blocks\.(\d+)\.') -> Tuple[int, ...]:
    """Blocks per stage in a state dict, from the keys ``pattern`` matches (groups: stage, block index)."""
    depths = [0] * NUM_STAGES
    for key in state:
        match = re.match(pattern, key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths[stage], block + 1)
    return tuple(depths)


def apply_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, *carried: Optional[torch.Tensor],
                 checkpoint: bool = False) -> Union[torch.Tensor, tuple]:
    """Apply ``blocks`` in turn: ``x = block(x)``; with ``carried`` state (e.g. FasterViT's carrier tokens), every
    block takes and returns it after ``x``, ``x, *carried = block(x, *carried)``, and so does this function.

    ``checkpoint``: gradient checkpointing for each block whose input requires grad (same outputs and gradients,
    less memory). Constant block arguments can be bound with ``functools.partial``.
    """
    for block in blocks:
        if checkpoint and x.requires_grad:
            out = cp.checkpoint(block, x, *carried, use_reentrant=False)
        else:
            out = block(x, *carried)
        if carried:
            x, *carried = out
        else:
            x = out
    return (x, *carried) if carried else x


class Stage(nn.Module):
    """``downsample`` (``nn.Identity`` in the first stage) followed by ``blocks``: the usual stage layout, which
    :meth:`LightBackbone.forward_stage` runs by default."""

    def __init__(self, downsample: nn.Module, blocks: List[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _arch_key(name: str) -> str:
    return re.sub(r'[\s_.\-]', '', str(name).lower())


class LightBackbone(CheckpointLayouts, BaseModule):
    """Base class of the four backbone families (see the module docstring for what subclasses provide).

    Args:
        out_indices (Sequence[int]): stages (0-3) whose outputs ``forward`` returns, in order.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and the first k stages.
        norm_eval (bool): keep every BatchNorm in eval mode while training (frozen running statistics).
        with_cp (bool): gradient checkpointing per block; same outputs and gradients, less memory.
        out_norm_cfg (dict, optional): an extra norm on each returned map, ``dict(type='LN2d')`` or
            ``dict(type='BN')``; off by default.
        init_cfg (dict | list, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL[, prefix=...])``
            loads a checkpoint strictly; other mmengine init types work as usual.
    """

    #: variant name -> settings; subclasses fill it.
    arch_settings: Dict[str, dict] = {}
    #: alias -> variant name, e.g. ``{'xxs': 'xx-small'}``.
    arch_aliases: Dict[str, str] = {}
    #: the reference implementation the tests and benchmarks compare with: ``(package, {arch: model name})``.
    reference_models: Optional[Tuple[str, Dict[str, str]]] = None
    #: why ONNX export needs one fixed-size graph per input size (``None``: dynamic height and width work).
    fixed_size_export: Optional[str] = None
    #: why an ExecuTorch program or a Core ML package holds one input size where ONNX need not (``None``: as ONNX).
    fixed_size_program: Optional[str] = None

    def __init__(self,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 out_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(i + NUM_STAGES if i < 0 else i for i in out_indices)
        for i in out_indices:
            if not 0 <= i < NUM_STAGES:
                raise ValueError(f'out_indices must be stage indices in [0, {NUM_STAGES - 1}], got {out_indices}.')
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'frozen_stages must be in [-1, {NUM_STAGES}], got {frozen_stages}.')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.out_norm_cfg = out_norm_cfg

    # ------------------------------------------------------------------------------------------------------------
    # Variants

    @classmethod
    def resolve_arch(cls, arch: Union[str, dict], required_keys: Iterable[str] = ()) -> dict:
        """Settings of a variant given by name/alias, or a custom dict checked for ``required_keys``."""
        if isinstance(arch, dict):
            missing = [k for k in required_keys if k not in arch]
            if missing:
                raise ValueError(f'A custom {cls.__name__} arch dict needs the keys {sorted(required_keys)}; '
                                 f'missing {missing}.')
            return dict(arch)
        names = {_arch_key(name): name for name in cls.arch_settings}
        names.update({_arch_key(alias): name for alias, name in cls.arch_aliases.items()})
        name = names.get(_arch_key(arch))
        if name is None:
            known = ', '.join(repr(n) for n in cls.arch_settings)
            aliases = ', '.join(repr(a) for a in cls.arch_aliases)
            raise ValueError(f'Unknown {cls.__name__} arch {arch!r}. Known archs: {known}'
                             + (f' (aliases: {aliases})' if aliases else '')
                             + '; or pass a dict with the same keys for a custom size.')
        return dict(cls.arch_settings[name])

    @classmethod
    def check_per_stage(cls, **settings: Sequence) -> None:
        """Raise a ValueError naming the first of ``settings`` (name=value) that has not one entry per stage."""
        for name, value in settings.items():
            if not isinstance(value, (list, tuple)) or len(value) != NUM_STAGES:
                raise ValueError(f'{cls.__name__} needs {NUM_STAGES} {name} (one per stage), got {value!r}.')

    # ------------------------------------------------------------------------------------------------------------
    # Outputs

    def _init_contract(self) -> None:
        """Check what the subclass built and add the optional output norms. Call at the end of ``__init__``."""
        assert hasattr(self, 'stem') and isinstance(getattr(self, 'stages', None), nn.ModuleList)
        assert len(self.stages) == NUM_STAGES and len(self.stage_channels) == NUM_STAGES
        if self.out_norm_cfg is not None:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm2d(self.out_norm_cfg, self.stage_channels[i]))
        self._freeze_stages()

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned map, in ``out_indices`` order (for the neck's ``in_channels``)."""
        return [self.stage_channels[i] for i in self.out_indices]

    @property
    def feature_info(self) -> List[dict]:
        return [dict(num_chs=self.stage_channels[i], reduction=STAGE_STRIDES[i], module=f'stages.{i}')
                for i in self.out_indices]

    def run_blocks(self, blocks: Iterable[nn.Module], x: torch.Tensor,
                   *carried: Optional[torch.Tensor]) -> Union[torch.Tensor, tuple]:
        """Apply ``blocks`` in turn (see :func:`apply_blocks` for ``carried``), each under gradient checkpointing
        when ``with_cp`` is on and it pays."""
        return apply_blocks(blocks, x, *carried, checkpoint=self.with_cp and self.training)

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """One :class:`Stage` (down-sampling, then the blocks); families with other stage layouts override it."""
        stage = self.stages[index]
        return self.run_blocks(stage.blocks, stage.downsample(x))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i in range(NUM_STAGES):
            x = self.forward_stage(i, x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}', None)
                # Contiguous NCHW: mmcv's compiled ops (RoIAlign in every R-CNN RoI head) read the raw buffer as
                # NCHW whatever its strides, so a permuted or channels-last map would give them wrong features.
                outs.append((norm(x) if norm is not None else x).contiguous())
            if i == max(self.out_indices):
                break  # later stages would not be used
        return tuple(outs)

    # ------------------------------------------------------------------------------------------------------------
    # Training controls

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem, *self.stages[:self.frozen_stages]]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Stage-wise depth for layer-wise lr decay: stem 0, stage i -> i + 1, output norms last.

        Returns ``(layer_id, max_layer_id)`` as mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` expects.
        """
        max_layer_id = NUM_STAGES + 2
        if not param_name.startswith(prefix):
            return max_layer_id - 1, max_layer_id
        name = param_name[len(prefix):]
        if name.startswith('stem.'):
            return 0, max_layer_id
        match = re.match(r'stages\.(\d+)\.', name)
        if match:
            return int(match.group(1)) + 1, max_layer_id
        return max_layer_id - 1, max_layer_id

    def init_weights(self) -> None:
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            # mmengine's PretrainedInit loads non-strictly; we load strictly and convert layouts. The resolver sits
            # above the layers (it knows whole models), hence imported here.
            from mmlightvit.models.weights import load_model_weights
            path = init_cfg['checkpoint']
            load_model_weights(self, read_checkpoint(path), f'Checkpoint {path!r}', prefix=init_cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()
