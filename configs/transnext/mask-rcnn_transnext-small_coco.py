# Mask R-CNN + FPN, TransNeXt-Small, COCO-2017, 1x: the official recipe with drop path 0.6.
# Paper: APb 51.1, APm 45.5, 69.3M parameters.
_base_ = './mask-rcnn_transnext-tiny_coco.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-small-224-1k/resolve/main/transnext_small_224_1k.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6, init_cfg=dict(checkpoint=checkpoint)))
