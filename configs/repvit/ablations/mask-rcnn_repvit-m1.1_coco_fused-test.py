# Deployment check: evaluate the main M1.1 Mask R-CNN with its backbone re-parameterised (conv-BN pairs and
# RepVGG branches folded by mmlightvit.FuseModelHook at test time). Accepts an ordinary trained checkpoint or one
# from tools/model_converters/fuse_checkpoint.py; metrics should equal the unfused evaluation. Training with this
# config trains the unfused model (the hook does nothing during training). Any other config gets the same with
# tools/test.py ... --cfg-options default_hooks.fuse.type=mmlightvit.FuseModelHook
_base_ = '../mask-rcnn_repvit-m1.1_coco.py'
custom_hooks = _base_.custom_hooks + [dict(type='mmlightvit.FuseModelHook')]
