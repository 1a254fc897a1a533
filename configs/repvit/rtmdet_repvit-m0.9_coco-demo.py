# RTMDet + RepViT-M0.9 on the generated demo COCO set (4 shape classes, 256x256 images), trained from scratch on
# a CPU in minutes. Same model as rtmdet_repvit-m0.9_coco.py (RTMDet-tiny neck and head) without ImageNet weights
# (none offline) and with plain BN (SyncBN needs GPUs once distributed). The pipeline is RTMDet's stage-2 one
# (random resize, crop, HSV, flip, pad) at 256 px without Mosaic/MixUp, so the PipelineSwitchHook that turns those
# off for the last epochs is dropped and train_cfg's dynamic_intervals (tied to that switch) are cleared; EMA stays.
_base_ = './rtmdet_repvit-m0.9_coco.py'

num_classes = 4
image_scale = (256, 256)
max_epochs = 12
dataset_type = 'mmlightvit.DemoCocoDataset'
data_root = 'data/demo/coco/'
sync_bn = None  # plain BN in CPU (gloo) distributed runs too

model = dict(
    backbone=dict(init_cfg=None),
    neck=dict(norm_cfg=dict(type='BN')),
    bbox_head=dict(num_classes=num_classes, norm_cfg=dict(type='BN')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='Pad', size=image_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Short schedule from random weights: higher lr than RTMDet's 0.004 per 256 images would give for batch 8.
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs, dynamic_intervals=None)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False, base_batch_size=8)
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    # Exact resumption: the random generators travel in the checkpoints.
    dict(type='mmlightvit.RNGStateHook'),
]
# Test-time augmentation (tools/test.py --tta): RTMDet's three scales with and without flip, at the demo's size.
tta_img_scales = [(256, 256), (192, 192), (320, 320)]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=s, keep_ratio=True) for s in tta_img_scales],
            # flip before Pad, so that the boxes can be flipped back
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='Pad', size=(320, 320), pad_val=dict(img=(114, 114, 114)))],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                                   'flip', 'flip_direction'))],
        ]),
]
