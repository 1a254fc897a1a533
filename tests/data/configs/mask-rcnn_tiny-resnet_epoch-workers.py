# The shipped data-loading settings (2 persistent workers, random flips) in an epoch-based run of 3 short epochs
# with a checkpoint after each (only the newest kept): the exact-resume and kill tests interrupt it.
_base_ = './mask-rcnn_tiny-resnet_demo.py'
train_cfg = dict(max_epochs=3, val_interval=10)
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=8)]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1), logger=dict(interval=1))
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        indices=8,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='RandomResize', scale=(128, 128), ratio_range=(0.75, 1.25), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackDetInputs'),
        ]))
