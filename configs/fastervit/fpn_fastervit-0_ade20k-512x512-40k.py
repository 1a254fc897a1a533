# Semantic FPN, FasterViT-0, ADE20K 512x512, 40k iterations.
# The FasterViT paper reports ADE20K only with UperNet (variants 2-4; see upernet_fastervit-2_ade20k-512x512-160k.py):
# this config is ours, with RepViT's Semantic FPN recipe (AdamW 2e-4, wd 1e-4, poly 0.9, no warm-up, reference
# batch 32 = 8 GPUs x 4), the nearest published one for a model of this size; no decay on norms, position-bias MLPs
# and layer scales. Backbone as in mask-rcnn_fastervit-0_coco.py (drop path 0.1, BatchNorm on each returned map).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/semantic-fpn_adamw-poly_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'  # official README
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
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
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0., custom_keys={
            'cpb_mlp': dict(decay_mult=0.),
            'gamma': dict(decay_mult=0.),
        }))
train_dataloader = dict(batch_size=4)
