# Mask R-CNN + FPN, FasterViT-2, COCO-2017, 1x; recipe of mask-rcnn_fastervit-0_coco.py (ours). The paper's COCO
# result for this variant is with Cascade Mask R-CNN 3x: see cascade-mask-rcnn_fastervit-2_coco-3x.py.
_base_ = './mask-rcnn_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_2_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='2', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
