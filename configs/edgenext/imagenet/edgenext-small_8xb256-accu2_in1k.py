# EdgeNeXt-S ImageNet-1k classifier with the official recipe (mmaaz60/EdgeNeXt README command and main.py): 300
# epochs at 256x256, 8 GPUs x 256 with 2-step gradient accumulation (4096 per step), AdamW lr 6e-3 (not scaled),
# weight decay 0.05 (none on 1-D parameters and biases), 20 warm-up epochs from 0 and a per-iteration cosine to
# 1e-6, drop path 0.1, layer scale 1e-6, bicubic RandomResizedCrop, RandAugment rand-m9-mstd0.5-inc1, label
# smoothing 0.1, no Mixup / CutMix, no random erasing, no gradient clipping, EMA 0.9995 (evaluated: the published
# accuracies are the EMA weights). Test as the official evaluation: bicubic resize to 292, centre crop 256.
# What differs: the official run samples the crop size per batch from {160, 192, 256, 288, 320} with batches
# scaled to match (a multi-scale sampler mmpretrain does not have); here every batch is 256x256. The EMA is
# updated every iteration here, after every optimizer step (every 2 iterations) there.
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small.pth (top-1 79.41;
# `python tools/test.py THIS_CONFIG URL` reads its model_ema weights strictly, head included).
_base_ = ['../../_base_/datasets/imagenet.py', '../../_base_/imagenet_classifier.py']
model = dict(
    backbone=dict(type='mmlightvit.EdgeNeXt', arch='small', drop_path_rate=0.1),
    head=dict(in_channels=304, post_pool_norm='LN'),
    train_cfg=dict(_delete_=True))  # no Mixup / CutMix

bgr_mean = [103.53, 116.28, 123.675]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10, magnitude_level=9,
         magnitude_std=0.5, hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=292, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=256, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 300
optim_wrapper = dict(optimizer=dict(lr=6e-3, weight_decay=0.05), accumulative_counts=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=20, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [dict(type='EMAHook', momentum=1 - 0.9995, update_buffers=True, priority='ABOVE_NORMAL')]
auto_scale_lr = dict(base_batch_size=4096)
