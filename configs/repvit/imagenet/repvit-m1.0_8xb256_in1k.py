# RepViT-M1.0 ImageNet-1k classifier: the recipe of repvit-m0.9_8xb256_in1k.py.
# Released: https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_m1_0_distill_300e.pth (top-1 80.0).
_base_ = './repvit-m0.9_8xb256_in1k.py'
model = dict(backbone=dict(arch='m1.0'), head=dict(in_channels=448))
