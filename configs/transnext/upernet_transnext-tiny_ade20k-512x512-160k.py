# UperNet, TransNeXt-Tiny, ADE20K 512x512, 160k: the official single-scale recipe (segmentation/upernet).
# Paper: mIoU 51.1 single scale (51.5 / 51.7 multi-scale + flip, interpolation / extrapolation), 59M parameters.
# AdamW 6e-5, wd 0.05 (no decay on query embedding, local bias, CPB, temperature, norms), 1500-iteration linear
# warm-up from 1e-6, poly power 1.0 to 0, 2 images x 8 GPUs, auxiliary FCN head on stage 3 (loss weight 0.4),
# sliding-window test (512, stride 341); drop path 0.4; CPB tables interpolated from 224 to 512. For the paper's
# extrapolation test mode: --cfg-options model.backbone.extrapolation=True.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/upernet_adamw-poly_160k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-tiny-224-1k/resolve/main/transnext_tiny_224_1k.pth'
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.TransNeXt',
        arch='tiny',
        pretrain_size=224,
        img_size=512,
        extrapolation=False,
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[72, 144, 288, 576], num_classes=150),
    auxiliary_head=dict(in_channels=288, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

no_decay = dict(decay_mult=0.)
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'query_embedding': no_decay,
            'relative_pos_bias_local': no_decay,
            'cpb': no_decay,
            'temperature': no_decay,
            'norm': no_decay,
        }))
train_dataloader = dict(batch_size=2)
