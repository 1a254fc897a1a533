# EdgeNeXt-XX-S classifier (the model of edgenext-xx-small_8xb256-accu2_in1k.py) on the generated demo
# classification set, trained from scratch on a CPU in minutes (see configs/_base_/classifier_demo.py).
_base_ = '../../_base_/classifier_demo.py'
model = dict(
    backbone=dict(type='mmlightvit.EdgeNeXt', arch='xx-small'),
    head=dict(in_channels=168, post_pool_norm='LN'))
