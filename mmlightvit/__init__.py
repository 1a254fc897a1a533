"""mmlightvit: lightweight vision backbones for OpenMMLab 2.x dense prediction."""
from .utils.checkpoint import install_safe_checkpoint_loading
from .utils.config_package import register_config_package

__version__ = '0.1.0'

# Importing the package (which resolving any 'mmlightvit.*' type name does) makes checkpoint loading safe.
install_safe_checkpoint_loading()
# ... and lets mmengine configs inherit ours as 'mmlightvit::<family>/<config>.py'.
register_config_package()
