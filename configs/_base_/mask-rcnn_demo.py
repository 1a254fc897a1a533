# Mask R-CNN sized for the generated demo COCO set on a CPU: the mmdet model with slim heads (64-channel FPN,
# 200 proposals, 64 sampled RoIs), 4 classes, from random weights, 6 short epochs. Family demo configs inherit it
# and set the backbone; the heads are the paper's in the real COCO configs.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './datasets/coco_instance_demo.py',
    'mmdet::_base_/default_runtime.py',
]
num_classes = 4
head_channels = 64

model = dict(
    neck=dict(out_channels=head_channels),
    rpn_head=dict(in_channels=head_channels, feat_channels=head_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=head_channels),
        bbox_head=dict(in_channels=head_channels, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=head_channels),
        mask_head=dict(in_channels=head_channels, conv_out_channels=head_channels, num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

max_epochs = 6
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# No pretrained weights are available offline, so the demo trains from scratch with a higher rate.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs))
auto_scale_lr = dict(enable=False, base_batch_size=4)
# Exact resumption: the random generators travel in the checkpoints.
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
