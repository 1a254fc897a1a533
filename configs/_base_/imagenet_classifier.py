# What every ImageNet-1k classifier config of the project shares: mmpretrain's ImageClassifier over the last stage
# of a family backbone with the families' classifier head (mmlightvit.LightClsHead), label smoothing 0.1 with
# Mixup 0.8 / CutMix 1.0 (one of the two per batch, timm's switch probability 0.5), AdamW without weight decay on
# norms, biases and other 1-D parameters, top-1 / top-5 evaluation. A family recipe inherits it together with a
# dataset base (mmpretrain's DeiT-style ImageNet pipeline or the demo set) and sets the backbone, the head's
# in_channels and norms, and the schedule.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['mmlightvit.heads.cls_head'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(out_indices=(3, )),
    head=dict(
        type='mmlightvit.LightClsHead',
        num_classes=1000,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', betas=(0.9, 0.999), eps=1e-8),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.))
train_cfg = dict(by_epoch=True, val_interval=1)
val_cfg = dict()
test_cfg = dict()
