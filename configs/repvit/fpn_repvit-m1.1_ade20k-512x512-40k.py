# Semantic FPN, RepViT-M1.1, ADE20K 512x512, 40k iterations: the RepViT paper's segmentation recipe.
# Paper: mIoU 40.6. Reference batch: 32 images (8 GPUs x 4).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/semantic-fpn_adamw-poly_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_1_distill_300e.pth'
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.RepViT',
        arch='m1.1',
        out_indices=(0, 1, 2, 3),
        # the official segmentation code takes each stage's output after the next stage's pre-block
        out_after_preblock=True,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(clip_grad=None)
train_dataloader = dict(batch_size=4)
# The official test resize: keep-ratio into 2048x512, then each side resized (not padded) up to a multiple of 32.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmlightvit.AlignResize', scale=(2048, 512), size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
