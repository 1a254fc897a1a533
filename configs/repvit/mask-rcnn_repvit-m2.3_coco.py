# Mask R-CNN + FPN, RepViT-M2.3, COCO-2017, 1x. Paper: APb 44.6 / APm 40.8 (from the 450-epoch checkpoint).
_base_ = './mask-rcnn_repvit-m1.1_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m2_3_distill_450e.pth'
model = dict(
    backbone=dict(arch='m2.3', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 160, 320, 640]))
