# Semantic FPN with TransNeXt-Micro on the generated demo ADE20K set, from scratch on a CPU
# (see configs/_base_/fpn_demo.py).
_base_ = '../_base_/fpn_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.TransNeXt', arch='micro', img_size=128, pretrain_size=128,
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[48, 96, 192, 384]))
