"""Task heads of mmdet that need a fix to work with mmdet 3.3, registered in the project's registry.

They import mmdet, so unlike the backbones they are not imported when a ``mmlightvit.`` name is resolved: a
config that uses one names this package in ``custom_imports``.
"""
from .ssd_head import SSDHead

__all__ = ['SSDHead']
