"""Runs that end with the same weights whether or not they were interrupted: seeded data loading and the random
generators' state in every checkpoint.

Training data whose random augmentation depends on the sample's place in the run, not on a worker's history.

mmengine seeds each DataLoader worker once, when it starts. With ``persistent_workers=True`` a worker then
draws its augmentations (flips, crops, ...) from one stream for the whole run, and a resumed run starts fresh
workers at epoch N with the seeds of epoch 0: its augmentations, and so its weights, differ from an
uninterrupted run. Here every sample is augmented under a seed derived from (run seed, epoch, rank, position in
the epoch), carried from the sampler to the process that loads the sample. The result does not depend on
``num_workers``, ``persistent_workers`` or an interruption.

* :class:`SeededSampler` / :class:`SeededInfiniteSampler`: mmengine's DefaultSampler / InfiniteSampler
  (same order of indices) that yield :class:`SeededIndex`.
* The sampler gives its dataset a ``__getitems__`` (which torch's fetcher calls with a batch of indices) that
  seeds Python's, NumPy's and torch's generators before each sample. In the main process (``num_workers=0``)
  the generators' states are put back afterwards, so data loading does not shift the model's random draws.
* :class:`RNGStateHook`: the model's own random draws (proposal sampling, drop path, ...) resume where they were.
"""
import random
from functools import partial
from typing import Iterator, List

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.hooks import Hook
from torch.utils.data import get_worker_info

from mmlightvit.registry import DATA_SAMPLERS, HOOKS


class SeededIndex(int):
    """A dataset index that carries the seed of its sample's random augmentation."""

    def __new__(cls, index: int, seed: int):
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self):  # pickled to the DataLoader workers
        return SeededIndex, (int(self), self.seed)


def sample_seed(run_seed: int, epoch: int, rank: int, position: int) -> int:
    """A 32-bit seed, statistically independent for every (run seed, epoch, rank, position)."""
    entropy = [int(run_seed) % 2**32, int(epoch), int(rank), int(position)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fetch_seeded(dataset, indices: List[int]) -> list:
    """``dataset.__getitems__``: load each sample under its own seed (plain indices load as they are)."""
    in_worker = get_worker_info() is not None
    saved = None if in_worker else (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        samples = []
        for index in indices:
            if isinstance(index, SeededIndex):
                _seed_everything(index.seed)
            samples.append(dataset[int(index)])
        return samples
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


def install_seeded_fetch(dataset) -> None:
    """Make torch's fetcher load ``dataset``'s samples through :func:`_fetch_seeded` (idempotent)."""
    current = getattr(dataset, '__getitems__', None)
    if not (isinstance(current, partial) and current.func is _fetch_seeded):
        dataset.__getitems__ = partial(_fetch_seeded, dataset)


@DATA_SAMPLERS.register_module()
class SeededSampler(DefaultSampler):
    """mmengine's DefaultSampler whose indices carry the seed of their sample (see the module docstring)."""

    def __init__(self, dataset, shuffle: bool = True, seed=None, round_up: bool = True):
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        install_seeded_fetch(dataset)

    def __iter__(self) -> Iterator[SeededIndex]:
        for position, index in enumerate(super().__iter__()):
            yield SeededIndex(index, sample_seed(self.seed, self.epoch, self.rank, position))


@DATA_SAMPLERS.register_module()
class SeededInfiniteSampler(InfiniteSampler):
    """mmengine's InfiniteSampler whose indices carry the seed of their sample.

    The position counts samples since the sampler was built, which is what an iteration-based loop replays when
    it resumes (it skips the batches already trained).
    """

    def __init__(self, dataset, shuffle: bool = True, seed=None):
        super().__init__(dataset, shuffle=shuffle, seed=seed)
        install_seeded_fetch(dataset)
        self._position = 0

    def __iter__(self) -> Iterator[SeededIndex]:
        for index in super().__iter__():
            yield SeededIndex(index, sample_seed(self.seed, 0, self.rank, self._position))
            self._position += 1


SEEDED_SAMPLERS = {'DefaultSampler': 'mmlightvit.SeededSampler', 'InfiniteSampler': 'mmlightvit.SeededInfiniteSampler'}


def data_sampler(loader):
    """The sampler that orders a DataLoader's indices (inside its batch sampler, when it has one)."""
    inner = getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)
    return inner if hasattr(inner, 'dataset') else loader.sampler


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random number generators in each checkpoint and restore them on resume.

    mmengine re-seeds a resumed run from the config's seed, so proposal sampling and other random choices after
    the resume differ from an uninterrupted run. With this hook (and the seeded samplers of
    this module for the augmentations) a run that is stopped and resumed ends with the
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
