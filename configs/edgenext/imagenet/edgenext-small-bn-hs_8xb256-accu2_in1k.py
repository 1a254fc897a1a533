# EdgeNeXt-S BN+HS ImageNet-1k classifier: the recipe of edgenext-small_8xb256-accu2_in1k.py (no recipe of its own
# is published). BatchNorm + Hardswish model: its final BatchNorm comes before the pooling.
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small_bn_hs.pth (top-1 78.39).
_base_ = './edgenext-small_8xb256-accu2_in1k.py'
model = dict(backbone=dict(arch='small-bn-hs'), head=dict(pre_pool_norm='BN', post_pool_norm=None))
