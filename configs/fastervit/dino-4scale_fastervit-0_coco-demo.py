# DINO 4-scale with FasterViT-0 on the generated demo COCO set, from scratch on a CPU
# (see configs/_base_/dino_demo.py). Same backbone as dino-4scale_fastervit-0_coco.py, without ImageNet weights
# and gradient checkpointing.
_base_ = '../_base_/dino_demo.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.FasterViT', arch='0', out_indices=(1, 2, 3), drop_path_rate=0.1,
        out_norm_cfg=dict(type='BN'), coord_norm='tokens', pad_conv_stages=True),
    neck=dict(in_channels=[128, 256, 512], bias=True))
