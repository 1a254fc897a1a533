# DINO 5-scale, TransNeXt-Small, COCO-2017, 12 epochs: the recipe of dino-5scale_transnext-tiny_coco.py with the
# Small backbone (drop path 0.5). Official result: box AP 56.6, 69.6M parameters; the released model evaluates as
# it is.
_base_ = './dino-5scale_transnext-tiny_coco.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-small-224-1k/resolve/main/transnext_small_224_1k.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.5, init_cfg=dict(checkpoint=checkpoint)))
