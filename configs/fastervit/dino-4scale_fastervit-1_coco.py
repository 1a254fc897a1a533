# DINO 4-scale, FasterViT-1, COCO-2017, 12 epochs: the official recipe of dino-4scale_fastervit-0_coco.py
# (config/DINO/DINO_4scale_faster_vit_1_224.py) with the FasterViT-1 backbone. No official result.
_base_ = './dino-4scale_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_1_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='1', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[160, 320, 640]))
