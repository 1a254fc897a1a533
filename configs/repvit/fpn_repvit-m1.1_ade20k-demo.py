# Semantic FPN with RepViT-M1.1 on the generated demo ADE20K set, trained from scratch on a CPU in minutes
# (see configs/_base_/fpn_demo.py). Same backbone as fpn_repvit-m1.1_ade20k-512x512-40k.py, BN statistics train.
_base_ = '../_base_/fpn_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.RepViT', arch='m1.1', out_indices=(0, 1, 2, 3), out_after_preblock=True),
    neck=dict(in_channels=[64, 128, 256, 512]))
