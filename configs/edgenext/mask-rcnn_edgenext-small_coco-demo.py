# Mask R-CNN with EdgeNeXt-Small on the generated demo COCO set, from scratch on a CPU
# (see configs/_base_/mask-rcnn_demo.py).
_base_ = '../_base_/mask-rcnn_demo.py'
model = dict(
    backbone=dict(_delete_=True, type='mmlightvit.EdgeNeXt', arch='small', out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[48, 96, 160, 304]))
