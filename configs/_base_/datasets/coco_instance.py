# COCO-2017 instance segmentation, as in mmdet (data/coco/{train2017,val2017,annotations}).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
