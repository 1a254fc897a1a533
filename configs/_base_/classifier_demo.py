# An ImageNet classifier of the project sized for the generated demo classification set on a CPU: 4 classes,
# 64x64 crops, no Mixup / CutMix, from random weights, 6 epochs of 125 iterations (learning a shape's kind from
# scratch takes more images than the 400 a detector needs). Family demo configs inherit it and set the backbone and
# the head's in_channels / norms.
_base_ = ['./datasets/imagenet_demo.py', './imagenet_classifier.py']
model = dict(head=dict(num_classes=4, topk=(1, )), train_cfg=dict(_delete_=True))

max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_epochs))
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
randomness = dict(seed=0)
