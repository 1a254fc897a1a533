# Semantic FPN, RepViT-M1.5, ADE20K 512x512, 40k iterations. Paper: mIoU 43.6.
_base_ = './fpn_repvit-m1.1_ade20k-512x512-40k.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_5_distill_300e.pth'
model = dict(backbone=dict(arch='m1.5', init_cfg=dict(checkpoint=checkpoint)))
