"""Activation layers built from a name or a config dict with torch alone (mmcv's builder would add a dependency)."""
from typing import Union

import torch.nn as nn

_ACTIVATIONS = {
    'gelu': nn.GELU,
    'hswish': nn.Hardswish,
    'hardswish': nn.Hardswish,
    'relu': nn.ReLU,
    'silu': nn.SiLU,
    'swish': nn.SiLU,
}


def build_activation(act_cfg: Union[str, dict]) -> nn.Module:
    """``'GELU'`` / ``dict(type='HSwish')`` / ... -> an activation module (torch only, no mmcv)."""
    cfg = dict(type=act_cfg) if isinstance(act_cfg, str) else dict(act_cfg)
    act_type = cfg.pop('type')
    layer = _ACTIVATIONS.get(str(act_type).lower())
    if layer is None:
        raise ValueError(f'Unknown activation {act_type!r}; known: GELU, HSwish (Hardswish), ReLU, SiLU (Swish).')
    cfg.pop('inplace', None)
    return layer(**cfg)
