# Mask R-CNN + FPN, RepViT-M0.9, COCO-2017, 1x, with the M1.1 recipe (the paper reports no detection result).
_base_ = './mask-rcnn_repvit-m1.1_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m0_9_distill_300e.pth'
model = dict(
    backbone=dict(arch='m0.9', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 192, 384]))
