# DINO 4-scale, FasterViT-3, COCO-2017, 12 epochs: the official recipe of dino-4scale_fastervit-0_coco.py
# (config/DINO/DINO_4scale_faster_vit_3_224.py) with the FasterViT-3 backbone (layer scale 1e-5, as in the
# official backbone). No official result.
_base_ = './dino-4scale_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_3_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='3', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[256, 512, 1024]))
