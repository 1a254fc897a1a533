# Mask R-CNN + FPN, TransNeXt-Base, COCO-2017, 1x: the official recipe with drop path 0.7, trained in fp16 with a
# static loss scale of 512 as the paper did (AmpOptimWrapper needs a GPU; on a CPU add
# --cfg-options optim_wrapper.type=OptimWrapper). Paper: APb 51.7, APm 45.9, 109.2M parameters.
_base_ = './mask-rcnn_transnext-tiny_coco.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale=512.)
