# The Mask R-CNN 1x schedule of the families' COCO configs: mmdet's schedule_1x.py (12 epochs, lr steps at 8 and 11,
# 500-iteration linear warm-up from 1e-3 x lr, reference batch 16 = 8 GPUs x 2) with, in place of SGD, the optimizer
# of mmdet's Swin-T Mask R-CNN 1x (swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py): AdamW 1e-4, wd 0.05. Configs inherit
# it in place of mmdet's schedule_1x.py, set train_dataloader batch_size=2 (the dataset base holds the data
# loaders), and set their lr, warm-up (param_scheduler) and parameter groups where they differ.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
