# Mask R-CNN + FPN, FasterViT-0, COCO-2017, 1x (12 epochs).
# The FasterViT paper (arXiv 2306.06189, ICLR 2024) reports COCO only with Cascade Mask R-CNN 3x (variants 2-4; see
# cascade-mask-rcnn_fastervit-2_coco-3x.py) and the official repository releases no Mask R-CNN code: this config is
# ours, by analogy. Recipe: mmdet's Swin-T Mask R-CNN 1x (swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py): AdamW 1e-4,
# wd 0.05, 1000-iteration linear warm-up from 1e-3 x lr, lr steps at epochs 8 and 11, reference batch 16 (8 GPUs x
# 2), single-scale (1333, 800). No weight decay on norms, on the MLPs that produce the position embeddings and the
# attention biases (`cpb_mlp`, FasterViT's counterpart of Swin's relative tables) and on layer scales. Backbone
# as in the official downstream (DINO) code: drop path 0.1 and a BatchNorm on each returned map (official `norm{i}`,
# freshly initialised). The carrier-token grid and the windows follow each batch's padded size.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/mask-rcnn_adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'  # official README
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.FasterViT',
        arch='0',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        out_norm_cfg=dict(type='BN'),
        # the official dense code (downstream/object_detection/dino) builds every variant without carrier-token
        # propagation, which the ImageNet models of variants 3-6 use
        do_propagation=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'cpb_mlp': dict(decay_mult=0.),  # position-embedding and attention-bias MLPs
            'gamma': dict(decay_mult=0.),  # layer scales (variants 3-6)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
