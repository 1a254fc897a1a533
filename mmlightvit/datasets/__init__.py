"""Datasets of the project: deterministic synthetic demo sets (COCO- and ADE20K-style) and their dataset classes.

Importing this package imports mmdet and mmseg (the dataset classes derive from theirs).
"""
from .demo_data import (ADE_CLASSES, ADE_PALETTE, COCO_CLASSES, COCO_PALETTE, DemoADE20KDataset, DemoCocoDataset,
                        ensure_demo_ade20k, ensure_demo_coco, generate_demo_ade20k, generate_demo_coco)

__all__ = [
    'generate_demo_coco', 'generate_demo_ade20k', 'ensure_demo_coco', 'ensure_demo_ade20k', 'DemoCocoDataset',
    'DemoADE20KDataset', 'COCO_CLASSES', 'COCO_PALETTE', 'ADE_CLASSES', 'ADE_PALETTE'
]
