# RepViT-M2.3 ImageNet-1k classifier: the recipe of repvit-m0.9_8xb256_in1k.py at the lr the official M2.3 logs
# show (2e-3 = 1e-3 x 1024 / 512: 8 GPUs x 128).
# Released: https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m2_3_distill_300e.pth (top-1 83.3).
_base_ = './repvit-m0.9_8xb256_in1k.py'
model = dict(backbone=dict(arch='m2.3'), head=dict(in_channels=640))

batch_size = 128
lr = 1e-3 * batch_size * 8 / 512
train_dataloader = dict(batch_size=batch_size)
val_dataloader = dict(batch_size=batch_size)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end={{_base_.max_epochs}}),
]
auto_scale_lr = dict(base_batch_size=batch_size * 8)
