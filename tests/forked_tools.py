"""``python tools/X.py ARGS`` for the tests, each run in a process of its own that starts in milliseconds.

A tool's process spends its first seconds importing torch, mmcv, mmdet, mmseg and mmpretrain. A server process
imports that stack once; each run is a ``fork`` of it that takes the run's argv, working folder, environment and
output files and then executes the script as ``__main__``, as ``python SCRIPT ARGS`` would. A run is still its own
process (exit code, signals, file locks and global state are its own); what it shares with a fresh interpreter
started by hand is everything but the import time. mmlightvit itself is not preloaded: every run imports it as a
user's process does, so a tool that forgets to register our modules still fails.

Tools that start tools (ablate.py runs tools/train.py and tools/test.py, gpu_report.sh runs benchmark.py and
train.py, benchmark.py --memory measures each form in a process of its own) start them the same way: the server also
listens on a Unix socket, and an executable named ``python`` (:meth:`ForkedTools.launcher`, stdlib only) hands its
``SCRIPT ARGS``, ``-c CODE ARGS`` or ``- ARGS`` (the program on stdin), each also after ``-u``, its folder,
environment and standard streams to the server, forwards the signals it gets to the forked run and exits as the run
does. Any other command line (``-m``, ...) it executes with the real interpreter. Every forked run sees the launcher as
``sys.executable``; tests hand it to the shell scripts as ``PYTHON``.

The server never runs a tensor operation before it forks, so the children start without the parent's thread pools.
Each run is forked by a helper process that waits for it and reports its exit status, so the server can start a
nested run while the run that asked for it is still going.
"""
import atexit
import builtins
import contextlib
import io
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import types

# Third-party modules every tool imports; their import time is what the fork saves.
PRELOAD = ('torch', 'torchvision', 'numpy', 'cv2', 'mmengine.runner', 'mmcv.ops', 'mmcv.transforms', 'mmdet.models',
           'mmdet.datasets', 'mmdet.evaluation', 'mmdet.visualization', 'mmseg.models', 'mmseg.datasets',
           'mmseg.evaluation', 'mmseg.visualization', 'mmpretrain.models', 'mmpretrain.datasets', 'timm')
SERVER_ENV = {'PYTHONWARNINGS': 'ignore'}

# The launcher: ``python ARGS`` through the server's socket. It runs with ``-I -S`` (no site packages, stdlib only),
# so it starts in milliseconds; {python!r} and {socket_path!r} are filled in by ForkedTools.launcher.
LAUNCHER = '''
import json, os, signal, socket, sys

PYTHON, SOCKET = {python!r}, {socket_path!r}
args = sys.argv[1:]
unbuffered = args[:1] == ['-u']  # torchrun and tools/slurm_launch.sh start python -u SCRIPT
run = args[1:] if unbuffered else args
forkable = run and (run[0] == '-' or (run[0] == '-c' and len(run) > 1) or
                    (not run[0].startswith('-') and os.path.isfile(run[0])))
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    if not forkable:
        raise OSError('not a script')
    connection.connect(SOCKET)
except OSError:  # an option the server does not handle, or no server: the real interpreter
    os.execv(PYTHON, [PYTHON, *args])
streams = []
for fd in (0, 1, 2):
    try:
        os.fstat(fd)
        streams.append(fd)
    except OSError:  # a closed standard stream: the run gets /dev/null
        streams.append(os.open(os.devnull, os.O_RDWR))
socket.send_fds(connection, [b'R'], streams)
connection.sendall(json.dumps(dict(argv=run, cwd=os.getcwd(), env=dict(os.environ), unbuffered=unbuffered)).encode()
                   + b'\\n')
answers = connection.makefile('rb')
pid = json.loads(answers.readline())['pid']


def forward(number, frame):
    try:
        os.kill(pid, number)
    except ProcessLookupError:  # it has just ended: its status is on the way
        pass


for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(number, forward)
line = answers.readline()
if not line:
    sys.exit('python (forked test launcher): the server ended before the run did')
code = json.loads(line)['returncode']
if code < 0:  # killed by a signal: so is the launcher
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code if code >= 0 else 128 - code)
'''


def _exit_code(exit: SystemExit) -> int:
    """The exit status Python gives ``sys.exit(code)``: None is 0, an int is itself, anything else is printed to
    stderr and gives 1."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1


def _run_main(argv) -> None:
    """Run ``python ARGV`` (a script, ``-c CODE`` or ``-`` with the program on stdin) as ``__main__``."""
    if argv[0] in ('-c', '-'):
        source, name = (argv[1], '<string>') if argv[0] == '-c' else (sys.stdin.read(), '<stdin>')
        sys.argv = [argv[0], *argv[2 if argv[0] == '-c' else 1:]]
        sys.path[0] = ''  # as the interpreter sets it for -c and stdin
        main = types.ModuleType('__main__')
        main.__builtins__ = builtins
        sys.modules['__main__'] = main
        exec(compile(source, name, 'exec'), main.__dict__)
        return
    script = os.path.abspath(argv[0])
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(script)  # as the interpreter sets it for a script
    runpy.run_path(script, run_name='__main__')


_SERVER_STREAMS = []  # the server's sys.stdin / stdout / stderr: kept, as collecting one would close its descriptor


def _standard_streams(unbuffered: bool) -> None:
    """sys.stdin, stdout and stderr anew over descriptors 0 to 2, buffered as a new interpreter buffers them (a
    run's buffering is its own, not the server's): stdout by blocks unless it is a terminal, stderr by lines;
    ``unbuffered`` (``python -u``, PYTHONUNBUFFERED) writes both straight through."""
    for fd, name in enumerate(('stdin', 'stdout', 'stderr')):
        old = getattr(sys, name)
        _SERVER_STREAMS.append(old)
        raw = io.FileIO(fd, 'w' if fd else 'r', closefd=False)
        if fd and unbuffered:
            buffer = raw
        else:
            buffer = io.BufferedWriter(raw) if fd else io.BufferedReader(raw)
        stream = io.TextIOWrapper(buffer, encoding=old.encoding, errors=old.errors, newline='\n',
                                  line_buffering=not unbuffered and (fd == 2 or raw.isatty()),
                                  write_through=unbuffered and fd > 0)
        setattr(sys, name, stream)
        setattr(sys, f'__{name}__', stream)


def _run_child(request: dict, streams, launcher) -> None:
    """In the forked child: become ``python ARGV`` with the request's folder, environment, standard streams (three
    open file descriptors) and buffering, run it, exit. Never returns."""
    code = 1
    try:
        for target, fd in enumerate(streams):
            os.dup2(fd, target)
        for fd in set(streams) - {0, 1, 2}:
            os.close(fd)
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        _standard_streams(bool(request.get('unbuffered') or os.environ.get('PYTHONUNBUFFERED')))
        sys.executable = launcher  # what the run starts as sys.executable is forked as well
        try:
            _run_main(request['argv'])
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


def _fork_and_report(request: dict, streams, launcher, report) -> None:
    """In the helper process: fork the run, ``report({'pid': ...})``, wait for it, ``report({'returncode': ...})``,
    exit. Never returns."""
    try:
        pid = os.fork()
        if pid == 0:
            _run_child(request, streams, launcher)
        for fd in set(streams):
            os.close(fd)
        report({'pid': pid})
        _, status = os.waitpid(pid, 0)
        report({'returncode': os.waitstatus_to_exitcode(status)})
    finally:
        os._exit(0)


def _stdin_request(request: dict, launcher: str) -> None:
    """A run asked for on stdin (the test process): its output goes to the request's files, the answers to the
    server's stdout."""
    streams = [os.open(os.devnull, os.O_RDONLY)]
    for name in ('stdout', 'stderr'):
        streams.append(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))

    def report(answer):
        print(json.dumps(answer), flush=True)

    _fork_and_report(request, streams, launcher, report)


def _launcher_request(connection: socket.socket, launcher: str) -> None:
    """A run asked for by the launcher: its standard streams come with the request, the answers go back."""
    _, streams, _, _ = socket.recv_fds(connection, 1, 3)
    request = json.loads(connection.makefile('rb').readline())

    def report(answer):
        with contextlib.suppress(OSError):  # a launcher that is gone needs no answer
            connection.sendall(json.dumps(answer).encode() + b'\n')

    _fork_and_report(request, streams, launcher, report)


def serve(socket_path: str, launcher: str) -> None:
    """The server loop: a JSON request per line on stdin, answered with the run's PID, then its exit code; runs
    asked for by the launcher on the socket. Each run is handled by a helper process of its own."""
    for name in PRELOAD:
        __import__(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    print(json.dumps({'ready': True}), flush=True)
    stdin, pending = sys.stdin.fileno(), b''
    while True:
        readable = select.select([stdin, listener], [], [], 10)[0]
        with contextlib.suppress(ChildProcessError):  # the helpers that have finished
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        requests = []
        if listener in readable:
            connection = listener.accept()[0]
            requests.append(lambda: _launcher_request(connection, launcher))
        if stdin in readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                break
            pending += chunk
            while b'\n' in pending:
                line, pending = pending.split(b'\n', 1)
                requests.append(lambda request=json.loads(line): _stdin_request(request, launcher))
        for handle in requests:
            sys.stdout.flush()
            if os.fork() == 0:  # the helper
                try:
                    listener.close()
                    handle()
                finally:
                    os._exit(1)  # handle() exits itself; this is for a request it could not read
        if listener in readable:
            connection.close()
    listener.close()
    os.unlink(socket_path)


class ForkedTools:
    """The test side: starts the server on first use and hands it one run at a time."""

    def __init__(self) -> None:
        self._server = None
        self._lock = threading.Lock()
        self._pending = b''  # what the server wrote past the last line read
        self._folder = None  # the socket and the launcher

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
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix='forked-tools-')
            socket_path = os.path.join(self._folder, 'socket')
            launcher = os.path.join(self._folder, 'python')
            with open(launcher, 'w') as f:
                f.write(f'#!{sys.executable} -IS\n' + LAUNCHER.format(python=sys.executable, socket_path=socket_path))
            os.chmod(launcher, 0o755)
        self._server = subprocess.Popen([sys.executable, __file__, *self._paths()], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=dict(os.environ, **SERVER_ENV))
        self._pending = b''
        self._answer()  # 'ready', once the stack is imported

    def _paths(self):
        return os.path.join(self._folder, 'socket'), os.path.join(self._folder, 'python')

    def _started(self) -> None:
        if self._server is None or self._server.poll() is not None:
            self._start()

    def launcher(self) -> str:
        """The path of an executable that runs ``python SCRIPT ARGS`` (and ``-c`` / ``-``) forked from the server
        (see the module's docstring): for a shell script's ``PYTHON``."""
        with self._lock:
            self._started()
        return self._paths()[1]

    def run(self, argv, cwd, env, timeout) -> subprocess.CompletedProcess:
        """``python ARGV`` (ARGV[0] a script) as subprocess.run(..., capture_output=True, text=True) returns it."""
        with self._lock, tempfile.TemporaryDirectory(prefix='forked-tool-') as logs:
            self._started()
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
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


if __name__ == '__main__':
    serve(*sys.argv[1:3])
