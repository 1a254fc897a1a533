# Cascade Mask R-CNN + FPN, FasterViT-4, COCO-2017, 3x, multi-scale; recipe of
# cascade-mask-rcnn_fastervit-2_coco-3x.py (the paper's). Paper (COCO Cascade Mask R-CNN table): APb 52.9 (AP50 71.6,
# AP75 57.7), APm 45.8 (AP50 69.1, AP75 49.8), 117 img/s. From the ImageNet-1K release (not the 21K one).
_base_ = './cascade-mask-rcnn_fastervit-2_coco-3x.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='4', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[196, 392, 784, 1568]))
