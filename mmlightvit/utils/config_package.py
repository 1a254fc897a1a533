"""Let other projects inherit mmlightvit's configs as ``mmlightvit::<family>/<config>.py``.

The configs ship inside the package under ``mmlightvit/.mim/configs`` (a link to the repository's ``configs/``
that wheels turn into copies), the way OpenMMLab packages ship theirs. mmengine resolves ``pkg::`` paths for the
packages named in its ``MODULE2PACKAGE`` table, under ``site-packages/<package>``: a wheel install puts the package
there, and ``tools/install.sh`` links the checkout's package there for its editable install (as mim needs too).
"""
PACKAGE = 'mmlightvit'


def register_config_package() -> None:
    """Add mmlightvit to mmengine's table of config packages (idempotent; no other entry or lookup changes)."""
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
