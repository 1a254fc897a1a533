# Ablation: coarser pooled branch, pooling ratios (16, 8, 4, 1) instead of (8, 4, 2, 1). The parameters keep their
# shapes, so the released ImageNet weights still load.
_base_ = '../mask-rcnn_transnext-tiny_coco.py'
model = dict(backbone=dict(sr_ratios=(16, 8, 4, 1)))
