# Semantic FPN with EdgeNeXt-Small on the generated demo ADE20K set, from scratch on a CPU
# (see configs/_base_/fpn_demo.py).
_base_ = '../_base_/fpn_demo.py'
model = dict(
    backbone=dict(_delete_=True, type='mmlightvit.EdgeNeXt', arch='small', out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[48, 96, 160, 304]))
