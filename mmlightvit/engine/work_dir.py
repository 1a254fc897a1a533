"""One training run per work dir: a lock that a second run stops at, and the clean-up a dead run left.

Two runs in one work dir delete each other's checkpoints (``max_keep_ckpts`` rotation), replace each other's
``last_checkpoint`` and dumped config, and interleave their logs. :func:`lock_work_dir` takes an exclusive POSIX
record lock (``fcntl.lockf``) on ``WORK_DIR/.mmlightvit-lock`` for the life of the process and writes the owner
(PID, host, command) into it; a second run finds the lock held and stops with a message naming the first. The
kernel releases the lock when its holder dies however it dies, so a stale lock file (its owner is gone) is simply
taken over; forked DataLoader workers do not inherit it. POSIX locks reach across the machines of a cluster on NFS,
Lustre and GPFS; rank 0 of a distributed run holds it.
"""
import fcntl
import json
import os
import os.path as osp
import socket
import sys
import time
from typing import List, Optional

from mmlightvit.utils.files import OutputPathError, remove_stale_temporaries

LOCK_FILE = '.mmlightvit-lock'
_held = {}  # work dir -> open lock file, kept for the life of the process


class WorkDirBusyError(RuntimeError):
    """Another run holds the work dir."""


def _owner_text(path: str) -> str:
    try:
        with open(path) as f:
            owner = json.load(f)
        return (f"PID {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}: "
                f"{owner.get('command')}")
    except (OSError, ValueError):
        return 'an unknown process (the lock file is being written)'


def lock_work_dir(work_dir: str) -> str:
    """Hold ``work_dir`` for this process (idempotent); raise :class:`WorkDirBusyError` naming the run that holds
    it. Returns the lock file's path."""
    work_dir = osp.abspath(work_dir)
    path = osp.join(work_dir, LOCK_FILE)
    if work_dir in _held:
        return path
    try:
        os.makedirs(work_dir, exist_ok=True)
        handle = open(path, 'a+')
    except OSError as err:
        raise OutputPathError(f'The work dir {work_dir} cannot be written: {err.strerror or err}. Pass a writable '
                              '--work-dir.') from None
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise WorkDirBusyError(
            f'The work dir {work_dir} is in use by another run ({_owner_text(path)}). Two runs in one work dir '
            'delete each other\'s checkpoints and mix their logs: wait for it to finish, or pass another '
            '--work-dir.') from None
    handle.seek(0)
    handle.truncate()
    json.dump(dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime('%Y-%m-%d %H:%M:%S'),
                   command=' '.join([osp.basename(sys.executable), *sys.argv])), handle)
    handle.flush()
    _held[work_dir] = handle
    return path


def release_work_dir(work_dir: str) -> None:
    """Give the lock back before the process ends (the lock file stays; it is free once nobody holds it)."""
    handle = _held.pop(osp.abspath(work_dir), None)
    if handle is not None:
        fcntl.lockf(handle, fcntl.LOCK_UN)
        handle.close()


def prepare_work_dir(work_dir: str, logger=None) -> List[str]:
    """Lock ``work_dir`` and remove what dead writers left in it (``.NAME.tmp-PID`` half-written checkpoints);
    returns the removed files. Call it on the process that writes the work dir (rank 0)."""
    lock_work_dir(work_dir)
    removed = remove_stale_temporaries(work_dir)
    if removed:
        message = (f'Removed {len(removed)} unfinished file(s) that a killed run left in {work_dir}: '
                   f'{", ".join(osp.basename(p) for p in removed)}.')
        (logger.warning if logger is not None else print)(message)
    return removed


def is_rank_zero(environ: Optional[dict] = None) -> bool:
    """Whether this process is rank 0 (or not part of a distributed run), from the launcher's environment."""
    environ = os.environ if environ is None else environ
    return environ.get('RANK', environ.get('SLURM_PROCID', '0')) == '0'
