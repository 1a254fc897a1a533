# Semantic FPN, EdgeNeXt-XX-Small, ADE20K 512x512, 40k; recipe of fpn_edgenext-small_ade20k-512x512-40k.py (ours).
_base_ = './fpn_edgenext-small_ade20k-512x512-40k.py'
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_xx_small.pth'
model = dict(
    backbone=dict(arch='xx-small', drop_path_rate=0., init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[24, 48, 88, 168]))
