# The UperNet schedule of the families' ADE20K configs: mmseg's Swin UperNet recipe
# (swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py): AdamW 6e-5, wd 0.01, 1500-iteration
# linear warm-up from 1e-6 x lr, poly decay power 1.0 to 0 over 160k iterations, reference batch 16 = 8 GPUs x 2, on
# mmseg's 160k loop, hooks and checkpoint interval. Configs inherit it in place of mmseg's schedule_160k.py, set
# train_dataloader batch_size=2 (the dataset base holds the data loaders), and set their lr and weight decay where
# they differ (optim_wrapper = dict(optimizer=dict(lr=..., weight_decay=...))) and their parameter groups.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=1500, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
