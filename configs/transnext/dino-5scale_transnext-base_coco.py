# DINO 5-scale, TransNeXt-Base, COCO-2017, 12 epochs: the recipe of dino-5scale_transnext-tiny_coco.py with the
# Base backbone (drop path 0.6). Official result: box AP 57.1, 110M parameters; the released model evaluates as it
# is.
_base_ = './dino-5scale_transnext-tiny_coco.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
