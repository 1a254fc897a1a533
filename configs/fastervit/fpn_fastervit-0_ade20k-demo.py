# Semantic FPN with FasterViT-0 on the generated demo ADE20K set, from scratch on a CPU
# (see configs/_base_/fpn_demo.py). Same backbone as fpn_fastervit-0_ade20k-512x512-40k.py, without ImageNet weights.
_base_ = '../_base_/fpn_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.FasterViT', arch='0', out_indices=(0, 1, 2, 3),
        out_norm_cfg=dict(type='BN')),
    neck=dict(in_channels=[64, 128, 256, 512]))
