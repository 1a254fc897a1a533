# FasterViT-3 ImageNet-1k classifier: the recipe of fastervit-0_32xb128_in1k.py with 35 warm-up
# epochs (faster_vit_3_224_1k.yaml) and drop path 0.3; layer scale 1e-5 and carrier-token propagation as the arch.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_3_224_1k.pth.tar (top-1 84.9).
_base_ = './fastervit-0_32xb128_in1k.py'
model = dict(backbone=dict(arch='3', drop_path_rate=0.3), head=dict(in_channels=1024))
warmup_epochs = 35
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 5e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=warmup_epochs, end={{_base_.cosine_epochs}},
         convert_to_iter_based=True),
]
