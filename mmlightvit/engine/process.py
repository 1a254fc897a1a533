"""A training or test process whose DataLoader workers end with it, however it ends.

Killed (SIGKILL, SIGTERM, the OOM killer), a trainer leaves its DataLoader workers behind: a worker blocked on
handing a batch to a queue that its siblings still hold open waits for a long time (16 minutes and more were
seen), each holding its memory. :func:`end_children_with_this_process` makes the kernel send SIGKILL to every
child forked from then on as soon as this process dies (Linux ``PR_SET_PDEATHSIG``). The tools call it first
thing; it changes only the process that calls it and its future children.

SIGTERM keeps its default action, the end of the process at once. A Python handler that raised ``SystemExit``
instead would raise it wherever the main thread happens to be, and libraries' bare ``except:`` turn it into
other errors (mmengine's ``Config.pretty_text``, run at every checkpoint save, into a ``SyntaxError``). Nothing
needs Python's clean-up: checkpoints are written to temporaries and renamed, and the next run in the work dir
removes the temporaries of dead writers.
"""
import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_installed = False
_forker_pid = None  # set just before each fork; the child sees the value of its parent
_prctl = None


def _remember_forker() -> None:
    global _forker_pid
    _forker_pid = os.getpid()


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _forker_pid:  # the parent died before prctl took effect
        os._exit(1)


def end_children_with_this_process() -> None:
    """SIGKILL this process's future forked children when it dies (idempotent; nothing where ``prctl`` does not
    exist, i.e. not on Linux)."""
    global _installed, _prctl
    if _installed or not sys.platform.startswith('linux'):
        return
    _installed = True
    _prctl = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True).prctl
    os.register_at_fork(before=_remember_forker, after_in_child=_die_with_parent)
