# EdgeNeXt-B ImageNet-1k classifier: the recipe of edgenext-small_8xb256-accu2_in1k.py with Mixup and
# CutMix (models/model.py; their strengths are not published: 0.8 / 1.0 here, as in DeiT).
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.2/edgenext_base.pth (top-1 82.47).
_base_ = './edgenext-small_8xb256-accu2_in1k.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.1),
    head=dict(in_channels=584),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
