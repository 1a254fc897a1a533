# Stage 1 of the two-stage demo ablations: the RepViT-M0.9 demo classifier
# (see ../fpn_repvit-m0.9_ade20k-demo_baseline.py).
# Four epochs (500 iterations) instead of the demo classifier's six, to keep the demo ablations short.
_base_ = '../../../imagenet/repvit-m0.9_in1k-demo.py'
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
