"""Checkpoints that survive a kill at any moment, resume that finds the newest complete one, and loads that never
leave part of a model random without saying so.

* :class:`AtomicCheckpointHook`: mmengine's CheckpointHook with a crash-safe order
  of work: the checkpoint is written to a hidden temporary file and renamed into place, ``last_checkpoint`` is
  replaced (also by rename) only after that, and outdated checkpoints are deleted only after the new one is
  complete. mmengine 0.10.7 deletes first and writes in place, so a kill during the save can leave nothing usable.
* :func:`find_resume_checkpoint`: what ``--resume`` without a path resumes from: the file ``last_checkpoint``
  names when it is complete, else the newest complete ``epoch_N.pth`` / ``iter_N.pth``.
* :class:`StrictLoadHook`: on resume, the checkpoint must hold the whole training state and match the model and
  the optimizer; for evaluation, the weights must match the model exactly; for fine-tuning (``load_from``) only
  the layers whose shape follows the class count may differ, and they are named. The weights are resolved (and
  released layouts converted) by :func:`mmlightvit.models.weights.resolve_state`, as everywhere else.
* :class:`FuseModelHook`: evaluation of the folded (re-parameterised) model; a fused checkpoint is loaded into
  the folded model, which StrictLoadHook then checks.
"""
import os
import os.path as osp
import re
import zipfile
from collections import OrderedDict
from functools import partial
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, EMAHook, Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import BaseLoop

from mmlightvit.models.layers import fuse_model
from mmlightvit.models.weights import format_mismatches, resolve_state, state_dict_mismatches
from mmlightvit.registry import HOOKS
from mmlightvit.utils.checkpoint import CheckpointError, checkpoint_classes, install_safe_checkpoint_loading
from mmlightvit.utils.files import replace_file_atomically, temporary_path

LAST_CHECKPOINT = 'last_checkpoint'  # the file mmengine's CheckpointHook and find_latest_checkpoint use
_RESUMABLE_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` zip file (a truncated one has no central directory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _resumable_checkpoints(work_dir: str) -> List[str]:
    """``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir``, newest (highest N, then latest written) first."""
    found = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        match = _RESUMABLE_NAME.match(name)
        if match:
            path = osp.join(work_dir, name)
            found.append((int(match.group(2)), osp.getmtime(path), path))
    return [path for *_, path in sorted(found, reverse=True)]


def find_resume_checkpoint(work_dir: str, logger=None) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from, or None when ``work_dir`` holds none.

    ``last_checkpoint`` is followed when it names a complete file; otherwise the newest complete
    ``epoch_N.pth`` / ``iter_N.pth`` is taken and the reason is logged. Checkpoints that exist but are all
    incomplete raise :class:`CheckpointError`: starting over would overwrite them.
    """
    log = logger.warning if logger is not None else print
    named = None
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        # A work dir that was moved or copied keeps its file names: look for the file beside the pointer too.
        for path in (named, osp.join(work_dir, osp.basename(named))):
            if path and is_complete_checkpoint(path):
                return path
    candidates = _resumable_checkpoints(work_dir)
    for path in candidates:
        if is_complete_checkpoint(path):
            reason = (f'{LAST_CHECKPOINT} names {named!r}, which is missing or incomplete' if named is not None else
                      f'{pointer} does not exist')
            log(f'Resuming from {path}: {reason}; it is the newest complete checkpoint in {work_dir}.')
            return path
    if candidates:
        raise CheckpointError(
            f'--resume found checkpoints in {work_dir} but none is complete: {", ".join(candidates)}. '
            'Starting over would overwrite them; resume from a checkpoint elsewhere (--resume PATH) or use another '
            '--work-dir.')
    return None


class _DeferredRemoval:
    """A file backend stand-in that records removals instead of doing them (the rest is passed through)."""

    def __init__(self, backend):
        self._backend = backend
        self.removed: List[str] = []

    def remove(self, path):
        self.removed.append(path)

    def rmtree(self, path):
        self.removed.append(path)

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook (same arguments, same files) with a save that a kill cannot break.

    Order of work on a local disk: write ``.NAME.tmp-PID``, fsync, rename it to ``NAME``; for a regular checkpoint
    then replace ``last_checkpoint`` by rename, and only then delete the checkpoints beyond ``max_keep_ckpts``;
    for a new best checkpoint, delete the previous best only after the new one is in place. Remote back ends
    (``s3://`` and the like) keep mmengine's behaviour.

    A config that uses this hook (or StrictLoadHook) switches on the project's weights-only checkpoint loading
    for mmengine (:func:`~mmlightvit.utils.install_safe_checkpoint_loading`), so the checkpoints it writes
    load safely on resume.
    """

    def __init__(self, *args, **kwargs):
        install_safe_checkpoint_loading()
        super().__init__(*args, **kwargs)

    def _write(self, runner, out_dir, filename, *args, **kwargs) -> None:
        """``Runner.save_checkpoint(out_dir, filename, ...)`` through a temporary file and a rename."""

        def save(tmp_path):
            # the class's method: _save_best_checkpoint routes the instance's save_checkpoint here
            type(runner).save_checkpoint(runner, out_dir, osp.basename(tmp_path), *args, **kwargs)

        path = osp.join(out_dir, filename)
        if is_main_process():  # Runner.save_checkpoint writes on the main process only
            replace_file_atomically(path, save)
        else:  # a no-op for mmengine's Runner (master_only), called on every rank all the same
            save(temporary_path(path))

    def _save_checkpoint_with_step(self, runner, step, meta):
        # (_save_best_checkpoint calls this with the deferring stand-in of a local backend)
        if not isinstance(self.file_backend, (LocalBackend, _DeferredRemoval)):
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            # the best-checkpoint path may save the same step twice; keep the bookkeeping of mmengine's hook
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, self.out_dir, ckpt_filename, self.file_client_args, save_optimizer=self.save_optimizer,
                    save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                    backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return

        def write_pointer(tmp):
            with open(tmp, 'w') as f:
                f.write(self.last_ckpt)

        replace_file_atomically(osp.join(runner.work_dir, LAST_CHECKPOINT), write_pointer)
        for old_step in outdated:
            old = osp.join(self.out_dir, self.filename_tmpl.format(old_step))
            if osp.isfile(old) and old != self.last_ckpt:
                os.remove(old)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_best_checkpoint(runner, metrics)
        # mmengine's method removes the previous best and then writes the new one in place: write through
        # _write, and defer the removal until the new file is complete.
        backend, self.file_backend = self.file_backend, _DeferredRemoval(self.file_backend)
        runner.save_checkpoint = partial(self._write, runner)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            deferred, self.file_backend = self.file_backend, backend
            del runner.save_checkpoint  # the Runner's own method again
        if is_main_process():
            for path in deferred.removed:
                if backend.isfile(path):
                    backend.remove(path)
                elif backend.isdir(path):
                    backend.rmtree(path)


def is_training(runner) -> bool:
    """Whether the runner is in ``train()``: it builds its train loop before loading checkpoints and validating;
    in ``test()`` / ``val()`` the loop stays a config dict (or None)."""
    return isinstance(getattr(runner, '_train_loop', None), BaseLoop)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model whose weights a checkpoint holds: inside DDP wrappers and test-time-augmentation models (the
    Runner loads checkpoints into the same one)."""
    return model.module if is_model_wrapper(model) or isinstance(model, BaseTTAModel) else model


def _random_parts(missing: List[str]) -> List[str]:
    """Top-level modules with missing weights, e.g. ['roi_head.mask_head'] (two name levels)."""
    return sorted({'.'.join(key.split('.')[:2]) for key in missing})


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Check every checkpoint the Runner loads before its weights are used.

    * resume (``--resume``): the checkpoint must hold ``meta`` (epoch, iter), ``message_hub``, ``state_dict`` and,
      when the run has them, ``optimizer`` and ``param_schedulers``; the weights must match the model exactly and
      the optimizer's parameter groups the current optimizer's. mmengine would resume a partial checkpoint and
      train on with random parts, or fail later with a bare ``KeyError``.
    * evaluation (``tools/test.py``, ``Runner.val()`` / ``test()``): an officially released detector or segmentor
      (backbone in the official module tree) is converted in memory first; the weights must match the model exactly;
      mmengine only logs mismatched keys and evaluates whatever stayed random. ``allow_partial=True`` accepts a
      partial load and logs which parts stayed random.
    * fine-tuning (``load_from`` while training): released layouts are converted too; the tensors whose shape
      follows the class count (a model trained on other classes) keep their fresh initialisation and are named
      one by one; any other mismatch stops the run unless ``allow_partial=True``.

    Runs after FuseModelHook (which folds the model before a fused checkpoint is loaded) and before EMAHook
    (which copies the checkpoint into its averaged model).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, allow_partial: bool = False):
        install_safe_checkpoint_loading()  # the file itself is read weights-only, before this hook checks it
        self.allow_partial = allow_partial

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        source = f'Checkpoint {runner._load_from!r}' if getattr(runner, '_load_from', None) else 'The checkpoint'
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f'{source} is a {type(checkpoint).__name__}, not a checkpoint dict.')
        model = unwrap_model(runner.model)
        training = is_training(runner)
        if runner._resume and training:
            self._check_training_state(runner, checkpoint, source)
        weights = resolve_state(model, checkpoint, source, strict=False)
        state, mismatches = weights.state, weights.mismatches
        if weights.layout is not None:  # what the Runner loads next
            checkpoint['state_dict'] = state
            runner.logger.info(f'{source}: the weights are in the {weights.layout}; converted in memory.')
        if not mismatches:
            return
        summary = f'{source} does not match {type(model).__name__}: {format_mismatches(mismatches)}.'
        if runner._resume and training:
            raise CheckpointError(f'{summary} Resuming would train on with the unmatched parts; resume from a '
                                  'checkpoint of this model and config.')
        missing = mismatches.get('missing keys', [])
        if training:
            self._fine_tune(runner, model, checkpoint, state, source)
        elif self.allow_partial:
            runner.logger.warning(f'Partial load allowed: {summary} Random (not loaded): '
                                  f'{", ".join(_random_parts(missing)) or "nothing"}.')
        else:
            raise CheckpointError(
                f'{summary} Evaluating it would measure a partly random model. Use a checkpoint of this config '
                "(or convert it), or pass --allow-partial-load to evaluate anyway.")

    def _fine_tune(self, runner, model: nn.Module, checkpoint: dict, state: Dict[str, torch.Tensor],
                   source: str) -> None:
        """``load_from`` while training: the tensors whose shape follows the class count (a released COCO model
        fine-tuned on other classes) keep their fresh initialisation, each one named; any other mismatch is an
        error, unless ``allow_partial``."""
        from .setup import class_counts, class_dependent_keys
        expected = model.state_dict()
        per_class = set(class_dependent_keys(runner.cfg))
        reinitialised = [key for key in expected
                         if key in state and key in per_class and state[key].shape != expected[key].shape]
        # the mismatches left once the re-initialised tensors count as fitting
        others = state_dict_mismatches(model, OrderedDict((k, expected[k] if k in reinitialised else v)
                                                          for k, v in state.items()))
        if others:
            summary = f'{source} does not fit {type(model).__name__}: {format_mismatches(others)}.'
            if not self.allow_partial:
                raise CheckpointError(
                    f'load_from: {summary} Fine-tuning re-initialises only the layers whose shape follows the class '
                    'count; start from a checkpoint of this model (or convert it), or pass --allow-partial-load '
                    'to train with the unmatched parts as the model initialised them.')
            runner.logger.warning(f'Partial load allowed: {summary} Kept as initialised: '
                                  f'{", ".join(_random_parts(others.get("missing keys", []))) or "nothing"}.')
        if reinitialised:
            file_classes = checkpoint_classes(checkpoint)
            trained_for = f'{len(file_classes)} classes' if file_classes else 'another class count'
            counts = sorted({n for _, n in class_counts(runner.cfg.model, 'model')})
            runner.logger.warning(
                f'load_from: {source} was trained for {trained_for}, this model has '
                f'{" / ".join(map(str, counts))}: {len(reinitialised)} tensors whose shape follows the class '
                'count keep their fresh initialisation: ' + ', '.join(
                    f'{key} (checkpoint {tuple(state[key].shape)}, model {tuple(expected[key].shape)})'
                    for key in reinitialised) + '.')
            # what the Runner loads next: the file's tensors without the re-initialised ones
            checkpoint['state_dict'] = OrderedDict((k, v) for k, v in state.items() if k not in reinitialised)

    @staticmethod
    def _check_training_state(runner, checkpoint: dict, source: str) -> None:
        required = ['meta', 'message_hub', 'state_dict']
        if runner.optim_wrapper is not None:
            required.append('optimizer')
        if runner.param_schedulers:
            required.append('param_schedulers')
        missing = [key for key in required if key not in checkpoint]
        meta = checkpoint.get('meta')
        if isinstance(meta, dict):
            missing += [f'meta.{key}' for key in ('epoch', 'iter') if key not in meta]
        if missing:
            raise CheckpointError(
                f'{source} cannot be resumed: it lacks {", ".join(missing)} (a training checkpoint written by '
                f'the Runner holds {", ".join(required)}). To start a new run from its weights, use load_from '
                '(--cfg-options load_from=PATH) instead of --resume.')
        saved = checkpoint.get('optimizer')
        optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
        if isinstance(saved, dict) and 'param_groups' in saved and optimizer is not None:
            ours = [len(group['params']) for group in optimizer.param_groups]
            theirs = [len(group['params']) for group in saved['param_groups']]
            if ours != theirs:
                raise CheckpointError(
                    f'{source} cannot be resumed: its optimizer has parameter groups of {theirs} parameters, this '
                    f'run\'s optimizer {ours} (another model or another paramwise_cfg).')


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
    half-random model; :class:`StrictLoadHook` (which the tools always add) checks the checkpoint against the
    (folded or unfolded) model, after this hook. Without it this hook refuses to run.

    An ``EMAHook`` (RTMDet configs) keeps a copy of the model whose parameters it swaps with the model's before
    testing, pairing them by position; the hook folds that copy too, so both keep the same structure. The priority
    (HIGH) puts this hook's ``after_load_checkpoint`` before StrictLoadHook's (ABOVE_NORMAL) and EMAHook's (49),
    which copies the checkpoint's weights into its copy.

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
        if not any(isinstance(hook, StrictLoadHook) for hook in runner.hooks):
            raise CheckpointError("FuseModelHook needs StrictLoadHook to check the checkpoint against the model "
                                  "(mmengine loads non-strictly): add dict(type='mmlightvit.StrictLoadHook') to "
                                  'custom_hooks (mmlightvit.engine.prepare_run adds it).')

    def before_val(self, runner) -> None:
        self._fuse(runner, 'before_val')

    def before_test(self, runner) -> None:
        self._fuse(runner, 'before_test')
