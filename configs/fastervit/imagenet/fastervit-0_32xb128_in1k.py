# FasterViT-0 ImageNet-1k classifier with the official recipe (NVlabs/FasterViT TRAINING.md command and
# fastervit/configs/faster_vit_0_224_1k.yaml): 4 nodes x 8 GPUs x 128 (4096), AdamW lr 5e-3 (not scaled), weight
# decay 0.005 (TRAINING.md; the yaml says 0.05), none on 1-D parameters and biases, 20 warm-up epochs from 1e-6, a
# per-iteration cosine to 5e-6 until epoch 310, then 10 cool-down epochs at 5e-6 (320 in all), gradient clipping at
# norm 5, drop path 0.2, DeiT augmentation (RandomResizedCrop 224, RandAugment rand-m9-mstd0.5-inc1, random erasing
# 0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1), EMA 0.9998 (evaluated, as the official validation does).
# Test: bicubic resize to 256, centre crop 224 (crop_pct 0.875, the official training-time validation).
# What differs: the official run adds MESA self-distillation from the EMA model (weight 0.1, from a quarter of
# training), which mmpretrain does not have, and draws the training interpolation at random per image (bicubic
# here).
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar (top-1 82.1;
# `python tools/test.py THIS_CONFIG URL` loads it strictly, head included).
_base_ = ['../../_base_/datasets/imagenet.py', '../../_base_/imagenet_classifier.py']
model = dict(
    backbone=dict(type='mmlightvit.FasterViT', arch='0', drop_path_rate=0.2),
    head=dict(in_channels=512, pre_pool_norm='BN'))

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

warmup_epochs = 20
cosine_epochs = 310
optim_wrapper = dict(optimizer=dict(lr=5e-3, weight_decay=0.005), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 5e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=warmup_epochs, end=cosine_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=cosine_epochs + 10)
custom_hooks = [dict(type='EMAHook', momentum=1 - 0.9998, update_buffers=True, priority='ABOVE_NORMAL')]
auto_scale_lr = dict(base_batch_size=4096)
