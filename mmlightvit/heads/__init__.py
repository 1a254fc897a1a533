"""Task heads, registered in the project's registry: mmdet's SSD head with a fix for mmdet 3.3, and the families'
ImageNet classifier head for mmpretrain.

They import mmdet or mmpretrain, so unlike the backbones they are not imported when a ``mmlightvit.`` name is
resolved: a config that uses one names its module in ``custom_imports`` (``mmlightvit.heads.ssd_head``,
``mmlightvit.heads.cls_head``).
"""
from .cls_head import LightClsHead
from .ssd_head import SSDHead

__all__ = ['LightClsHead', 'SSDHead']
