# Mask2Former, TransNeXt-Base, ADE20K 512x512, 160k: the Tiny config's official recipe with the Base backbone
# (drop path 0.6). Official result: mIoU 54.7 single scale, 109M parameters.
_base_ = './mask2former_transnext-tiny_ade20k-512x512-160k.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6, init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))
