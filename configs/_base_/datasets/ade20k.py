# ADE20K (SceneParsing, 150 classes), as in mmseg (data/ade/ADEChallengeData2016/{images,annotations}), read by
# the project's ADE20KDataset (mmseg's, with errors that name the file).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
train_dataloader = dict(dataset=dict(type='mmlightvit.ADE20KDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.ADE20KDataset'))
test_dataloader = val_dataloader
