"""Writing files without losing anyone's: the output-path guard every tool uses, atomic replacement, and the
clean-up of temporary files that a killed writer left behind.

* :func:`check_output` - before any work: an output is never one of the inputs, never inside a dataset, never an
  existing file (or a non-empty folder) unless ``overwrite``, and its folder is writable.
* :func:`replace_file_atomically` / :func:`replace_folder_atomically` - a reader sees the old file (folder) or the
  new one, never half of one: one mechanism for both (a temporary name beside the target, fsync, one rename,
  the temporary removed on failure).
* :func:`remove_stale_temporaries` - ``.NAME.tmp-PID`` files whose writer (``PID``) is gone.
"""
import os
import os.path as osp
import re
import shutil
import tempfile
import uuid
from typing import Callable, Iterable, List, Optional

TEMPORARY_NAME = re.compile(r'^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$')
WRITE_TEST_PREFIX = '.write-test-'  # the probe file of _check_writable


class OutputPathError(ValueError):
    """An output path that would overwrite or corrupt something the user owns, or that cannot be written."""


def temporary_path(path: str, unique: bool = False) -> str:
    """Where :func:`replace_file_atomically` writes ``path`` first: ``.NAME.tmp-PID`` beside it. ``unique`` adds a
    random suffix (``.NAME.tmp-PID-XXXXXXXX``): a folder is created there, which must not collide with one that a
    killed writer of a reused PID left."""
    directory, name = osp.split(osp.abspath(path))
    suffix = f'-{uuid.uuid4().hex[:8]}' if unique else ''
    return osp.join(directory, f'.{name}.tmp-{os.getpid()}{suffix}')


def replace_file_atomically(path: str, write: Callable[[str], None]) -> None:
    """Write ``path`` through ``write(tmp_path)`` and a rename, so a reader sees the old file or the new one."""
    _write_then_rename(path, temporary_path(path), write, os.replace)


def replace_folder_atomically(path: str, write: Callable[[str], None],
                              publish: Callable[[str, str], None] = os.replace) -> None:
    """Fill a new folder through ``write(tmp_folder)`` and move it to ``path`` in one rename, so a reader sees the
    old folder (or none) or the complete new one.

    ``publish(tmp_folder, path)`` does the move: ``os.replace`` by default, which fails when ``path`` is a
    non-empty folder; a caller that may replace or keep an existing folder passes its own. Whatever is left of the
    temporary folder afterwards is removed.
    """
    tmp = temporary_path(path, unique=True)
    os.makedirs(tmp)
    _write_then_rename(path, tmp, write, publish)


def _write_then_rename(path: str, tmp: str, write: Callable[[str], None],
                       publish: Callable[[str, str], None]) -> None:
    """The mechanism of both: ``write(tmp)``, fsync what it wrote, ``publish(tmp, path)`` (a rename); ``tmp`` is
    removed whatever happens, and the rename is made durable (fsync of the folder that holds ``path``)."""
    try:
        write(tmp)
        _fsync_tree(tmp)
        publish(tmp, path)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif osp.exists(tmp):
            os.remove(tmp)
    _fsync_folder(osp.dirname(osp.abspath(path)))


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: str) -> None:
    try:
        _fsync(folder)
    except OSError:  # some file systems cannot fsync a directory
        pass


def _fsync_tree(path: str) -> None:
    """fsync a file, or every file and folder under a folder."""
    if not osp.isdir(path):
        _fsync(path)
        return
    for folder, _, names in os.walk(path):
        for name in names:
            _fsync(osp.join(folder, name))
        _fsync_folder(folder)


def process_exists(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str) -> List[str]:
    """Remove the ``.NAME.tmp-PID`` files in ``directory`` whose writing process no longer exists (a kill during
    a save leaves them); files of a living process are kept. Returns the removed paths."""
    removed = []
    for name in sorted(os.listdir(directory)) if osp.isdir(directory) else []:
        match = TEMPORARY_NAME.match(name)
        path = osp.join(directory, name)
        if match and osp.isfile(path) and not process_exists(int(match.group('pid'))):
            os.remove(path)
            removed.append(path)
    return removed


def _same_file(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return osp.realpath(a) == osp.realpath(b)


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_writable(folder: str, what: str) -> None:
    """Create ``folder`` if needed and write (and remove) a file in it."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=WRITE_TEST_PREFIX):
            pass
    except OSError as err:
        raise OutputPathError(f'{what} {folder!r} cannot be written: {err.strerror or err}. Choose a writable '
                              'location.') from None


def check_output(path: str, what: str = 'output', inputs: Iterable[str] = (), protected: Iterable[str] = (),
                 overwrite: bool = False, folder: bool = False) -> Optional[str]:
    """Check an output path before any work starts; raise :class:`OutputPathError` naming the problem.

    Args:
        path: the file (or, with ``folder=True``, the folder) a tool is about to write.
        what: how the message names it, e.g. ``'--out'``.
        inputs: files the tool reads; the output may never be one of them (links resolved), ``overwrite`` or not.
        protected: folders nothing may be written into (datasets), ``overwrite`` or not.
        overwrite: allow replacing an existing file, or writing into a non-empty folder.
        folder: ``path`` is a folder the tool fills.

    Returns:
        A sentence saying what will be replaced when ``overwrite`` lets an existing output be replaced (for the
        tool to print), else None.
    """
    if not path:
        raise OutputPathError(f'{what} is empty: give a file or folder to write.')
    for source in inputs:
        if source and osp.exists(source) and osp.exists(path) and _same_file(path, source):
            raise OutputPathError(f'{what} {path!r} is the input {source!r}: writing it would destroy the input. '
                                  'Choose another output path.')
    for root in protected:
        if root and _inside(path, root):
            raise OutputPathError(f'{what} {path!r} is inside the dataset folder {root!r}; writing there would '
                                  "change the dataset's files. Choose an output outside it.")
    replaced = None
    if folder:
        if osp.exists(path) and not osp.isdir(path):
            raise OutputPathError(f'{what} {path!r} is a file; a folder is expected.')
        # (another rank's write test is not an entry of the user's)
        entries = [e for e in os.listdir(path) if not e.startswith(WRITE_TEST_PREFIX)] if osp.isdir(path) else []
        if entries:
            if not overwrite:
                raise OutputPathError(f'{what} {path!r} already holds {len(entries)} entries that this run could '
                                      'overwrite. Choose a new or empty folder, or pass --overwrite to write into '
                                      'it anyway.')
            replaced = f'{what}: writing into {osp.abspath(path)}, which already holds {len(entries)} entries.'
        _check_writable(path, what)
    else:
        if osp.isdir(path):
            raise OutputPathError(f'{what} {path!r} is a folder; a file path is expected.')
        if osp.exists(path) or osp.islink(path):
            if not overwrite:
                raise OutputPathError(f'{what} {path!r} already exists. Choose another path, or pass --overwrite '
                                      'to replace it.')
            replaced = f'{what}: replacing the existing {osp.abspath(path)}.'
        _check_writable(osp.dirname(osp.abspath(path)), what)
    return replaced
