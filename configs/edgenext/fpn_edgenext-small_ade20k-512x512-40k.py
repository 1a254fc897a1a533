# Semantic FPN, EdgeNeXt-Small, ADE20K 512x512, 40k iterations.
# The EdgeNeXt paper has no Semantic FPN result (it reports DeepLabV3 on PASCAL VOC): this recipe is RepViT's
# Semantic FPN recipe (AdamW 2e-4, wd 1e-4, poly 0.9, no warm-up, reference batch 32 = 8 GPUs x 4), the nearest
# published one for models of this size.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/semantic-fpn_adamw-poly_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small.pth'
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.EdgeNeXt',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 160, 304]),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0., custom_keys={
            'gamma': dict(decay_mult=0.),
            'temperature': dict(decay_mult=0.),
        }))
train_dataloader = dict(batch_size=4)
