"""Let other projects inherit mmlightvit's configs as ``mmlightvit::<family>/<config>.py``.

The configs ship inside the package under ``mmlightvit/.mim/configs`` (a link to the repository's ``configs/``
that wheels turn into copies), the way OpenMMLab packages ship theirs. mmengine resolves ``pkg::`` paths only for
packages in its ``MODULE2PACKAGE`` table, and it looks the package up next to its ``*.dist-info``, which is
wrong for PEP 660 editable installs (the sources stay in the checkout). Importing mmlightvit fixes both.
"""
import os.path as osp

PACKAGE = 'mmlightvit'
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHIPPED_CONFIGS = osp.join(PACKAGE_DIR, '.mim', 'configs')


def register_config_package() -> None:
    """Make ``mmlightvit::`` config paths resolvable by ``mmengine.Config``.

    Idempotent. Only mmlightvit's own lookups are changed; every other package resolves as before.
    """
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    if getattr(config_module.get_installed_path, 'handles_mmlightvit', False):
        return
    mmengine_lookup = config_module.get_installed_path

    def get_installed_path(package: str) -> str:
        if package == PACKAGE:
            return PACKAGE_DIR
        return mmengine_lookup(package)

    get_installed_path.handles_mmlightvit = True
    config_module.get_installed_path = get_installed_path
