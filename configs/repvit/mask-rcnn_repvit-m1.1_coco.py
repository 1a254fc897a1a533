# Mask R-CNN + FPN, RepViT-M1.1, COCO-2017, 1x (12 epochs): the RepViT paper's detection recipe.
# Paper: APb 39.8 / APm 37.2. Reference batch: 16 images (8 GPUs x 2); --auto-scale-lr adapts the lr to yours.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/mask-rcnn_adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_1_distill_300e.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.RepViT',
        arch='m1.1',
        out_indices=(0, 1, 2, 3),
        # the official wrapper keeps every BN in eval mode: ImageNet statistics, trainable affine parameters
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
