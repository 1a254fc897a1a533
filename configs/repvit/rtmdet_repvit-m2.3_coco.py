# RTMDet with a RepViT-M2.3 backbone on COCO-2017 (the paper reports no such result). Inherits RTMDet-m: M2.3's
# widths at strides 8/16/32 (160, 320, 640) are as far from CSPNeXt-s's (128, 256, 512) as from CSPNeXt-m's (192,
# 384, 768), and its backbone alone (22.4M parameters) is the size of the whole RTMDet-m (24.7M), so the detector
# belongs to the m class: 192-channel neck and head, 2 CSP blocks, regression head with exp_on_reg, and RTMDet-m's
# data pipeline (RandomResize ratio 0.1-2.0). The rest as in rtmdet_repvit-m0.9_coco.py: RTMDet's 300-epoch recipe
# (AdamW lr 0.004 per 256 images, EMA, pipeline switch for the last 20 epochs), the official distilled checkpoint,
# RGB ImageNet normalisation.
_base_ = 'mmdet::rtmdet/rtmdet_m_8xb32-300e_coco.py'
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m2_3_distill_450e.pth'
model = dict(
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.RepViT',
        arch='m2.3',
        out_indices=(1, 2, 3),  # strides 8, 16, 32: RTMDet's three levels
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[160, 320, 640]))
# COCO read by the project's CocoDataset (mmdet's, with errors that name the file)
train_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
test_dataloader = val_dataloader
# RTMDet's recipe is 8 GPUs x 32 images: --auto-scale-lr scales from that batch (not schedule_1x's 16), and every
# BatchNorm is synchronised across GPUs, the backbone's too (as CSPNeXt's SyncBN).
auto_scale_lr = dict(enable=False, base_batch_size=256)
sync_bn = 'torch'
