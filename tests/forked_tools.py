"""``python tools/X.py ARGS`` for the tests, each run in a process of its own that starts in milliseconds.

A tool's process spends its first seconds importing torch, mmcv, mmdet, mmseg and mmpretrain. A server process
imports that stack once; each run is a ``fork`` of it that takes the run's argv, working folder, environment and
output files and then executes the script as ``__main__``, as ``python SCRIPT ARGS`` would. A run is still its own
process (exit code, signals, file locks and global state are its own); what it shares with a fresh interpreter
started by hand is everything but the import time. mmlightvit itself is not preloaded: every run imports it as a
user's process does, so a tool that forgets to register our modules still fails.

The server never runs a tensor operation before it forks, so the children start without the parent's thread pools.
"""
import atexit
import contextlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback

# Third-party modules every tool imports; their import time is what the fork saves.
PRELOAD = ('torch', 'torchvision', 'numpy', 'cv2', 'mmengine.runner', 'mmcv.ops', 'mmcv.transforms', 'mmdet.models',
           'mmdet.datasets', 'mmdet.evaluation', 'mmdet.visualization', 'mmseg.models', 'mmseg.datasets',
           'mmseg.evaluation', 'mmseg.visualization', 'mmpretrain.models', 'mmpretrain.datasets', 'timm')
SERVER_ENV = {'PYTHONWARNINGS': 'ignore'}


def _exit_code(exit: SystemExit) -> int:
    """The exit status Python gives ``sys.exit(code)``: None is 0, an int is itself, anything else is printed to
    stderr and gives 1."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1


def _run_child(request: dict) -> None:
    """In the forked child: become ``python SCRIPT ARGS`` with the request's folder, environment and output files,
    run the script, exit. Never returns."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, request['stdout']), (2, request['stderr'])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, fd)
            os.close(out)
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        script = os.path.abspath(request['argv'][0])
        sys.argv = request['argv']
        sys.path[0] = os.path.dirname(script)  # as the interpreter sets it for a script
        try:
            runpy.run_path(script, run_name='__main__')
            code = 0
        except SystemExit as exit:
            code = _exit_code(exit)
        except BaseException:  # noqa: B036 - the interpreter's own last resort: print and exit 1
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: S110 - a closed stream has nothing left to write
                pass
        os._exit(code)


def serve() -> None:
    """The server loop: a JSON request per line on stdin; answers the child's PID, then its exit code."""
    for name in PRELOAD:
        __import__(name)
    print(json.dumps({'ready': True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        print(json.dumps({'pid': pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({'returncode': os.waitstatus_to_exitcode(status)}), flush=True)


class ForkedTools:
    """The test side: starts the server on first use and hands it one run at a time."""

    def __init__(self) -> None:
        self._server = None
        self._lock = threading.Lock()
        self._pending = b''  # what the server wrote past the last line read

    def _answer(self, timeout=None):
        """The server's next line as a dict; None when nothing came within ``timeout`` seconds."""
        fd = self._server.stdout.fileno()
        while b'\n' not in self._pending:
            if not select.select([fd], [], [], timeout)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f'the tool server exited (code {self._server.wait()})')
            self._pending += chunk
        line, self._pending = self._pending.split(b'\n', 1)
        return json.loads(line)

    def _start(self) -> None:
        self._server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env=dict(os.environ, **SERVER_ENV))
        self._pending = b''
        self._answer()  # 'ready', once the stack is imported

    def run(self, argv, cwd, env, timeout) -> subprocess.CompletedProcess:
        """``python ARGV`` (ARGV[0] a script) as subprocess.run(..., capture_output=True, text=True) returns it."""
        with self._lock, tempfile.TemporaryDirectory(prefix='forked-tool-') as logs:
            if self._server is None or self._server.poll() is not None:
                self._start()
            request = dict(argv=[str(a) for a in argv], cwd=str(cwd), env=dict(env),
                           stdout=os.path.join(logs, 'stdout'), stderr=os.path.join(logs, 'stderr'))
            self._server.stdin.write(json.dumps(request).encode() + b'\n')
            self._server.stdin.flush()
            pid = self._answer()['pid']
            answer = self._answer(timeout)
            if answer is None:
                with contextlib.suppress(ProcessLookupError):  # it may have ended since
                    os.kill(pid, signal.SIGKILL)
            returncode = (answer or self._answer())['returncode']
            output = [open(request[name], errors='replace').read() for name in ('stdout', 'stderr')]
            if answer is None:
                raise subprocess.TimeoutExpired([sys.executable, *request['argv']], timeout, *output)
            return subprocess.CompletedProcess([sys.executable, *request['argv']], returncode, *output)

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.stdin.close()
            self._server.wait(timeout=60)


if __name__ == '__main__':
    serve()
