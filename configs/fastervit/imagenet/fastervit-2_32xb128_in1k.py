# FasterViT-2 ImageNet-1k classifier: the recipe of fastervit-0_32xb128_in1k.py.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_2_224_1k.pth.tar (top-1 84.2).
_base_ = './fastervit-0_32xb128_in1k.py'
model = dict(backbone=dict(arch='2', drop_path_rate=0.2), head=dict(in_channels=768))
