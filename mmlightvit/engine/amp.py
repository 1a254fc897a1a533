"""Mixed precision on the CPU: bfloat16 autocast, which mmengine 0.10.7's AmpOptimWrapper does not offer (it
asserts a GPU/NPU/MLU/MUSA device and scales the loss for float16)."""
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from mmlightvit.registry import OPTIM_WRAPPERS
from mmlightvit.utils.autocast import autocast_children


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

    @contextmanager
    def optim_context(self, model: nn.Module):
        model_itself = getattr(model, 'module', model)  # unwrap DDP
        with super().optim_context(model), autocast_children(model_itself, self.autocast_modules, 'cpu',
                                                             torch.bfloat16):
            yield
