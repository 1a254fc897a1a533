"""The forked tool runs behave as ``python SCRIPT ARGS`` does: argv, folder, environment, output and exit status; so
do the runs that a tool starts through the launcher (``sys.executable`` of a forked run)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import FORKED_TOOLS, run_python

SCRIPT = textwrap.dedent('''
    import os, signal, sys, time
    print('argv', sys.argv[1:], 'cwd', os.getcwd(), 'env', os.environ.get('PROBE'), 'main', __name__)
    print('path0', sys.path[0], 'preloaded', 'mmlightvit' in sys.modules)
    print('to stderr', file=sys.stderr)
    action = sys.argv[1]
    if action == 'exit-message':
        sys.exit('stopped: bad input')
    if action == 'exit-3':
        sys.exit(3)
    if action == 'raise':
        raise ValueError('deep inside')
    if action == 'kill':
        os.kill(os.getpid(), signal.SIGTERM)
    if action == 'sleep':
        print('pid', os.getpid(), flush=True)
        time.sleep(60)
''')


@pytest.fixture
def script(tmp_path):
    path = tmp_path / 'probe.py'
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize('fresh', [False, True], ids=['forked', 'fresh'])
def test_a_forked_run_matches_a_fresh_interpreter(script, tmp_path, fresh):
    folder = tmp_path / 'cwd'
    folder.mkdir()
    runs = {action: run_python([script, action, 'x y'], check=False, cwd=folder, env={'PROBE': 'set'}, fresh=fresh)
            for action in ('ok', 'exit-message', 'exit-3', 'raise', 'kill')}
    ok = runs['ok']
    assert ok.returncode == 0 and ok.stderr == 'to stderr\n'
    assert ok.stdout.splitlines() == [f"argv ['ok', 'x y'] cwd {folder} env set main __main__",
                                      f'path0 {script.parent} preloaded False']
    assert (runs['exit-message'].returncode, runs['exit-message'].stderr.splitlines()[-1]) == (1, 'stopped: bad input')
    assert runs['exit-3'].returncode == 3
    assert runs['raise'].returncode == 1
    assert runs['raise'].stderr.splitlines()[-1] == 'ValueError: deep inside' and 'Traceback' in runs['raise'].stderr
    assert runs['kill'].returncode == -15
    assert 'PROBE' not in os.environ  # the test process's environment is left as it was


def test_a_forked_run_that_overruns_is_killed(script):
    with pytest.raises(subprocess.TimeoutExpired):
        run_python([script, 'sleep'], timeout=2)
    assert run_python([script, 'ok', '']).returncode == 0  # the server goes on with the next run


def test_python_options_start_a_new_interpreter():
    proc = run_python(['-c', 'import sys; print(sys.executable)'])
    assert proc.stdout.strip() == sys.executable


def _outcome(proc):
    return proc.returncode, proc.stdout, proc.stderr.splitlines()[-1:]


def test_the_launcher_runs_scripts_code_and_stdin_as_python_does(script, tmp_path):
    launcher = FORKED_TOOLS.launcher()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONUNBUFFERED'}  # buffered unless -u
    env['PROBE'] = 'set'
    probe = "import sys; print(sys.argv, sys.path[0] == '', __name__, 'mmlightvit' in sys.modules)"
    unflushed = "import os; print('only with -u'); os._exit(0)"
    for args, stdin in [*(([script, action, 'x y'], None) for action in ('ok', 'exit-message', 'exit-3', 'raise',
                                                                           'kill')),
                        (['-c', probe, 'a b'], None), (['-', 'a b'], probe),
                        # with -u what is printed reaches the pipe even if the process ends without flushing
                        (['-u', '-c', unflushed], None), (['-c', unflushed], None)]:
        fresh, forked = (subprocess.run([python, *args], cwd=tmp_path, env=env, input=stdin, capture_output=True,
                                        text=True, timeout=120) for python in (sys.executable, launcher))
        assert _outcome(forked) == _outcome(fresh), args
    # forked indeed: the stack is imported already; other options run the real interpreter
    check = "import sys; print('torch' in sys.modules)"
    assert subprocess.run([launcher, '-c', check], capture_output=True, text=True).stdout == 'True\n'
    assert subprocess.run([launcher, '-E', '-c', check], capture_output=True, text=True).stdout == 'False\n'


def test_a_tool_that_starts_a_tool_forks_it_too(script, tmp_path):
    """A forked run's sys.executable is the launcher: the runs it starts are forked while it waits for them."""
    outer = tmp_path / 'outer.py'
    outer.write_text(textwrap.dedent(f'''
        import os, subprocess, sys
        proc = subprocess.run([sys.executable, {str(script)!r}, 'ok', 'x y'], capture_output=True, text=True,
                              env=dict(os.environ, PROBE='nested'))
        print(os.path.basename(sys.executable), proc.returncode, proc.stdout, end='')
        check = "import sys; print('forked:', 'torch' in sys.modules)"  # the stack is imported already
        print(subprocess.run([sys.executable, '-c', check], capture_output=True, text=True).stdout, end='')
    '''))
    proc = run_python([outer])
    assert proc.stdout.splitlines() == [f"python 0 argv ['ok', 'x y'] cwd {os.getcwd()} env nested main __main__",
                                        f'path0 {script.parent} preloaded False', 'forked: True']


def test_the_launcher_passes_signals_on(script):
    launcher = subprocess.Popen([FORKED_TOOLS.launcher(), script, 'sleep'], stdout=subprocess.PIPE, text=True)
    pid = next(int(line.split()[1]) for line in launcher.stdout if line.startswith('pid'))
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=60) == -signal.SIGTERM
    for _ in range(100):  # the run itself ended too
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f'the run {pid} outlived its launcher')
