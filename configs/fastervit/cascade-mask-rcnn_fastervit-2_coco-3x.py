# Cascade Mask R-CNN + FPN, FasterViT-2, COCO-2017, 3x (36 epochs), multi-scale training: the paper's detector.
# Paper (arXiv 2306.06189, COCO Cascade Mask R-CNN table): APb 52.1 (AP50 71.0, AP75 56.6), APm 45.4 (AP50 68.4,
# AP75 49.0), 287 img/s; the table gives no params/FLOPs. Paper recipe: AdamW, lr 1e-4, wd 0.05, 3x schedule,
# batch 16 on 8 A100s. The paper does not give drop path, layer decay, warm-up, lr steps or augmentation, and no
# official code for this detector exists (the repository has DINO only). Those come from the recipe the paper's
# baselines (Swin-T 50.4 / ConvNeXt-T 50.4 APb) were trained with, Swin's Cascade Mask R-CNN 3x as mmdet ships it
# (convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py,
# swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py): 4conv1fc box heads with SyncBN and GIoU loss, DETR-style
# multi-scale resize (shorter side 480-800) / crop, 1000-iteration warm-up, lr steps at 27 and 33, no decay on norms
# and position-bias tables (here the `cpb_mlp` MLPs) nor on layer scales; no layer-wise lr decay (Swin uses none),
# fp32 (add --amp on GPUs). Backbone as in the official DINO code: drop path 0.1, BatchNorm on each returned map.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/mask-rcnn_adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_2_224_1k.pth.tar'  # official README


def _box_head(stds):
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.FasterViT',
        arch='2',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        out_norm_cfg=dict(type='BN'),
        # the official dense code (downstream/object_detection/dino) builds every variant without carrier-token
        # propagation, which the ImageNet models of variants 3-6 use
        do_propagation=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    roi_head=dict(bbox_head=[
        _box_head([0.1, 0.1, 0.2, 0.2]),
        _box_head([0.05, 0.05, 0.1, 0.1]),
        _box_head([0.033, 0.033, 0.067, 0.067]),
    ]))
del _box_head

# augmentation strategy of Swin / ConvNeXt 3x (originates from DETR / Sparse R-CNN)
scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333), (704, 1333),
          (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'cpb_mlp': dict(decay_mult=0.),  # position-embedding and attention-bias MLPs
            'gamma': dict(decay_mult=0.),  # layer scales (variants 3-6)
        }))
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
