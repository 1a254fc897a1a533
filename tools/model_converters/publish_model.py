"""Publish a training checkpoint: keep the weights and plain metadata, and name the file after its sha256.

    python tools/model_converters/publish_model.py IN_FILE OUT_FILE [--overwrite]

IN_FILE is a checkpoint that tools/train.py wrote (read with the safe loader: weights only). The published file
holds ``state_dict`` (contiguous CPU tensors, dtypes unchanged) and ``meta`` reduced to plain Python values
(``dataset_meta``, epoch, iter, seed, mmengine version, ...; numpy values and tuples become Python numbers and
lists). The optimizer, scheduler and message-hub states and anything else in the training checkpoint are dropped,
so a plain ``torch.load(path)`` (weights only, the default of torch >= 2.6) reads the file, and so do mmdet's
``init_detector`` and mmseg's ``init_model``.

As OpenMMLab's model zoos name their files, the first 8 hex digits of the file's sha256 go before the extension:
``OUT_FILE=repvit.pth`` writes ``repvit-1a2b3c4d.pth``. The project's loader checks a file downloaded from a URL
that ends in such a name against it (as torch.hub's ``check_hash`` does). An existing file is replaced only with
``--overwrite``, and never the input.
"""
import argparse
import os
import os.path as osp
from collections import OrderedDict
from functools import partial
from typing import List, Optional, Sequence

import numpy as np
import torch

from mmlightvit.utils.checkpoint import CheckpointError, read_checkpoint, sha256_of
from mmlightvit.utils.cli import exit_on_user_error
from mmlightvit.utils.files import check_output, replace_file_atomically, temporary_path

KEPT_KEYS = ('state_dict', 'meta')
PLAIN_SCALARS = (str, int, float, bool, type(None))
HASH_LENGTH = 8  # hex digits of the sha256 in the published name (mmdet's and torch.hub's convention)
_DROPPED = object()  # what plain_value returns for a value that is not plain


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('in_file', help='training checkpoint (what tools/train.py writes)')
    parser.add_argument('out_file', help='published file; the sha256 prefix is inserted before its extension')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the published file if it exists (never the input)')
    return parser.parse_args(argv)


def plain_value(value, where: str, dropped: List[str]):
    """``value`` made of str / int / float / bool / None / list / dict only: numpy arrays and scalars become lists
    and Python numbers, tuples become lists. A dict entry that is not plain is left out and its path (``where``)
    added to ``dropped``; a list with such an item is left out whole (its items' positions may mean something, as a
    palette's do). Returns ``_DROPPED`` when ``value`` itself is not plain."""
    if isinstance(value, (np.ndarray, np.generic)):  # before the scalars: np.float64 is a float subclass
        value = value.tolist()
    if type(value) in PLAIN_SCALARS:  # exactly these: a subclass (an enum, a numpy string) pickles as its class
        return value
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if type(key) not in (str, int):
                dropped.append(f'{where}[{key!r}]')
                continue
            item = plain_value(item, f'{where}.{key}', dropped)
            if item is not _DROPPED:
                result[key] = item
        return result
    if isinstance(value, (list, tuple)):
        inside = []
        items = [plain_value(item, f'{where}[{index}]', inside) for index, item in enumerate(value)]
        if not inside:
            return items
    dropped.append(where)
    return _DROPPED


def published_state_dict(checkpoint, source: str) -> 'OrderedDict[str, torch.Tensor]':
    """The checkpoint's ``state_dict`` as contiguous CPU tensors, each with a storage of its own (a view would
    otherwise save the whole storage it looks into)."""
    state = checkpoint.get('state_dict') if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f'Checkpoint {source!r} holds no state_dict (found {found}); give a checkpoint that '
                              'tools/train.py wrote.')
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f'The state_dict of {source!r} holds values that are not tensors: '
                              f'{", ".join(map(str, not_tensors[:5]))}.')
    published = OrderedDict(
        (key, value.detach().cpu().clone(memory_format=torch.contiguous_format)) for key, value in state.items())
    # The module versions that load_state_dict passes on to the modules (plain dicts, kept as they are)
    metadata = getattr(state, '_metadata', None)
    if isinstance(metadata, dict) and plain_value(metadata, '_metadata', []) is not _DROPPED:
        published._metadata = metadata
    return published


def hashed_path(path: str, sha256: str) -> str:
    """``out.pth`` -> ``out-1a2b3c4d.pth``."""
    stem, extension = osp.splitext(path)
    return f'{stem}-{sha256[:HASH_LENGTH]}{extension}'


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    # OUT_FILE itself is never written (its hashed name is, checked below once known): here only that it is not
    # the input and that its folder is writable.
    check_output(args.out_file, 'OUT_FILE', inputs=[args.in_file], overwrite=True)
    checkpoint = read_checkpoint(args.in_file)
    state = published_state_dict(checkpoint, args.in_file)
    dropped = [str(key) for key in checkpoint if key not in KEPT_KEYS]
    meta = checkpoint.get('meta', {})
    if isinstance(meta, dict):
        meta = plain_value(meta, 'meta', dropped)
    else:  # not the dict mmengine writes
        dropped.append('meta')
        meta = {}

    # Written under a temporary name first: the final name depends on the bytes. Through a file object, so that
    # the bytes do not depend on the file's name (torch.save puts a path's name into the archive).
    staging = temporary_path(args.out_file)
    try:
        with open(staging, 'wb') as f:
            torch.save({'state_dict': state, 'meta': meta}, f)
        sha256 = sha256_of(staging)
        out = hashed_path(args.out_file, sha256)
        note = check_output(out, 'OUT_FILE', inputs=[args.in_file], overwrite=args.overwrite)
        replace_file_atomically(out, partial(os.replace, staging))
    finally:
        if osp.exists(staging):
            os.remove(staging)

    size_mb = osp.getsize(out) / 1e6
    if note:
        print(note)
    print(f'{args.in_file} -> {out}\n'
          f'  sha256 {sha256}, {size_mb:.1f} MB\n'
          f'  kept: state_dict ({len(state)} tensors), meta ({", ".join(map(str, meta)) or "empty"})\n'
          f'  dropped: {", ".join(dropped) or "nothing"}')
    return dict(out=out, sha256=sha256, size_mb=size_mb, meta_keys=list(meta), dropped=dropped)


if __name__ == '__main__':
    with exit_on_user_error():
        main()
