# TransNeXt-Micro ImageNet-1k classifier with the official recipe (DaiShiResearch/TransNeXt classification/main.py
# and configs/transnext_micro.py, PVTv2's DeiT strategy): 300 epochs, 8 GPUs x 128 (1024), AdamW lr 1e-3 (not
# scaled), weight decay 0.05 (none on 1-D parameters, biases, the query embedding, local position bias, CPB MLP and
# temperature), 5 warm-up epochs from 1e-6 and a per-epoch cosine to 1e-5, gradient clipping at norm 1, drop path
# 0.15, DeiT augmentation (bicubic RandomResizedCrop 224, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25,
# Mixup 0.8 / CutMix 1.0, label smoothing 0.1), repeated augmentation x3, no EMA (the released weights are the best
# epoch's). Test as the official evaluation: bicubic resize to 256, centre crop 224.
# Released: https://huggingface.co/DaiShiResearch/transnext-micro-224-1k/resolve/main/transnext_micro_224_1k.pth
# (top-1 82.5; `python tools/test.py THIS_CONFIG URL` loads it strictly, head included).
_base_ = ['../../_base_/datasets/imagenet.py', '../../_base_/imagenet_classifier.py']
model = dict(
    backbone=dict(type='mmlightvit.TransNeXt', arch='micro', img_size=224, drop_path_rate=0.15),
    head=dict(in_channels=384))

train_dataloader = dict(batch_size=128, sampler=dict(type='RepeatAugSampler', num_repeats=3, shuffle=True))
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

max_epochs = 300
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        key: dict(decay_mult=0.)
        for key in ('query_embedding', 'relative_pos_bias_local', 'cpb', 'temperature')
    }),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-3, by_epoch=True, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=1024)
