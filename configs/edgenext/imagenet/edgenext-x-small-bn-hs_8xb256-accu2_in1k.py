# EdgeNeXt-X-S BN+HS ImageNet-1k classifier: the recipe of edgenext-x-small_8xb256-accu2_in1k.py (no recipe of its
# own is published). BatchNorm + Hardswish model: its final BatchNorm comes before the pooling.
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_x_small_bn_hs.pth (top-1 74.87).
_base_ = './edgenext-x-small_8xb256-accu2_in1k.py'
model = dict(backbone=dict(arch='x-small-bn-hs'), head=dict(pre_pool_norm='BN', post_pool_norm=None))
