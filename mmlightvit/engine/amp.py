"""Mixed precision on the CPU: bfloat16 autocast, which mmengine 0.10.7's AmpOptimWrapper does not offer (it
asserts a GPU/NPU/MLU/MUSA device and scales the loss for float16), for training and for testing."""
from contextlib import ExitStack, contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from mmlightvit.registry import HOOKS, OPTIM_WRAPPERS
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


#: What runs in bfloat16 per task: mmcv's CPU kernels (NMS, RoIAlign) in mmdet's heads take float32 only.
BF16_MODULES = {'mmdet': ('backbone', 'neck')}


@HOOKS.register_module()
class BFloat16TestHook(Hook):
    """Tests (and validates) with the model, or its ``autocast_modules``, under bfloat16 autocast: the BF16 form
    of the model, measured by the config's own evaluator (``tools/test.py --bf16``). On CPUs with AMX-BF16 or
    AVX-512 BF16, oneDNN runs the convolutions and matrix products in bfloat16; elsewhere it emulates them.

    Args:
        autocast_modules: the model's children to run in bfloat16 (their outputs are cast back to float32);
            ``None``: the whole model.
        device_type: ``'cpu'`` or ``'cuda'``.
    """

    priority = 'VERY_LOW'

    def __init__(self, autocast_modules: Optional[Sequence[str]] = None, device_type: str = 'cpu'):
        self.autocast_modules = None if autocast_modules is None else tuple(autocast_modules)
        self.device_type = device_type
        self._stack = ExitStack()

    def _enter(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        self._stack.enter_context(autocast_children(model, self.autocast_modules, self.device_type, torch.bfloat16))

    def before_test_epoch(self, runner) -> None:
        self._enter(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._stack.close()

    def before_val_epoch(self, runner) -> None:
        self._enter(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._stack.close()
