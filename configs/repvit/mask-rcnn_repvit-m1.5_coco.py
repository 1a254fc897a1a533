# Mask R-CNN + FPN, RepViT-M1.5, COCO-2017, 1x. Paper: APb 41.6 / APm 38.6.
_base_ = './mask-rcnn_repvit-m1.1_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_5_distill_300e.pth'
model = dict(backbone=dict(arch='m1.5', init_cfg=dict(checkpoint=checkpoint)))
