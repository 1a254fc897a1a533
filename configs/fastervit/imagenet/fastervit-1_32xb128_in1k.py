# FasterViT-1 ImageNet-1k classifier: the recipe of fastervit-0_32xb128_in1k.py.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_1_224_1k.pth.tar (top-1 83.2).
_base_ = './fastervit-0_32xb128_in1k.py'
model = dict(backbone=dict(arch='1', drop_path_rate=0.2), head=dict(in_channels=640))
