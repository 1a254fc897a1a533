# Small generated ImageNet-format classification set (4 shape classes, 64x64 images, 2000 train / 200 val),
# created on first use under data/demo/imagenet/ by mmlightvit.DemoImageNetDataset. Inherit it instead of
# imagenet.py and set the head's num_classes to 4.
_base_ = './imagenet.py'

dataset_type = 'mmlightvit.DemoImageNetDataset'
data_root = 'data/demo/imagenet'
data_preprocessor = dict(num_classes=4)

# Flips only: with random crops and resizing, learning the shape kinds from scratch takes many times longer.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=25,
    num_workers=2,
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))  # 4 classes: no top-5
test_evaluator = val_evaluator
