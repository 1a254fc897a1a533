# DeepLabV3 with EdgeNeXt-Small on the generated demo ADE20K set (5 classes, 128x128 crops), trained from scratch
# on a CPU. Same model as deeplabv3_edgenext-small_voc12aug-512x512-50e.py (the dataset class only changes how the
# data is read) without ImageNet weights (none offline), on the demo set's pipeline
# (configs/_base_/datasets/ade20k_demo.py), with a schedule for 400 images: 20 epochs of 50 iterations, a
# 50-iteration warm-up, and an EMA momentum of 0.01 (MobileViT's 5e-4 averages over ~2000 iterations, longer
# than this whole run). At 128x128 the stride-32 map is 4x4, so the dilated ASPP branches mostly see padding:
# the demo checks the pipeline, not the head's field of view.
_base_ = './deeplabv3_edgenext-small_voc12aug-512x512-50e.py'

crop_size = (128, 128)
num_classes = 5
max_epochs = 20
dataset_type = 'mmlightvit.DemoADE20KDataset'
data_root = 'data/demo/ade20k'

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True, eta_min=1e-6,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [
    dict(type='EMAHook', momentum=0.01, update_buffers=True, priority=49),
    dict(type='mmlightvit.RNGStateHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=8)
