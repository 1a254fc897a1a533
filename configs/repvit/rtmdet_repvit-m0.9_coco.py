# RTMDet (real-time one-stage detector) with a RepViT-M0.9 backbone on COCO-2017 (the paper reports no such
# result). Inherits RTMDet-tiny: M0.9's stage widths at strides 8/16/32 (96, 192, 384) are exactly what
# CSPNeXt-tiny feeds RTMDet-tiny's neck, so the tiny neck and head (96 channels, 1 CSP block) fit unchanged and the
# detector stays in the tiny latency class. Everything else is RTMDet's recipe: 300 epochs, AdamW lr 0.004 wd 0.05
# without decay on norms and biases (paramwise_cfg; no backbone lr multiplier, as in RTMDet), cosine from epoch
# 150, EMA, CachedMosaic/MixUp switched off for the last 20 epochs, batch 32 x 8 GPUs, BN statistics train
# (as CSPNeXt's do). Differences: the backbone, its ImageNet initialisation (the official distilled checkpoint) and
# the input normalisation, which must be the RGB ImageNet one the RepViT weights were trained with (CSPNeXt's was
# BGR).
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m0_9_distill_300e.pth'
model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.RepViT',
        arch='m0.9',
        out_indices=(1, 2, 3),  # strides 8, 16, 32: RTMDet's three levels
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384]))
# COCO read by the project's CocoDataset (mmdet's, with errors that name the file)
train_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
test_dataloader = val_dataloader
# RTMDet's recipe is 8 GPUs x 32 images: --auto-scale-lr scales from that batch (not schedule_1x's 16), and every
# BatchNorm is synchronised across GPUs, the backbone's too (as CSPNeXt's SyncBN).
auto_scale_lr = dict(enable=False, base_batch_size=256)
sync_bn = 'torch'
