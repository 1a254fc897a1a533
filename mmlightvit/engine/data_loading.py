"""Training data whose random augmentation depends on the sample's place in the run, not on a worker's history.

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
"""
import random
from functools import partial
from typing import Iterator, List

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from torch.utils.data import get_worker_info

from mmlightvit.registry import DATA_SAMPLERS


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
