# DINO 4-scale, FasterViT-4, COCO-2017, 12 epochs: the official recipe of dino-4scale_fastervit-0_coco.py
# (config/DINO/DINO_4scale_faster_vit_4_224.py) with the FasterViT-4 backbone (layer scale 1e-5, as in the
# official backbone). No official result.
_base_ = './dino-4scale_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='4', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[392, 784, 1568]))
