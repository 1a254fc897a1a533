# DINO 4-scale, FasterViT-0, COCO-2017, 12 epochs: the official recipe (downstream/object_detection/dino in the
# official repository, config/DINO/DINO_4scale_faster_vit_0_224.py), whose detector is IDEA-Research's DINO code;
# here it is mmdet's re-implementation of the same detector. The repository reports no result for this variant
# (only FasterViT-4-21K-224, dino-4scale_fastervit-4-21k_coco.py). How the official run maps onto mmdet's DINO:
# - optimizer: AdamW 1e-4, weight decay 1e-4 on every parameter, clip 0.1, backbone lr 1e-5 (x0.1): mmdet's DINO
#   optimizer as it is. The official config also sets lr_linear_proj_mult 0.1 for the sampling offsets and
#   reference points, but its param_dict_type 'default' never applies it (util/get_param_dicts.py): they train at
#   the full lr, as here.
# - schedule: 12 epochs, lr x0.1 after epoch 11 (official lr_drop 11); 2 images per GPU (the GPU count is not
#   stated; 8 GPUs = 16 images is mmdet's reference batch).
# - detector: 900 queries, 6 + 6 layers, sine positions (temperature 20), two-stage, box refinement, focal / L1 /
#   GIoU losses and matching costs, 300 detections: as mmdet's. Denoising: 100 queries, label noise 0.5, box noise
#   0.4 (official; mmdet's config has 1.0). The official head has 91 outputs indexed by COCO category id
#   (num_classes=91, ids without a category never occur); mmdet's has the 80 categories as contiguous indices.
#   The official decoder shares one class / box head across its 6 layers; mmdet's DINO builds one per layer
#   whenever boxes are refined (it forces share_pred_layer=False): 5 more head copies, 0.76M parameters more than
#   the official model in all (with its 91 classes). mmdet 3.3 has no option for the official sharing.
# - data: the official augmentation (flip, short side 480-800 or 400-600 + crop 384-600, max 1333) and test size
#   (800, max 1333) are mmdet's DINO pipeline.
# - backbone (official models/dino/fastervit.py): drop path 0.1, a BatchNorm on each returned map (official
#   norm{i}, freshly initialised), gradient checkpointing (official use_checkpoint), no carrier-token propagation.
#   Two computations of the official detection backbone differ from the ImageNet model's and are kept here
#   (checked against the official code): its position embeddings normalise coordinates by half the window's token
#   count (coord_norm='tokens'), and its conv stages run on maps padded to multiples of 7 (pad_conv_stages).
# - input projections (official input_proj, mmdet's ChannelMapper): each conv has a bias before its GroupNorm,
#   which does not cancel a per-channel bias; mmdet leaves it out before a norm by default, so bias=True.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_0_224_1k.pth.tar'  # official README
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.FasterViT',
        arch='0',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        out_norm_cfg=dict(type='BN'),
        do_propagation=False,
        coord_norm='tokens',
        pad_conv_stages=True,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 256, 512], bias=True),
    dn_cfg=dict(box_noise_scale=0.4))
# COCO read by the project's CocoDataset (mmdet's, with errors that name the file)
train_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
