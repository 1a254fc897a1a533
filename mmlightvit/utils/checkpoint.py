"""Checkpoint handling shared by every entry point: safe loading, layout unwrapping and strict backbone loading.

Loading never executes code from the file: every ``torch.load`` here runs with ``weights_only=True`` and an
allowlist of exactly the non-tensor types that mmengine training checkpoints contain (numpy arrays, dtypes and
scalars in the message hub). The project's own loading (backbones' ``init_cfg``, the inferencers, the converters)
reads files through :func:`read_checkpoint` directly; :func:`install_safe_checkpoint_loading`, which the tools call
explicitly (importing the package does not), routes mmengine's own loaders (``Runner.resume``, ``load_checkpoint``,
``init_cfg=dict(type='Pretrained')`` of other models) through it as well.
"""
import argparse
import hashlib
import os
import os.path as osp
import pickle
import re
import sys
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
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


def strip_prefix(state: Dict[str, torch.Tensor], prefix: str) -> 'OrderedDict[str, torch.Tensor]':
    """Keep only the keys under ``prefix`` (e.g. ``backbone.`` of a detector checkpoint), without it."""
    return OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))


def holds_whole_model(state: Dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` is a whole detector / segmentor / classifier (it has ``backbone.*`` keys)."""
    return any(k.startswith('backbone.') for k in state)


def backbone_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The backbone's tensors: a whole model's ``backbone.*`` keys without the prefix, else ``state`` itself."""
    return strip_prefix(state, 'backbone.') if holds_whole_model(state) else state


def drop_keys(state: Dict[str, torch.Tensor], prefixes: Iterable[str]) -> 'OrderedDict[str, torch.Tensor]':
    """Remove every key that starts with one of ``prefixes`` (classifier heads and the like)."""
    prefixes = tuple(prefixes)
    return OrderedDict((k, v) for k, v in state.items() if not k.startswith(prefixes))


def _summarise(keys: List[str], limit: int = 12) -> str:
    shown = ', '.join(keys[:limit])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > limit else shown


def state_dict_mismatches(model: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, List[str]]:
    """The keys of ``state`` that do not fit ``model``: {'missing keys': [...], 'unexpected keys': [...],
    'wrong shapes': ['key (checkpoint (..), model (..))', ...]}, empty kinds left out."""
    expected = model.state_dict()
    mismatches = {
        'missing keys': [k for k in expected if k not in state],
        'unexpected keys': [k for k in state if k not in expected],
        'wrong shapes': [f'{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})'
                         for k in expected if k in state and state[k].shape != expected[k].shape],
    }
    return {kind: keys for kind, keys in mismatches.items() if keys}


def format_mismatches(mismatches: Dict[str, List[str]]) -> str:
    """'missing keys: a, b; wrong shapes: ...' for the result of :func:`state_dict_mismatches`."""
    return '; '.join(f'{kind}: {_summarise(keys)}' for kind, keys in mismatches.items())


def check_state_dict(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected and mis-shaped key."""
    mismatches = state_dict_mismatches(model, state)
    if mismatches:
        raise CheckpointError(f'{source} does not match {type(model).__name__}: {format_mismatches(mismatches)}.')


def load_backbone_checkpoint(model: nn.Module, filename: str,
                             convert: Optional[Callable[[dict], dict]] = None,
                             prefix: Optional[str] = None,
                             preferred_keys: Optional[Sequence[str]] = None) -> None:
    """Load a backbone checkpoint strictly, whatever its layout.

    ``filename`` may hold the backbone alone, a whole detector/segmentor/classifier (``prefix``, default
    ``backbone.`` when such keys exist), or a foreign layout that ``convert`` maps onto the model's keys
    (dropping classifier heads). Anything that still does not match is an error, never a partial load.
    ``preferred_keys`` is passed to :func:`extract_state_dict`.
    """
    checkpoint = read_checkpoint(filename)
    state = extract_state_dict(checkpoint, source=filename, preferred_keys=preferred_keys)
    state = strip_prefix(state, prefix) if prefix else backbone_state(state)
    if convert is not None:
        state = convert(state)
    check_state_dict(model, state, source=f'Checkpoint {filename!r}')
    model.load_state_dict(state, strict=True)


def released_checkpoint_keys(model: nn.Module) -> Optional[Sequence[str]]:
    """The wrapper keys to read a release for ``model`` from first: its backbone's ``checkpoint_keys`` (e.g.
    EdgeNeXt's ``model_ema``, whose weights the published accuracies are of)."""
    return getattr(getattr(model, 'backbone', model), 'checkpoint_keys', None)


def convert_released_state(model: nn.Module, state: Dict[str, torch.Tensor]):
    """Map a released detector's, segmentor's or classifier's state dict onto ``model``'s keys.

    Official dense releases (RepViT's and TransNeXt's mmdet 2.x / mmseg 0.x and mmdet 3.x / mmseg 1.x files) keep
    the heads under the names mmdet 3.3 / mmseg 1.2 use, but the backbone in the official module tree. The
    ``backbone.*`` keys go through the backbone's own ``convert_checkpoint``; the rest is kept as it is.
    Released ImageNet classifiers (no ``backbone.`` prefix) go to an mmpretrain ``ImageClassifier`` whose head
    reads them: the backbone keys through ``convert_checkpoint``, the classifier keys through the backbone
    family's ``convert_classifier_head``.

    Returns:
        ``(state, converted)``: the state dict to load and whether it was converted. Keys the conversion filled
        in from the model itself (optional output norms that no release has) are left out, so a strict check
        reports them as missing.
    """
    backbone = getattr(model, 'backbone', None)
    convert = getattr(backbone, 'convert_checkpoint', None)
    if convert is None:
        return state, False
    if holds_whole_model(state):
        original = backbone_state(state)
        result = OrderedDict((k, v) for k, v in state.items() if not k.startswith('backbone.'))
    elif hasattr(model, 'head') and hasattr(backbone, 'convert_classifier_head'):
        original = state
        result = OrderedDict(('head.' + k, v) for k, v in backbone.convert_classifier_head(state).items())
    else:
        return state, False
    converted = convert(OrderedDict(original))
    if list(converted) == list(original):
        return state, False
    own = {k: v.data_ptr() for k, v in backbone.state_dict().items()}
    result.update(('backbone.' + k, v) for k, v in converted.items() if own.get(k) != v.data_ptr())
    return result, True
