# FasterViT-4 ImageNet-1k classifier: the recipe of fastervit-0_32xb128_in1k.py with the LAMB
# optimizer (which clips the global gradient norm to 1 itself) and weight decay 0.12 (TRAINING.md), drop path 0.3.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_224_1k.pth.tar (top-1 85.4).
_base_ = './fastervit-0_32xb128_in1k.py'
model = dict(backbone=dict(arch='4', drop_path_rate=0.3), head=dict(in_channels=1568))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='Lamb', lr=5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.12))
