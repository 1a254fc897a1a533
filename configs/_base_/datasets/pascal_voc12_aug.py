# PASCAL VOC 2012 with the SBD augmentation set, as in mmseg (data/VOCdevkit/VOC2012): training on VOC train
# (SegmentationClass) + SBD's extra images (SegmentationClassAug, aug.txt from mmseg's
# tools/dataset_converters/voc_aug.py), 10,582 images; validation on VOC val (1,449). Every split is read by the
# project's PascalVOCDataset (mmseg's, with errors that name the file and say how to build the SBD part).
_base_ = 'mmseg::_base_/datasets/pascal_voc12_aug.py'
dataset_type = 'mmlightvit.PascalVOCDataset'
dataset_train = dict(_base_.dataset_train, type=dataset_type)
dataset_aug = dict(_base_.dataset_aug, type=dataset_type)
train_dataloader = dict(dataset=dict(datasets=[dataset_train, dataset_aug]))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = val_dataloader
# `tools/test.py --tta`: the test pipeline's resize at its scale times each ratio, each pass also flipped (see
# ade20k.py beside this file).
tta_scale_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
