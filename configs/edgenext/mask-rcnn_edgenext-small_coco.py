# Mask R-CNN + FPN, EdgeNeXt-Small, COCO-2017, 1x (12 epochs).
# The EdgeNeXt paper has no Mask R-CNN result and its authors released no mmdet code: this recipe is ours, by
# analogy with the nearest published ones. For the small models (XX-Small to Small, 1.3-5.6M parameters) it is
# RepViT's Mask R-CNN recipe (AdamW 2e-4, wd 0.05, lr steps at 8 and 11, 500-iteration warm-up, reference batch 16);
# Base (18.5M) uses the same 1x schedule, which is also what mmdet's ConvNeXt-T Mask R-CNN 1x uses (AdamW 2e-4,
# wd 0.05). Like ConvNeXt, no weight decay on norms, layer scales and the XCA temperature. EdgeNeXt was
# pre-trained at 256x256; its positional encoding is computed for the runtime size, so (1333, 800) works as is.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/mask-rcnn_adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.EdgeNeXt',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 160, 304]))

optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'gamma': dict(decay_mult=0.),  # layer scales (gamma, gamma_xca)
            'temperature': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
