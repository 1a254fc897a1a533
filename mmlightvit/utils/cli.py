"""What the command-line tools share: a user's mistake ends in one line that says what is wrong, not a traceback."""
import sys
from contextlib import contextmanager

from .checkpoint import CheckpointError
from .config import ConfigError
from .files import OutputPathError

# Errors whose message is the whole story: bad paths, unusable checkpoints or configs, missing files.
USER_ERRORS = (OutputPathError, CheckpointError, ConfigError, FileNotFoundError)


@contextmanager
def exit_on_user_error(*extra_types):
    """Turn the errors of :data:`USER_ERRORS` (and ``extra_types``) into ``error: MESSAGE`` on stderr and exit
    status 2. Tools wrap their ``main()`` in it; tests call ``main()`` and see the exception itself."""
    try:
        yield
    except USER_ERRORS + tuple(extra_types) as err:
        print(f'error: {err}', file=sys.stderr)
        raise SystemExit(2) from None
