# Mask R-CNN + FPN, TransNeXt-Micro, COCO-2017, 1x. The paper has no Micro detection result: this is the official
# Tiny recipe with the drop path scaled down for the smaller model (0.2; ImageNet used 0.15 for Micro, 0.25 for Tiny).
_base_ = './mask-rcnn_transnext-tiny_coco.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-micro-224-1k/resolve/main/transnext_micro_224_1k.pth'
model = dict(
    backbone=dict(arch='micro', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 192, 384]))
