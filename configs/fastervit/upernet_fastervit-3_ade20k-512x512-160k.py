# UperNet, FasterViT-3, ADE20K 512x512, 160k; recipe of upernet_fastervit-2_ade20k-512x512-160k.py.
# Paper (ADE20K UperNet table): mIoU 48.7 single-scale / 49.7 multi-scale, 1076 GFLOPs, 254 img/s.
_base_ = './upernet_fastervit-2_ade20k-512x512-160k.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_3_224_1k.pth.tar'
model = dict(
    backbone=dict(arch='3', init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
