"""mmlightvit: lightweight vision backbones for OpenMMLab 2.x dense prediction.

Importing the package registers its modules (through ``mmlightvit.registry``) and its config package name for
``mmlightvit::`` paths, and changes nothing else in the process. The tools switch on the safe checkpoint loading
for mmengine's loaders explicitly (``mmlightvit.utils.install_safe_checkpoint_loading``; ``prepare_run`` does it).
"""
from .utils.config_package import register_config_package

__version__ = '0.1.0'

register_config_package()
