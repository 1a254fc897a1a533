# Mask R-CNN + FPN, EdgeNeXt-X-Small, COCO-2017, 1x; recipe of mask-rcnn_edgenext-small_coco.py (ours: the paper
# has no Mask R-CNN result), no stochastic depth for this small model.
_base_ = './mask-rcnn_edgenext-small_coco.py'
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_x_small.pth'
model = dict(
    backbone=dict(arch='x-small', drop_path_rate=0., init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[32, 64, 100, 192]))
