"""The truncated-normal initialisation of the ViT-style families, written once."""
import math
from typing import Optional

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

CONV_INITS = (None, 'trunc_normal', 'he_fan_out')


def init_trunc_normal(module: nn.Module, conv_init: Optional[str] = None) -> None:
    """Initialise one module (for ``model.apply``): linear weights truncated normal (std 0.02), norms weight 1 and
    bias 0, zero biases; conv weights by ``conv_init``: None leaves PyTorch's default, ``'trunc_normal'`` as the
    linear weights, ``'he_fan_out'`` He normal over the fan-out (``sqrt(2 / fan_out)``, zero bias)."""
    if conv_init not in CONV_INITS:
        raise ValueError(f'conv_init must be one of {CONV_INITS}, got {conv_init!r}.')
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=.02)
    elif isinstance(module, nn.Conv2d) and conv_init == 'trunc_normal':
        nn.init.trunc_normal_(module.weight, std=.02)
    elif isinstance(module, nn.Conv2d) and conv_init == 'he_fan_out':
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
    elif isinstance(module, (nn.LayerNorm, _BatchNorm)) and module.weight is not None:
        nn.init.ones_(module.weight)
    else:
        return  # left as built
    if module.bias is not None:
        nn.init.zeros_(module.bias)
