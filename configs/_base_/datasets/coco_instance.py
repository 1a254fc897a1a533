# COCO-2017 instance segmentation, as in mmdet (data/coco/{train2017,val2017,annotations}), read by the project's
# CocoDataset (mmdet's, with errors that name the file and a report of the annotations mmdet drops).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
train_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
test_dataloader = val_dataloader
