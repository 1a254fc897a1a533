# RepViT-M0.9 classifier (the model of repvit-m0.9_8xb256_in1k.py: both heads, averaged) on the generated demo
# classification set, trained from scratch on a CPU in minutes (see configs/_base_/classifier_demo.py).
_base_ = '../../_base_/classifier_demo.py'
model = dict(
    backbone=dict(type='mmlightvit.RepViT', arch='m0.9'),
    head=dict(in_channels=384, branch_norm=True, distillation=True))
