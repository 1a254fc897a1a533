# UperNet, TransNeXt-Base, ADE20K 512x512, 160k: the official recipe, drop path 0.7.
# Paper: mIoU 53.0 single scale (53.5 / 53.7 multi-scale + flip, interpolation / extrapolation), 121M parameters.
_base_ = './upernet_transnext-tiny_ade20k-512x512-160k.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7, init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
