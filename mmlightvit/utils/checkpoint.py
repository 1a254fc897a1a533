"""Checkpoint files, knowing no model: safe reading (local and downloaded, hash-checked) and the tensors a file holds.

Loading never executes code from the file: every ``torch.load`` here runs with ``weights_only=True`` and an
allowlist of exactly the non-tensor types that mmengine training checkpoints contain (numpy arrays, dtypes and
scalars in the message hub). The project's own loading (:mod:`mmlightvit.models.weights`, which puts the tensors
into a model) reads files through :func:`read_checkpoint` directly; :func:`install_safe_checkpoint_loading`, which
the tools call explicitly (importing the package does not), routes mmengine's own loaders (``Runner.resume``,
``load_checkpoint``, ``init_cfg=dict(type='Pretrained')`` of other models) through it as well.
"""
import argparse
import hashlib
import os
import os.path as osp
import pickle
import re
import sys
from collections import OrderedDict
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


def _numpy_globals() -> List:
    """What pickled numpy arrays, dtypes and scalars refer to, under numpy 2 names and the numpy 1 aliases."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    # Unpickling a dtype instance needs its class (numpy.dtypes.Float32DType, ...): the numeric and bool ones.
    dtype_classes = sorted({type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'}, key=lambda c: c.__name__)
    return [reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes,
            (reconstruct, 'numpy.core.multiarray._reconstruct'), (scalar, 'numpy.core.multiarray.scalar')]


# Exactly what mmengine's checkpoints need beyond tensors and containers: the message hub's HistoryBuffer and
# numpy data; argparse.Namespace appears in official training checkpoints (DeiT-style `args`). All of them only
# restore data: none of them can call arbitrary functions.
SAFE_GLOBALS = [HistoryBuffer, argparse.Namespace, *_numpy_globals()]


def _history_buffer_state(self) -> dict:
    # mmengine stores the statistics *functions* in the state, which pickles as `builtins.getattr` calls that a
    # safe loader must refuse. The default statistics are restored by `__setstate__` anyway, so drop them.
    state = self.__dict__.copy()
    state.pop('statistics_methods', None)
    return state


_TORCH_BOILERPLATE = ('Weights only load failed', 'Please file an issue', 'Check the documentation')
_UNSAFE_MARKERS = ('GLOBAL', 'Unsupported global', 'Can only build', 'is blocked')


def _format_exception(err: BaseException) -> str:
    """The informative line of an exception (torch wraps the unpickler's reason in boilerplate)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    return (detail or lines or [type(err).__name__])[0]


def load_checkpoint_file(filename: str, map_location='cpu') -> dict:
    """Load a checkpoint with ``weights_only=True`` and the project's allowlist.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is truncated, is not a PyTorch checkpoint, or holds objects that could run
            code when unpickled (those are never executed).
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint file {filename!r} does not exist.')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(filename)
        if unsafe or any(marker in str(err) for marker in _UNSAFE_MARKERS):
            found = ', '.join(unsafe) if unsafe else _format_exception(err)
            raise CheckpointError(
                f'Refusing to load checkpoint {filename!r}: it contains Python objects that are not plain data '
                f'({found}). Loading it would allow arbitrary code to run, so it was not unpickled. If you trust '
                'the file, re-save its tensors (e.g. the state dict alone) and load that.') from None
        raise CheckpointError(f'Checkpoint file {filename!r} is not a readable PyTorch checkpoint: '
                              f'{_format_exception(err)}') from None
    except Exception as err:  # torch raises many kinds for damaged or foreign files
        raise CheckpointError(
            f'Checkpoint file {filename!r} is not a readable PyTorch checkpoint (truncated or not a checkpoint): '
            f'{_format_exception(err)}') from None


def _unsafe_globals(filename: str) -> List[str]:
    allowed = {entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}'
               for entry in SAFE_GLOBALS}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: nothing more to tell
        return []
    return sorted(name for name in found if name not in allowed)


def _load_from_local(filename, map_location=None):
    return load_checkpoint_file(filename, map_location=map_location)


_URL_HASH = re.compile(r'-([a-f0-9]{8,64})\.')  # torch.hub / OpenMMLab names: NAME-<sha256 prefix>.pth


def http_cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where a downloaded checkpoint is kept: torch's hub cache, under a name that includes a digest of the whole
    URL, so two URLs that end in the same file name never share a cached file."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(url.split('?')[0])
    return osp.join(model_dir, f'{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}')


def sha256_of(path: str) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _load_from_http(filename, map_location=None, model_dir=None, progress=None):
    """Download once into torch's hub cache (rank 0 first), then load safely like a local file.

    When the file name carries a hash (``NAME-<sha256 prefix>.pth``), the download and the cached file are
    checked against it; a cached file that does not match is named in the error and never loaded.
    """
    from mmengine.dist import barrier, get_dist_info
    if progress is None:  # a progress bar on a terminal, not in logs
        progress = sys.stderr.isatty()
    cached = http_cache_path(filename, model_dir)
    match = _URL_HASH.search(osp.basename(filename.split('?')[0]))
    hash_prefix = match.group(1) if match else None
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        # torch writes a temporary file, checks the hash prefix and renames it into place
        torch.hub.download_url_to_file(filename, cached, hash_prefix=hash_prefix, progress=progress)
    if world_size > 1:
        barrier()
        if not osp.isfile(cached):
            raise CheckpointError(f'Rank {rank} cannot see {cached!r} downloaded by rank 0 from {filename}.')
    if hash_prefix is not None and not sha256_of(cached).startswith(hash_prefix):
        raise CheckpointError(f'The cached download {cached!r} of {filename} does not match the hash in its name '
                              f'({hash_prefix}): it is damaged or another file. Delete it to download again.')
    return load_checkpoint_file(cached, map_location=map_location)


def read_checkpoint(filename: str, map_location='cpu') -> dict:
    """Load a checkpoint from a local path or an http(s) URL (downloaded once into torch's hub cache, with a
    progress bar on a terminal), always weights-only. Raises like :func:`load_checkpoint_file`."""
    if str(filename).startswith(('http://', 'https://')):
        return _load_from_http(filename, map_location=map_location)
    return load_checkpoint_file(filename, map_location=map_location)


def install_safe_checkpoint_loading() -> None:
    """Make mmengine save and load checkpoints safely under torch >= 2.6 (idempotent). The tools call this
    (through :func:`mmlightvit.engine.prepare_run`); a script of your own that runs mmengine's Runner on our
    configs calls it, or ``prepare_run``, before building the Runner.

    * local paths and http(s) URLs load through :func:`load_checkpoint_file` (weights only, allowlisted types),
      which makes ``--resume`` work again without ``weights_only=False``;
    * HistoryBuffer pickles as plain data, so the checkpoints the Runner writes pass that allowlist.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=_load_from_http, force=True)
    HistoryBuffer.__getstate__ = _history_buffer_state


# ----------------------------------------------------------------------------------------------------------------
# State dicts


_WRAPPER_KEYS = ('state_dict', 'model', 'model_ema', 'module', 'net')


def extract_state_dict(checkpoint: dict, source: str = '<checkpoint>',
                       preferred_keys: Optional[Sequence[str]] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Return the tensors of a checkpoint, whatever wraps them.

    Accepts a bare state dict or one under ``state_dict`` (mmengine, FasterViT), ``model`` / ``model_ema``
    (DeiT-style official releases; ``model`` is preferred), ``module`` or ``net``; strips a ``module.`` prefix
    (DataParallel). ``preferred_keys`` are tried before those, in order (e.g. ``('model_ema', ...)`` for a
    family whose published accuracies are the EMA weights).
    """
    wrapper_keys = tuple(preferred_keys or ()) + tuple(k for k in _WRAPPER_KEYS if k not in (preferred_keys or ()))
    state = checkpoint
    while isinstance(state, dict) and not _is_tensor_dict(state):
        key = next((k for k in wrapper_keys if isinstance(state.get(k), dict)), None)
        if key is None:
            raise CheckpointError(
                f'{source}: no state dict found. Expected tensors at the top level or under one of '
                f'{list(wrapper_keys)}; found keys {sorted(state)[:10]}.')
        state = state[key]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f'{source}: the checkpoint holds no tensors.')
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state.items())


def checkpoint_classes(checkpoint) -> Optional[tuple]:
    """The class names a checkpoint's model was trained for: ``meta.dataset_meta.classes`` (mmengine) or
    ``meta.CLASSES`` (mmcv 1.x); None when it does not say."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    classes = (meta.get('dataset_meta') or {}).get('classes') or meta.get('CLASSES')
    return tuple(classes) if classes else None


def _is_tensor_dict(state: dict) -> bool:
    return len(state) > 0 and all(isinstance(v, torch.Tensor) for v in state.values())
