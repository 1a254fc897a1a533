# DINO 4-scale, FasterViT-2, COCO-2017, 12 epochs: the official recipe of dino-4scale_fastervit-0_coco.py
# (config/DINO/DINO_4scale_faster_vit_2_224.py) with the FasterViT-2 backbone. No official result.
_base_ = './dino-4scale_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_2_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='2', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[192, 384, 768]))
