# DINO 4-scale with TransNeXt-Micro on the generated demo COCO set, from scratch on a CPU
# (see configs/_base_/dino_demo.py); stages 2-4 as in dino-4scale_transnext-tiny_coco.py, pretrain_size follows
# the demo's 256 px images.
_base_ = '../_base_/dino_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.TransNeXt', arch='micro', img_size=256, pretrain_size=256,
        out_indices=(1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384]))
