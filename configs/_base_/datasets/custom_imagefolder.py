# Your own classification set, one folder of images per class, laid out as the paths below say; change them:
#   data/custom_cls/train/<class>/*.jpg   data/custom_cls/val/<class>/*.jpg
# classes=None: the class names are the folder names, sorted (mmpretrain's order), and the head's num_classes
# follows them when tools/train.py / tools/test.py read the config. ImageNet's pipelines (224 crops) are kept.
_base_ = './imagenet.py'
data_root = 'data/custom_cls/'
metainfo = dict(classes=None)
dataset = dict(type='mmpretrain.CustomDataset', data_root=data_root, metainfo=metainfo, with_label=True)
train_dataloader = dict(dataset=dict(_delete_=True, **dataset, data_prefix='train', pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(_delete_=True, **dataset, data_prefix='val', pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
