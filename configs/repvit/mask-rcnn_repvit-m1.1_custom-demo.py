# The worked example of fine-tuning on your own data (tools/README.md, "Your own data"): the demo Mask R-CNN
# (mask-rcnn_repvit-m1.1_coco-demo.py, 4 shape classes) fine-tuned on the generated "custom" COCO-format set
# (tools/misc/generate_demo_data.py --only custom): 3 other classes read from its annotation file, non-square and
# grayscale images. Start it from the demo model's checkpoint with tools/train.py --finetune-from; the class-dependent
# layers (classifier, box regressor, mask predictor) start anew, every other weight comes from the checkpoint.
# For a real dataset, inherit mask-rcnn_repvit-m1.1_coco.py and ../_base_/datasets/custom_coco_instance.py's
# settings the same way.
_base_ = './mask-rcnn_repvit-m1.1_coco-demo.py'
data_root = 'data/demo/custom/'
metainfo = dict(classes=None)  # from the annotation file; num_classes follows
image_scale = (320, 320)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),  # grayscale files are read as 3 equal channels
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    dataset=dict(
        type='mmlightvit.CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='mmlightvit.CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

# Fine-tuning: a fifth of the from-scratch rate, a short warm-up, validation after every epoch to watch the AP rise.
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
