# Semantic FPN, RepViT-M2.3, ADE20K 512x512, 40k iterations. Paper: mIoU 46.1 (from the 450-epoch checkpoint).
_base_ = './fpn_repvit-m1.1_ade20k-512x512-40k.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m2_3_distill_450e.pth'
model = dict(
    backbone=dict(arch='m2.3', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 160, 320, 640]))
