# The README's main job: Mask R-CNN with RepViT-M1.1 on the generated demo COCO set, trained from scratch on a
# CPU in minutes (slim heads, 256px images; see configs/_base_/mask-rcnn_demo.py). Same backbone as
# mask-rcnn_repvit-m1.1_coco.py, but BN statistics train (no ImageNet weights offline).
_base_ = '../_base_/mask-rcnn_demo.py'
model = dict(
    backbone=dict(_delete_=True, type='mmlightvit.RepViT', arch='m1.1', out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 128, 256, 512]))
