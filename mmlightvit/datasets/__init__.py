"""Datasets of the project: mmdet's COCO and mmseg's ADE20K and PASCAL VOC datasets with clear errors, and
deterministic synthetic demo sets (COCO-, ADE20K- and ImageNet-style) with their dataset classes, and the
transforms that official test pipelines need (AlignResize).

Importing this package imports mmdet, mmseg and mmpretrain's datasets (the dataset classes derive from theirs).
"""
from .checked import ADE20KDataset, CocoDataset, DatasetError, ImageNet, PascalVOCDataset
from .demo_data import (ADE_CLASSES, ADE_PALETTE, COCO_CLASSES, COCO_PALETTE, IMAGENET_CLASSES, DemoADE20KDataset,
                        DemoCocoDataset, DemoImageNetDataset, ensure_custom_coco, ensure_demo_ade20k,
                        ensure_demo_coco, ensure_demo_imagenet, generate_custom_coco, generate_demo_ade20k,
                        generate_demo_coco, generate_demo_imagenet)
from .transforms import AlignResize

__all__ = [
    'CocoDataset', 'ADE20KDataset', 'PascalVOCDataset', 'ImageNet', 'DatasetError', 'AlignResize',
    'generate_demo_coco', 'generate_demo_ade20k', 'generate_demo_imagenet', 'ensure_demo_coco', 'ensure_demo_ade20k',
    'ensure_demo_imagenet', 'generate_custom_coco', 'ensure_custom_coco', 'DemoCocoDataset', 'DemoADE20KDataset',
    'DemoImageNetDataset', 'COCO_CLASSES',
    'COCO_PALETTE', 'ADE_CLASSES', 'ADE_PALETTE', 'IMAGENET_CLASSES'
]
