# Mask R-CNN with FasterViT-0 on the generated demo COCO set, from scratch on a CPU
# (see configs/_base_/mask-rcnn_demo.py). Same backbone as mask-rcnn_fastervit-0_coco.py, without ImageNet weights.
_base_ = '../_base_/mask-rcnn_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.FasterViT', arch='0', out_indices=(0, 1, 2, 3),
        out_norm_cfg=dict(type='BN')),
    neck=dict(in_channels=[64, 128, 256, 512]))
