# RepViT-M1.1 ImageNet-1k classifier, the 450-epoch schedule of the "distill_450e" releases; everything else
# as repvit-m1.1_8xb256_in1k.py.
# Released: https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_1_distill_450e.pth (top-1 81.2).
_base_ = './repvit-m1.1_8xb256_in1k.py'
max_epochs = 450
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
