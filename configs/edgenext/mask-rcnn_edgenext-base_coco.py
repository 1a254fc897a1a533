# Mask R-CNN + FPN, EdgeNeXt-Base, COCO-2017, 1x; recipe of mask-rcnn_edgenext-small_coco.py (ours: the paper has
# no Mask R-CNN result) with more stochastic depth for the largest model; starts from the USI-distilled ImageNet-1K
# release (83.7 top-1; its weights are under `state_dict`).
_base_ = './mask-rcnn_edgenext-small_coco.py'
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.2/edgenext_base_usi.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 160, 288, 584]))
