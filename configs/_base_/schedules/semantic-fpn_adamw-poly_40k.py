# The Semantic FPN schedule of the families' ADE20K configs: the RepViT paper's segmentation recipe (AdamW 2e-4,
# wd 1e-4, poly decay power 0.9 to 1e-6 over 40k iterations, no warm-up, reference batch 32 = 8 GPUs x 4) on mmseg's
# 40k loop, hooks and checkpoint interval. Configs inherit it in place of mmseg's schedule_40k.py, set
# train_dataloader batch_size=4 (the dataset base holds the data loaders) and add their parameter groups
# (optim_wrapper = dict(paramwise_cfg=...)).
_base_ = 'mmseg::_base_/schedules/schedule_40k.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=40000, by_epoch=False)]
auto_scale_lr = dict(enable=False, base_batch_size=32)
