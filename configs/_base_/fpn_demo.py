# Semantic FPN sized for the generated demo ADE20K set on a CPU: 64-channel FPN and head, 5 classes, 128x128
# crops, from random weights, 1000 iterations. Family demo configs inherit it and set the backbone.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    './datasets/ade20k_demo.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (128, 128)
num_classes = 5
head_channels = 64
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    neck=dict(out_channels=head_channels),
    decode_head=dict(in_channels=[head_channels] * 4, channels=head_channels, num_classes=num_classes))

max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=1e-5, begin=50, end=max_iters, by_epoch=False),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
