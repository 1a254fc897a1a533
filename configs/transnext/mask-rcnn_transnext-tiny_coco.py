# Mask R-CNN + FPN, TransNeXt-Tiny, COCO-2017, 1x: the official recipe (detection/maskrcnn in the official repo).
# Paper: APb 49.9, APm 44.6, 47.9M parameters. AdamW 1e-4, wd 0.05, no decay on the query embedding, local
# position bias, CPB MLP, temperature and norms; 2 images x 8 GPUs (reference batch 16); lr steps 8 and 11 with a
# 500-iteration warm-up (mmdet's schedule_1x); drop path 0.4; CPB tables interpolated from 224 to 800 (img_size).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/mask-rcnn_adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-tiny-224-1k/resolve/main/transnext_tiny_224_1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.TransNeXt',
        arch='tiny',
        pretrain_size=224,
        img_size=800,
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[72, 144, 288, 576]))

no_decay = dict(decay_mult=0.)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'query_embedding': no_decay,
            'relative_pos_bias_local': no_decay,
            'cpb': no_decay,
            'temperature': no_decay,
            'norm': no_decay,
        }))
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
