# DINO sized for the generated demo COCO set on a CPU: mmdet's DINO 4-scale with a slim transformer (2 encoder +
# 2 decoder layers, FFN 512, 100 queries, 20 denoising queries), 4 classes, from random weights, 6 short epochs.
# The width stays 256: mmdet 3.3's DINO decoder encodes the reference boxes with 128 sine features per coordinate
# whatever the width. Family demo configs inherit it and set the backbone; the detector is mmdet's full DINO in the
# real COCO configs.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
num_classes = 4
ffn_channels = 512

model = dict(
    num_queries=100,
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=ffn_channels))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=ffn_channels))),
    bbox_head=dict(num_classes=num_classes),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)),
    test_cfg=dict(max_per_img=100))

# the generated set (configs/_base_/datasets/coco_instance_demo.py), read for boxes only
dataset_type = 'mmlightvit.DemoCocoDataset'
data_root = 'data/demo/coco/'
image_scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# No pretrained weights are available offline: the whole model trains from scratch at one rate, higher than
# DINO's, with a looser clip.
optim_wrapper = dict(
    optimizer=dict(lr=5e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(_delete_=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs))
auto_scale_lr = dict(enable=False, base_batch_size=4)
# Exact resumption: the random generators travel in the checkpoints.
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
