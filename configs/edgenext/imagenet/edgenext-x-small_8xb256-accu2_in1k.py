# EdgeNeXt-X-S ImageNet-1k classifier: the recipe of edgenext-xx-small_8xb256-accu2_in1k.py (the official settings of
# the small models: no RandAugment but colour jitter 0.4, drop path 0).
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_x_small.pth (top-1 74.96).
_base_ = './edgenext-xx-small_8xb256-accu2_in1k.py'
model = dict(backbone=dict(arch='x-small'), head=dict(in_channels=192))
