# Demo ablation set (CPU, minutes per run): the main demo job with a 3-epoch schedule, the reference the other
# configs in this folder change one thing of. Run all of them and get one table with
#   python tools/analysis/ablate.py configs/repvit/ablations/demo --baseline mask-rcnn_repvit-m1.1_coco-demo_baseline
_base_ = '../../mask-rcnn_repvit-m1.1_coco-demo.py'
max_epochs = 3
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
