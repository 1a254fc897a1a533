"""Datasets of the project: mmdet's COCO and mmseg's ADE20K and PASCAL VOC datasets with clear errors, and
deterministic synthetic demo sets (COCO- and ADE20K-style) with their dataset classes, and the transforms that
official test pipelines need (AlignResize).

Importing this package imports mmdet and mmseg (the dataset classes derive from theirs).
"""
from .checked import ADE20KDataset, CocoDataset, DatasetError, PascalVOCDataset
from .demo_data import (ADE_CLASSES, ADE_PALETTE, COCO_CLASSES, COCO_PALETTE, DemoADE20KDataset, DemoCocoDataset,
                        ensure_demo_ade20k, ensure_demo_coco, generate_demo_ade20k, generate_demo_coco)
from .transforms import AlignResize

__all__ = [
    'CocoDataset', 'ADE20KDataset', 'PascalVOCDataset', 'DatasetError', 'AlignResize', 'generate_demo_coco',
    'generate_demo_ade20k', 'ensure_demo_coco', 'ensure_demo_ade20k', 'DemoCocoDataset', 'DemoADE20KDataset',
    'COCO_CLASSES', 'COCO_PALETTE', 'ADE_CLASSES', 'ADE_PALETTE'
]
