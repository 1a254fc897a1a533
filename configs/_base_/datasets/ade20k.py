# ADE20K (SceneParsing, 150 classes), as in mmseg (data/ade/ADEChallengeData2016/{images,annotations}), read by
# the project's ADE20KDataset (mmseg's, with errors that name the file).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
train_dataloader = dict(dataset=dict(type='mmlightvit.ADE20KDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.ADE20KDataset'))
test_dataloader = val_dataloader
# `tools/test.py --tta`: the multi-scale + flip test of the papers' ADE20K tables (mmseg 0.x `--aug-test`): the test
# pipeline's resize at its scale times each ratio, each pass also flipped, the logits averaged. Derived from the
# config's own test scale (mmlightvit/engine/tta.py), so a config that changes it tests at matching scales; this
# replaces the tta_pipeline inherited from mmseg, which resizes by the ratios times the *raw* image size. Set it to
# None to test with a hand-written tta_pipeline instead.
tta_scale_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
