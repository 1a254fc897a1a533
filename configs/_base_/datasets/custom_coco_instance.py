# Your own COCO-format instance-segmentation set (one annotation file per split, as CVAT, Label Studio, Roboflow or
# labelme2coco export it), laid out as the paths below say; change them to yours:
#   data/custom/images/{train,val}/*.jpg   data/custom/annotations/{train,val}.json
# classes=None: the class names are the annotation file's categories, in its order (mmdet's label order), and every
# head's num_classes follows them when tools/train.py / tools/test.py read the config. Give classes=(...) instead
# to train on some of the categories only. Boxes-only annotations: drop with_mask / the mask head.
_base_ = './coco_instance.py'
data_root = 'data/custom/'
metainfo = dict(classes=None)
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='images/val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
