# The multi-scale + flip test of the papers' ADE20K tables (mmseg 0.x `tools/test.py --aug-test`): the image
# resized, aspect kept, into (2048 r, 512 r) for r in 0.5 ... 1.75, each scale also flipped, the logits averaged.
# mmseg 1.x's own ade20k tta_pipeline resizes by r times the *original* image size instead, which feeds the
# network other sizes. A config lists this file among its bases and sets
#     tta_pipeline = _base_.ms_flip_tta_pipeline
# (other names than the dataset base's, which bases may not repeat), then tests with
# `tools/test.py CONFIG CHECKPOINT --tta` (tta_model: mmseg's SegTTAModel).
ms_flip_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
ms_flip_tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True) for r in ms_flip_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]
