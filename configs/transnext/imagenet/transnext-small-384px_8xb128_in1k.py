# TransNeXt-Small fine-tuned at 384x384 from the 224 release, with the official recipe
# (classification/configs/finetune/transnext_small_384_ft.py): 5 epochs at a constant lr 1e-5 (no warm-up, no
# decay schedule), weight decay 0.05, Mixup 0.8 on every batch without CutMix, drop path 0.7, otherwise as
# transnext-small_8xb128_in1k.py. The model computes its position tables for 384 with the coordinates scaled as at
# 224 (img_size=384, pretrain_size=224). Test as the official evaluation at 384: a bicubic warp to 384x384, no crop.
# Released:
# https://huggingface.co/DaiShiResearch/transnext-small-384-1k-ft-1k/resolve/main/transnext_small_384_1k_ft_1k.pth
# (top-1 86.0).
_base_ = './transnext-small_8xb128_in1k.py'
model = dict(
    backbone=dict(img_size=384, pretrain_size=224, drop_path_rate=0.7),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8)]))
load_from = 'https://huggingface.co/DaiShiResearch/transnext-small-224-1k/resolve/main/transnext_small_224_1k.pth'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10, magnitude_level=9,
         magnitude_std=0.5, hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02, max_area_ratio=1 / 3,
         fill_color=[103.53, 116.28, 123.675], fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(384, 384), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 5
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=max_epochs)]
optim_wrapper = dict(optimizer=dict(lr=1e-5))
train_cfg = dict(max_epochs=max_epochs)
