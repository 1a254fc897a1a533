# RTMDet with a RepViT-M1.0 backbone on COCO-2017 (the paper reports no such result). M1.0's widths at strides
# 8/16/32 (112, 224, 448) lie exactly between CSPNeXt-tiny's (96, 192, 384) and CSPNeXt-s's (128, 256, 512); its
# backbone (6.4M parameters) is larger than CSPNeXt-s (4.4M), so it takes RTMDet-s's neck and head (128 channels,
# 1 CSP block; the neck's inner widths follow in_channels) and RTMDet-s's recipe, as the M1.1 config does.
_base_ = './rtmdet_repvit-m1.1_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_0_distill_300e.pth'
model = dict(
    backbone=dict(arch='m1.0', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[112, 224, 448]))
