# UperNet, FasterViT-4, ADE20K 512x512, 160k; recipe of upernet_fastervit-2_ade20k-512x512-160k.py.
# Paper (ADE20K UperNet table): mIoU 49.1 single-scale / 50.3 multi-scale, 1290 GFLOPs, 202 img/s.
# From the ImageNet-1K release (not the 21K one).
_base_ = './upernet_fastervit-2_ade20k-512x512-160k.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='4', init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[196, 392, 784, 1568]),
    auxiliary_head=dict(in_channels=784))
