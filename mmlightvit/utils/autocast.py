"""Autocast for some of a model's children only.

mmdet's detectors cannot run whole under CPU autocast: mmcv's CPU kernels (NMS, RoIAlign) take float32 only. Mixed
precision then covers the backbone and neck, and their outputs are cast back to float32 for the heads.
"""
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn


def _to_float32(output):
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype in (torch.float16, torch.bfloat16) else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(o) for o in output)
    return output


@contextmanager
def autocast_children(model: nn.Module, names: Optional[Sequence[str]], device_type: str, dtype: torch.dtype):
    """Inside the block, ``model``'s children ``names`` run under ``torch.autocast(device_type, dtype)`` and hand
    float32 to what follows; ``names=None`` autocasts the whole model (plain ``torch.autocast``)."""
    if names is None:
        with torch.autocast(device_type=device_type, dtype=dtype):
            yield
        return
    handles = []
    for name in names:
        child = getattr(model, name, None)
        if child is None:
            raise AttributeError(f'{type(model).__name__} has no child {name!r} to autocast')
        active = []

        def enter(module, args, active=active):
            active.append(torch.autocast(device_type=device_type, dtype=dtype))
            active[-1].__enter__()

        def leave(module, args, output, active=active):
            active.pop().__exit__(None, None, None)
            return _to_float32(output)

        handles += [child.register_forward_pre_hook(enter), child.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
