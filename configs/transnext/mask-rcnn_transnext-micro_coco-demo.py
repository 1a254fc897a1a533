# Mask R-CNN with TransNeXt-Micro on the generated demo COCO set, from scratch on a CPU
# (see configs/_base_/mask-rcnn_demo.py); pretrain_size follows the demo's 256 px images.
_base_ = '../_base_/mask-rcnn_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.TransNeXt', arch='micro', img_size=256, pretrain_size=256,
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[48, 96, 192, 384]))
