# SSDLite with EdgeNeXt-Small on the generated demo COCO set (4 shape classes, 256x256 images, resized to the
# model's 320x320), trained from scratch on a CPU. Same model and pipeline as ssdlite_edgenext-small_coco-320x320.py
# without ImageNet weights (none offline), with plain BN (SyncBN needs GPUs once distributed), without the
# RepeatDataset wrapper, and with a schedule for 400 images: 12 epochs of 50 iterations, a 50-iteration warm-up,
# and an EMA momentum of 0.01 (MobileViT's 5e-4 averages over ~2000 iterations, longer than this whole run).
_base_ = './ssdlite_edgenext-small_coco-320x320.py'

num_classes = 4
max_epochs = 12
dataset_type = 'mmlightvit.DemoCocoDataset'
data_root = 'data/demo/coco/'
sync_bn = None

model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=num_classes))

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=_base_.train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True, eta_min=1e-6,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='EMAHook', momentum=0.01, update_buffers=True, priority=49),
    dict(type='mmlightvit.RNGStateHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=8)
