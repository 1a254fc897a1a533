# The smallest Mask R-CNN that exercises the whole stack quickly (tools, resume, distributed tests).
_base_ = '../../../configs/_base_/mask-rcnn_demo.py'
model = dict(
    backbone=dict(depth=18, base_channels=8, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64]))
