"""The forked tool runs behave as ``python SCRIPT ARGS`` does: argv, folder, environment, output and exit status."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import run_python

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
