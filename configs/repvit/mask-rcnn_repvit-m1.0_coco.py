# Mask R-CNN + FPN, RepViT-M1.0, COCO-2017, 1x, with the M1.1 recipe (the paper reports no detection result).
_base_ = './mask-rcnn_repvit-m1.1_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_0_distill_300e.pth'
model = dict(
    backbone=dict(arch='m1.0', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[56, 112, 224, 448]))
