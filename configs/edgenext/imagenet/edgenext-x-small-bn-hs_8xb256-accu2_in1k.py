# EdgeNeXt-X-S BN+HS ImageNet-1k classifier: the recipe of edgenext-small_8xb256-accu2_in1k.py with the official
# settings of the small models (models/model.py, issue 14): no RandAugment but colour jitter 0.4, drop path 0.
# BatchNorm + Hardswish model: its final BatchNorm comes before the pooling (no recipe of its own is
# published).
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_x_small_bn_hs.pth (top-1 74.87).
_base_ = './edgenext-small_8xb256-accu2_in1k.py'
model = dict(
    backbone=dict(arch='x-small-bn-hs', drop_path_rate=0.0),
    head=dict(in_channels=192, pre_pool_norm='BN', post_pool_norm=None))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
