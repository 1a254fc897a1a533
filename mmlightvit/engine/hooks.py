"""Runner hooks of the project."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from mmlightvit.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random number generators in each checkpoint and restore them on resume.

    mmengine re-seeds a resumed run from the config's seed, so proposal sampling and other random choices after
    the resume differ from an uninterrupted run. With this hook a single-process run that is stopped and resumed
    ends with the same weights as one that was not. The states are plain tensors, arrays and tuples, so they pass
    the safe checkpoint loader.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

    def __init__(self):
        self._resumed_state = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Plain weight loading (load_from without resume) keeps the run's own seeding.
        if runner._resume:
            self._resumed_state = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        # Applied here rather than on load: Runner.resume re-seeds after loading when the seeds differ.
        state, self._resumed_state = self._resumed_state, None
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
