# RTMDet with a RepViT-M1.5 backbone on COCO-2017: the M1.1 config (RTMDet-s neck and head, RTMDet's recipe) with
# the deeper backbone; M1.5 has M1.1's widths (128, 256, 512 at strides 8/16/32), so the neck is unchanged.
_base_ = './rtmdet_repvit-m1.1_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_5_distill_300e.pth'
model = dict(backbone=dict(arch='m1.5', init_cfg=dict(checkpoint=checkpoint)))
