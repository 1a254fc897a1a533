"""Layer scale (CaiT): a learnable per-channel factor on a residual branch, initialised small."""
from typing import Optional

import torch
import torch.nn as nn


def layer_scale_parameter(channels: int, init_value: Optional[float]) -> Optional[nn.Parameter]:
    """A ``(channels, )`` scale with every entry ``init_value``; None (no layer scale) for ``init_value=None``."""
    return None if init_value is None else nn.Parameter(init_value * torch.ones(channels))


def apply_layer_scale(x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
    """``gamma * x`` (channels last), or ``x`` where the block has no layer scale."""
    return x if gamma is None else gamma * x
