# ADE20K (SceneParsing, 150 classes), as in mmseg (data/ade/ADEChallengeData2016/{images,annotations}).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
