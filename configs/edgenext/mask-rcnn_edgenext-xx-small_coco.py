# Mask R-CNN + FPN, EdgeNeXt-XX-Small, COCO-2017, 1x; recipe of mask-rcnn_edgenext-small_coco.py (ours: the
# paper has no Mask R-CNN result), no stochastic depth for the smallest model.
_base_ = './mask-rcnn_edgenext-small_coco.py'
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_xx_small.pth'
model = dict(
    backbone=dict(arch='xx-small', drop_path_rate=0., init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[24, 48, 88, 168]))
