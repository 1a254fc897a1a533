# Cascade Mask R-CNN + FPN, FasterViT-3, COCO-2017, 3x, multi-scale; recipe of
# cascade-mask-rcnn_fastervit-2_coco-3x.py (the paper's). Paper (COCO Cascade Mask R-CNN table): APb 52.4 (AP50 71.1,
# AP75 56.7), APm 45.4 (AP50 68.7, AP75 49.3), 159 img/s.
_base_ = './cascade-mask-rcnn_fastervit-2_coco-3x.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_3_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='3', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
