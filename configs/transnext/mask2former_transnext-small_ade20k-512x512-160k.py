# Mask2Former, TransNeXt-Small, ADE20K 512x512, 160k: the Tiny config's official recipe with the Small backbone
# (drop path 0.5). Official result: mIoU 54.1 single scale, 69.0M parameters.
_base_ = './mask2former_transnext-tiny_ade20k-512x512-160k.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-small-224-1k/resolve/main/transnext_small_224_1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.5, init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[72, 144, 288, 576]))
