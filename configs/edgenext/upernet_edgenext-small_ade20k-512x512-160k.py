# UperNet, EdgeNeXt-Small, ADE20K 512x512, 160k iterations.
# The EdgeNeXt paper has no UperNet result: this is mmseg's ConvNeXt UperNet recipe (AdamW 1e-4, wd 0.05,
# 1500-iteration linear warm-up from 1e-6, poly decay power 1.0, reference batch 16 = 8 GPUs x 2, sliding-window
# test 512 / stride 341), the nearest published recipe for a ConvNeXt-style backbone. Differences: no layer-wise
# lr decay (mmseg's constructor for it parses ConvNeXt parameter names), and fp32 by default (add --amp on GPUs,
# as ConvNeXt trains); norms, layer scales and the XCA temperature get no weight decay.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/upernet_adamw-poly_160k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.0/edgenext_small.pth'
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.EdgeNeXt',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[48, 96, 160, 304], num_classes=150),
    auxiliary_head=dict(in_channels=160, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0., custom_keys={
            'gamma': dict(decay_mult=0.),
            'temperature': dict(decay_mult=0.),
        }))
train_dataloader = dict(batch_size=2)
