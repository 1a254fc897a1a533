# Your own semantic-segmentation set of images and label maps (one PNG per image, pixel value = class index, 255 =
# ignored), laid out as the paths below say; change them to yours:
#   data/custom_seg/images/{train,val}/NAME.jpg   data/custom_seg/annotations/{train,val}/NAME.png
# Label maps hold class indices only, so the class names are yours to give: classes = ('background', 'road', ...)
# in index order. Every head's num_classes follows them when tools/train.py / tools/test.py read the config. Label
# maps whose 0 means "unlabelled" (ADE20K's convention): reduce_zero_label=True.
_base_ = './ade20k.py'
data_root = 'data/custom_seg/'
metainfo = dict(classes=None)
dataset = dict(type='mmlightvit.CheckedSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(
    dataset=dict(**dataset, data_prefix=dict(img_path='images/train', seg_map_path='annotations/train')))
val_dataloader = dict(
    dataset=dict(**dataset, data_prefix=dict(img_path='images/val', seg_map_path='annotations/val')))
test_dataloader = val_dataloader
