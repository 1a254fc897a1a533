# DeepLabV3, EdgeNeXt-Small, PASCAL VOC 2012 + SBD at 512x512, 50 epochs: the paper's segmentation table
# (80.2 val mIoU, 6.5M params, 8.7G MAdds). The paper fine-tunes "following MobileViT" and released no
# segmentation code; MobileViT's DeepLabV3 recipe (apple/ml-cvnets config/segmentation/pascal_voc/
# deeplabv3_mobilevit.yaml) is: AdamW (0.9, 0.999) lr 9e-4, wd 0.01 on every parameter, head lr x10, 500 warm-up
# iterations from 9e-5, cosine to 1e-6 over 50 epochs, batch 128, EMA (momentum 5e-4), SyncBN, mixed precision;
# random short-side resize 256-768 (max 1024), crop 512, flip, photometric distortion, +-10 deg rotation, noise.
# Here: that optimizer, schedule, batch (8 GPUs x 16) and EMA on mmseg's DeepLabV3 (inherited: ASPPHead with
# image pooling, dropout 0.1, FCN auxiliary head) and mmseg's VOC aug pipeline (random resize 0.5-2.0 of
# (2048, 512), i.e. short side 256-1024 for VOC's images, crop 512 with cat_max_ratio 0.75, flip, photometric
# distortion). Differences:
# - output stride 32: EdgeNeXt has no dilated mode, so ASPP runs on stage 4 (304 channels, 16x16 at 512) and the
#   auxiliary FCN head on stage 3 (160 channels). The ASPP rates keep MobileViT's image-space spacing (12, 24, 36
#   at stride 8, or 6, 12, 18 at stride 16, = 96, 192, 288 px): (1, 3, 6, 9) at stride 32. Rate 9 spans
#   the same share of the 16x16 map as 36 of MobileViT's 64x64 map; the pooling branch adds the global context.
# - ASPP with 256 channels, not the 512 of MobileViT's current config: 256 is the width of the MobileViT-S
#   DeepLabV3 the paper compares with (6.4M; cvnets' earlier deeplabv3_mobilevit_small.yaml, output stride 16),
#   and mmseg's ASPPHead fuses the five branches with a 3x3 conv (cvnets: 1x1), which at 512 channels alone
#   holds 11.8M parameters. Measured counts against the paper's in configs/edgenext/README.md.
# - no COCO images (MobileViT adds them; mmseg's VOC aug set has none), no rotation or noise augmentation;
# - mixed precision is not set here: add --amp to tools/train.py as MobileViT trained.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    '../_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
num_classes = 21
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small.pth'
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.EdgeNeXt',
        arch='small',
        out_indices=(0, 1, 2, 3),  # the heads' in_index 3 (ASPP) and 2 (auxiliary) as in mmseg's base
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=304, channels=256, dilations=(1, 3, 6, 9), num_classes=num_classes),
    auxiliary_head=dict(in_channels=160, num_classes=num_classes))

# MobileViT's schedule is in epochs (50, cosine per iteration after a 500-iteration warm-up)
max_epochs = 50
train_dataloader = dict(batch_size=16, sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=9e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'decode_head': dict(lr_mult=10.),
        'auxiliary_head': dict(lr_mult=10.),
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True, eta_min=1e-6,
         convert_to_iter_based=True),
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # MobileViT keeps the checkpoint with the best validation mIoU
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=5, max_keep_ckpts=2, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    # MobileViT's EMA: ema = (1 - 5e-4) ema + 5e-4 weights every iteration, BN statistics included;
    # validation and the saved checkpoints use the averaged weights
    dict(type='EMAHook', momentum=0.0005, update_buffers=True, priority=49),
    dict(type='mmlightvit.RNGStateHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=128)
