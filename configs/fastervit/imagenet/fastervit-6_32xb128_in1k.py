# FasterViT-6 ImageNet-1k classifier: the recipe of fastervit-0_32xb128_in1k.py with the LAMB
# optimizer (which clips the global gradient norm to 1 itself) and weight decay 0.12 (TRAINING.md), drop path 0.5.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_6_224_1k.pth.tar (top-1 85.8).
_base_ = './fastervit-0_32xb128_in1k.py'
model = dict(backbone=dict(arch='6', drop_path_rate=0.5), head=dict(in_channels=2560))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='Lamb', lr=5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.12))
