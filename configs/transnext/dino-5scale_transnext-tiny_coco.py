# DINO 5-scale, TransNeXt-Tiny, COCO-2017, 12 epochs: the recipe of dino-4scale_transnext-tiny_coco.py with all
# four stages (strides 4-32) into the neck and a fifth level from its stride-2 conv (official scales=5; the levels
# set as in mmdet's 5-scale template, dino-5scale_swin-l_8xb2-12e_coco.py). Official result: box AP 55.7, 48.1M
# parameters; the released model evaluates as it is.
_base_ = './dino-4scale_transnext-tiny_coco.py'
num_levels = 5
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[72, 144, 288, 576], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
