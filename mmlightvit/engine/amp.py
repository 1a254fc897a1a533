"""Mixed precision on the CPU: bfloat16 autocast, which mmengine 0.10.7's AmpOptimWrapper does not offer (it
asserts a GPU/NPU/MLU/MUSA device and scales the loss for float16)."""
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from mmlightvit.registry import OPTIM_WRAPPERS


def _to_float32(output):
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype == torch.bfloat16 else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(o) for o in output)
    return output


@OPTIM_WRAPPERS.register_module()
class CPUBFloat16OptimWrapper(OptimWrapper):
    """OptimWrapper whose training forward runs under ``torch.autocast('cpu', torch.bfloat16)``.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed; weights, gradients and the optimizer
    state stay float32 (autocast casts per op), as in GPU AMP.

    Args:
        autocast_modules: names of the model's children to run in bfloat16 (e.g. ``['backbone', 'neck']``),
            their outputs cast back to float32; ``None`` autocasts the whole model. mmdet's detectors need the
            former: mmcv's CPU kernels (NMS, RoIAlign) only take float32.
    """

    def __init__(self, *args, autocast_modules: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.autocast_modules = None if autocast_modules is None else tuple(autocast_modules)
        self._hooked = set()
        self._training_step = False

    @contextmanager
    def optim_context(self, model: nn.Module):
        if self.autocast_modules is None:
            with super().optim_context(model), torch.autocast(device_type='cpu', dtype=torch.bfloat16):
                yield
            return
        self._hook(getattr(model, 'module', model))  # unwrap DDP
        self._training_step = True
        try:
            with super().optim_context(model):
                yield
        finally:
            self._training_step = False

    def _hook(self, model: nn.Module) -> None:
        """Forward hooks that autocast the named children, during training steps only (validation runs float32)."""
        for name in self.autocast_modules:
            child = getattr(model, name, None)
            if child is None:
                raise AttributeError(f'autocast_modules: the model has no child {name!r}')
            if id(child) in self._hooked:
                continue
            contexts = []

            def enter(module, args, contexts=contexts):
                if self._training_step:
                    contexts.append(torch.autocast(device_type='cpu', dtype=torch.bfloat16))
                    contexts[-1].__enter__()

            def leave(module, args, output, contexts=contexts):
                if contexts:
                    contexts.pop().__exit__(None, None, None)
                    return _to_float32(output)
                return output

            child.register_forward_pre_hook(enter)
            child.register_forward_hook(leave)
            self._hooked.add(id(child))
