# SSDLite, EdgeNeXt-Small, COCO-2017 at 320x320: the paper's detection table (27.9 box AP, 6.2M params, 2.1G
# MAdds). The paper fine-tunes "following MobileViT" and released no detection code; MobileViT's SSDLite recipe
# (apple/ml-cvnets config/detection/ssd_coco/mobilevit.yaml) is: AdamW (0.9, 0.999) lr 9e-4, wd 0.01 on every
# parameter, 500 warm-up iterations from 9e-5, cosine to 1e-6 over 200 epochs, batch 128, EMA (momentum 5e-4),
# SyncBN, mixed precision; SSD random crop, photometric distortion, flip, resize to 320x320.
# Here: that recipe on mmdet's SSDLite (inherited): separable neck and head, the stride-16 and stride-32 stages
# (160, 304 channels) plus four extra levels, and mmdet's anchors, matcher and test settings. Differences:
# - batch 8 GPUs x 16 (MobileViT: 4 x 32); 200 epochs as RepeatDataset x5 x 40 epochs, as mmdet's SSDLite runs;
# - MobileViT's head projects the two backbone levels to 512 / 256 channels and its extra levels are 256, 128, 128
#   and a global-pool level of 64 channels; mmdet's keeps 160 / 304 and adds 512, 256, 256, 128 (and its own
#   anchor sizes); NMS IoU 0.45 (MobileViT 0.5); bilinear resize (MobileViT bicubic);
# - no Expand (zoom-out) in the pipeline: MobileViT has none (mmdet's SSDLite recipe adds one);
# - mixed precision is not set here: add --amp to tools/train.py as MobileViT trained;
# - the head is mmlightvit.SSDHead, mmdet's SSDHead with the fix that lets it predict under mmdet 3.3 (there it
#   fails with "no attribute 'loss_cls'", open-mmlab/mmdetection#11780); it needs the custom_imports below.
# Params and MACs at 320x320 (tools/analysis/get_flops.py) against the paper: see configs/edgenext/README.md.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
custom_imports = dict(imports=['mmlightvit.heads'], allow_failed_imports=False)
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.EdgeNeXt',
        arch='small',
        out_indices=(2, 3),  # strides 16 and 32, SSDLite's two backbone levels
        drop_path_rate=0.1,  # EdgeNeXt-S's ImageNet rate (MobileViT keeps its backbone dropout 0.1 too)
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=(160, 304), out_channels=(160, 304, 512, 256, 256, 128)),
    bbox_head=dict(type='mmlightvit.SSDHead', in_channels=(160, 304, 512, 256, 256, 128)))

input_size = 320
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='PackDetInputs'),
]
# COCO read by the project's CocoDataset (mmdet's, with errors that name the file), inside mmdet's RepeatDataset
train_dataloader = dict(
    batch_size=16, dataset=dict(dataset=dict(type='mmlightvit.CocoDataset', pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
test_dataloader = val_dataloader

max_epochs = 40  # x5 repeats = MobileViT's 200 epochs
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=9e-4, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True, eta_min=1e-6,
         convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    # MobileViT's EMA: ema = (1 - 5e-4) ema + 5e-4 weights every iteration, BN statistics included;
    # validation and the saved checkpoints use the averaged weights
    dict(type='EMAHook', momentum=0.0005, update_buffers=True, priority=49),
    dict(type='mmlightvit.RNGStateHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=128)
sync_bn = 'torch'  # MobileViT's SyncBN, for the neck's and head's BN (EdgeNeXt-S itself uses LayerNorm)
