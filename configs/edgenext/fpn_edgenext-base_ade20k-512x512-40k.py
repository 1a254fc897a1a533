# Semantic FPN, EdgeNeXt-Base, ADE20K 512x512, 40k; recipe of fpn_edgenext-small_ade20k-512x512-40k.py (ours),
# from the USI-distilled ImageNet-1K release.
_base_ = './fpn_edgenext-small_ade20k-512x512-40k.py'
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.2/edgenext_base_usi.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 160, 288, 584]))
