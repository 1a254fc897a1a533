"""Runner hooks of the project."""
import random
from typing import List

import numpy as np
import torch
import torch.nn as nn
from mmengine.hooks import EMAHook, Hook

from mmlightvit.engine.checkpointing import convert_loaded_checkpoint, is_training, unwrap_model
from mmlightvit.engine.data_loading import data_sampler
from mmlightvit.models.layers import fuse_model
from mmlightvit.registry import HOOKS
from mmlightvit.utils.checkpoint import CheckpointError, check_state_dict


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random number generators in each checkpoint and restore them on resume.

    mmengine re-seeds a resumed run from the config's seed, so proposal sampling and other random choices after
    the resume differ from an uninterrupted run. With this hook (and the seeded samplers of
    :mod:`mmlightvit.engine.data_loading` for the augmentations) a run that is stopped and resumed ends with the
    same weights as one that was not. The states are plain tensors, arrays and tuples, so they pass the safe
    checkpoint loader. Two more draws are kept in line:

    * the train DataLoader takes its workers' base seed from a generator of its own, not from torch's global one,
      so creating the loader's iterator on resume (with ``persistent_workers`` an uninterrupted run creates it
      once) does not shift the global stream;
    * on resume the train sampler shuffles with the checkpoint's seed (mmengine restores the run's seed after the
      sampler was built with a new one when the config sets no seed).
    """

    def __init__(self):
        self._resumed_state = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Plain weight loading (load_from without resume) keeps the run's own seeding.
        if runner._resume:
            self._resumed_state = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if getattr(loader, 'generator', None) is None:
            loader.generator = torch.Generator().manual_seed(runner.seed)
        sampler = data_sampler(loader)
        if runner._resume and hasattr(sampler, 'seed') and not runner._randomness_cfg.get('diff_rank_seed'):
            sampler.seed = runner.seed
        # Applied here rather than on load: Runner.resume re-seeds after loading when the seeds differ.
        state, self._resumed_state = self._resumed_state, None
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class FuseModelHook(Hook):
    """Evaluate the re-parameterised (deploy) form of the model: every conv-BN pair and RepVGG branch folded.

    From the command line: ``tools/test.py CONFIG CKPT --cfg-options default_hooks.fuse.type=mmlightvit.FuseModelHook``
    (the Runner registers every entry of ``default_hooks``, and this form keeps the config's ``custom_hooks``; a
    ``custom_hooks=[dict(...)]`` option does not work, as mmengine's DictAction reads ``dict(...)`` as a string). In a
    config: ``custom_hooks = _base_.custom_hooks + [dict(type='mmlightvit.FuseModelHook')]``. Two kinds of
    checkpoint work with the same hook:

    * an ordinary (unfused) checkpoint: mmengine loads it into the model as built, then this hook folds the
      model in ``before_test`` / ``before_val`` (the loops call those before ``model.eval()`` and the first batch);
    * a checkpoint written by ``tools/model_converters/fuse_checkpoint.py`` (``meta['fused']`` is True): its
      weights only fit the folded structure, so the hook folds the (not yet loaded) model in
      ``after_load_checkpoint``, which ``Runner.load_checkpoint`` calls after reading the file and *before*
      loading the state dict into the model (mmengine 0.10: ``before_run`` -> ``load_or_resume`` ->
      ``after_load_checkpoint`` -> state dict loaded -> loop ``before_test`` -> ``model.eval()``).

    mmengine loads checkpoints non-strictly (mismatches are only logged), which would silently evaluate a
    half-random model; so this hook checks that the checkpoint's ``state_dict`` matches the (folded or unfolded)
    model exactly and raises otherwise.

    An ``EMAHook`` (RTMDet configs) keeps a copy of the model whose parameters it swaps with the model's before
    testing, pairing them by position; the hook folds that copy too, so both keep the same structure. The priority
    (HIGH) puts this hook's ``after_load_checkpoint`` before EMAHook's (49), which copies the checkpoint's weights
    into its copy.

    Folding is for evaluation only: while training (the runner's train loop is built) the hook does nothing, so a
    config with it can still be trained and validated unfused.
    """

    priority = 'HIGH'

    def __init__(self):
        self._fused = False  # fold once per run: a second fuse_model would find nothing, but keep the log honest

    @staticmethod
    def _models(runner) -> List[nn.Module]:
        """The runner's model (unwrapped from DDP) and the EMA copy of any EMAHook."""
        models = [unwrap_model(runner.model)]
        for hook in getattr(runner, 'hooks', []):
            ema_model = getattr(hook, 'ema_model', None)
            if isinstance(hook, EMAHook) and ema_model is not None:
                models.append(ema_model.module)
        return models

    def _fuse(self, runner, when: str) -> None:
        if self._fused or is_training(runner):
            return
        models = self._models(runner)
        for model in models:
            model.eval()  # BN folding uses the running statistics: fold what eval mode computes
            num_fusable = sum(1 for m in model.modules() if callable(getattr(m, 'fuse', None)))
            params_before = sum(p.numel() for p in model.parameters())
            fused = fuse_model(model)
            if fused is not model:
                raise RuntimeError(f'FuseModelHook cannot replace the top-level {type(model).__name__}: '
                                   'its own fuse() returned a new module.')
            params_after = sum(p.numel() for p in model.parameters())
            if model is models[0]:
                runner.logger.info(f'FuseModelHook ({when}): folded {num_fusable} modules '
                                   f'(conv-BN pairs and RepVGG branches); parameters {params_before / 1e6:.3f}M '
                                   f'-> {params_after / 1e6:.3f}M.')
        if len(models) > 1:
            runner.logger.info('FuseModelHook: folded the EMAHook copy of the model as well.')
        self._fused = True

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if is_training(runner):
            return
        if (checkpoint.get('meta') or {}).get('fused'):
            self._fuse(runner, 'before loading a fused checkpoint')
        elif self._fused:
            raise CheckpointError('FuseModelHook: the model was already folded, but the checkpoint being loaded '
                                  'is not a fused one (meta.fused is not set).')
        model = self._models(runner)[0]
        state = convert_loaded_checkpoint(runner, model, checkpoint, source='FuseModelHook: the checkpoint')
        check_state_dict(model, state, source='FuseModelHook: the checkpoint')

    def before_val(self, runner) -> None:
        self._fuse(runner, 'before_val')

    def before_test(self, runner) -> None:
        self._fuse(runner, 'before_test')
