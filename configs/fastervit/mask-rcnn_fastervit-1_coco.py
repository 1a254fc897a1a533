# Mask R-CNN + FPN, FasterViT-1, COCO-2017, 1x; recipe of mask-rcnn_fastervit-0_coco.py (ours: the paper has no
# Mask R-CNN result and no COCO result for this variant).
_base_ = './mask-rcnn_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_1_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='1', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 160, 320, 640]))
