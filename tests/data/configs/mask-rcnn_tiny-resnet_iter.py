# Iteration-based, single-process, no random augmentation: the resume test compares weights exactly.
_base_ = './mask-rcnn_tiny-resnet_demo.py'
randomness = dict(seed=0)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4)
# no validation while training; tools/test.py evaluates the test split
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(checkpoint=dict(interval=2, by_epoch=False), logger=dict(interval=1))
log_processor = dict(by_epoch=False)
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='PackDetInputs'),
    ]))
test_dataloader = dict(num_workers=0, persistent_workers=False)
