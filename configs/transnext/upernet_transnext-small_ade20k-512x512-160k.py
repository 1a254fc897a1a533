# UperNet, TransNeXt-Small, ADE20K 512x512, 160k: the official recipe, drop path 0.6.
# Paper: mIoU 52.2 single scale (52.5 / 52.8 multi-scale + flip, interpolation / extrapolation), 80M parameters.
_base_ = './upernet_transnext-tiny_ade20k-512x512-160k.py'
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-small-224-1k/resolve/main/transnext_small_224_1k.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6, init_cfg=dict(checkpoint=checkpoint)))
