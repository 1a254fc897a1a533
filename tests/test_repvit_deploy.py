"""RepViT deployment and ablations: the ablation configs, fused evaluation (FuseModelHook, fuse_checkpoint.py) and
the RTMDet configs (a 2-iteration train + 2-image test, unfused and fused)."""
import copy
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.registry import DATASETS, MODELS, init_default_scope
from mmengine.runner import BaseLoop
from mmdet.structures.bbox import bbox_overlaps

from mmlightvit.engine import FuseModelHook, StrictLoadHook
from mmlightvit.models.backbones.repvit import RepVggDW, SqueezeExcite
from mmlightvit.models.layers import ConvBN, fuse_model
from mmlightvit.utils import CheckpointError, load_checkpoint_file
from tests.backbone_utils import randomise_bn
from tests.conftest import load_tool, run_output

ROOT = Path(__file__).resolve().parents[1]
REPVIT = ROOT / 'configs/repvit'
ABLATIONS = REPVIT / 'ablations'
MAIN_DET = REPVIT / 'mask-rcnn_repvit-m1.1_coco.py'
MAIN_SEG = REPVIT / 'fpn_repvit-m1.1_ade20k-512x512-40k.py'
DEMO_DET = REPVIT / 'mask-rcnn_repvit-m1.1_coco-demo.py'
RTMDET_DEMO = REPVIT / 'rtmdet_repvit-m0.9_coco-demo.py'
FUSE_OPTION = 'default_hooks.fuse.type=mmlightvit.FuseModelHook'  # adds the hook, keeps custom_hooks
TWO_IMAGES = ['test_dataloader.dataset.indices=2', 'test_dataloader.num_workers=0',
              'test_dataloader.persistent_workers=False']


# ----------------------------------------------------------------------------------------------------------------
# Ablation configs: each changes one thing, and the change really reaches the backbone


def flatten(node, prefix=''):
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return {prefix: node}
    out = {}
    for key, value in items:
        out.update(flatten(value, f'{prefix}.{key}' if prefix else str(key)))
    return out


def changed_keys(cfg_a: Config, cfg_b: Config):
    a, b = flatten(cfg_a.to_dict()), flatten(cfg_b.to_dict())
    return {k for k in a.keys() | b.keys() if a.get(k, '<absent>') != b.get(k, '<absent>')}


SCRATCH = ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_scratch.py'
# ablation: (the config it is compared with, the settings it may change)
ONE_CHANGE = {
    'mask-rcnn_repvit-m1.1_coco_scratch.py': (MAIN_DET, ['model.backbone.init_cfg', 'model.backbone.norm_eval']),
    'mask-rcnn_repvit-m1.1_coco_se-all.py': (SCRATCH, ['model.backbone.se_mode']),
    'mask-rcnn_repvit-m1.1_coco_se-none.py': (SCRATCH, ['model.backbone.se_mode']),
    'mask-rcnn_repvit-m1.1_coco_no-rep-branch.py': (SCRATCH, ['model.backbone.use_rep_branch']),
    'mask-rcnn_repvit-m1.1_coco_hswish.py': (MAIN_DET, ['model.backbone.act_cfg']),
    'mask-rcnn_repvit-m1.1_coco_frozen-stage1.py': (MAIN_DET, ['model.backbone.frozen_stages']),
    'mask-rcnn_repvit-m1.1_coco_bn-train.py': (MAIN_DET, ['model.backbone.norm_eval']),
    'fpn_repvit-m1.1_ade20k-512x512-40k_det-outputs.py': (MAIN_SEG, ['model.backbone.out_after_preblock']),
    'mask-rcnn_repvit-m1.1_coco_fused-test.py': (MAIN_DET, ['custom_hooks.1']),
}


def test_every_ablation_config_is_listed():
    assert sorted(p.name for p in ABLATIONS.glob('*.py')) == sorted(ONE_CHANGE)


@pytest.mark.parametrize('name', sorted(ONE_CHANGE))
def test_ablation_changes_one_thing(name):
    reference, allowed = ONE_CHANGE[name]
    changed = changed_keys(Config.fromfile(str(ABLATIONS / name)), Config.fromfile(str(reference)))
    for prefix in allowed:
        assert any(k == prefix or k.startswith(prefix + '.') for k in changed), (name, prefix, changed)
    stray = [k for k in changed if not any(k == p or k.startswith(p + '.') for p in allowed)]
    assert not stray, f'{name} also changes {stray}'


def build_backbone(path) -> nn.Module:
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    backbone_cfg.init_cfg = None  # tests never download
    return MODELS.build(backbone_cfg)


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope='module')
def main_backbone():
    return build_backbone(MAIN_DET)


def test_architecture_ablations_build_different_backbones(main_backbone):
    se_all = build_backbone(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_se-all.py')
    se_none = build_backbone(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_se-none.py')
    no_rep = build_backbone(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_no-rep-branch.py')
    # M1.1 has 18 stride-1 blocks and 3 pre-blocks: official SE on every other block of each stage
    assert count(main_backbone, SqueezeExcite) == 1 + 1 + 6 + 1
    assert count(se_all, SqueezeExcite) == 18 + 3 and num_params(se_all) > num_params(main_backbone)
    assert count(se_none, SqueezeExcite) == 0 and num_params(se_none) < num_params(main_backbone)
    assert count(main_backbone, RepVggDW) == 21 and count(no_rep, RepVggDW) == 0
    assert num_params(no_rep) < num_params(main_backbone)
    # ... and the official checkpoint layout cannot load strictly into them (hence init_cfg=None there)
    for model in (se_all, se_none, no_rep):
        with pytest.raises(RuntimeError):
            model.load_state_dict(main_backbone.state_dict(), strict=True)
    scratch = Config.fromfile(str(SCRATCH)).model.backbone
    assert scratch.init_cfg is None and scratch.norm_eval is False


def test_hswish_ablation_swaps_activations_and_keeps_weights(main_backbone):
    hswish = build_backbone(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_hswish.py')
    assert count(main_backbone, nn.GELU) > 0 and count(main_backbone, nn.Hardswish) == 0
    assert count(hswish, nn.GELU) == 0 and count(hswish, nn.Hardswish) == count(main_backbone, nn.GELU)
    hswish.load_state_dict(main_backbone.state_dict(), strict=True)  # the official weights still load


def test_training_control_ablations(main_backbone):
    frozen = build_backbone(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_frozen-stage1.py').train()
    bn_train = build_backbone(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_bn-train.py').train()
    main_backbone.train()
    frozen_part = list(frozen.stem.parameters()) + list(frozen.stages[0].parameters())
    assert frozen_part and not any(p.requires_grad for p in frozen_part)
    assert all(p.requires_grad for p in frozen.stages[1].parameters())
    assert all(p.requires_grad for p in main_backbone.parameters())
    main_bns = [m for m in main_backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert main_bns and not any(m.training for m in main_bns)  # main config: norm_eval=True
    assert all(m.training for m in bn_train.modules() if isinstance(m, nn.BatchNorm2d))


@torch.no_grad()
def test_det_outputs_ablation_moves_the_segmentation_outputs():
    seg = build_backbone(MAIN_SEG).eval()
    det_out = build_backbone(ABLATIONS / 'fpn_repvit-m1.1_ade20k-512x512-40k_det-outputs.py').eval()
    det_out.load_state_dict(seg.state_dict(), strict=True)  # same weights
    x = torch.randn(1, 3, 64, 64)
    a, b = seg(x), det_out(x)
    assert [t.shape for t in a] == [t.shape for t in b]
    # stages 0-2 end before (det) or after (seg) the next stage's pre-block; the last stage has none
    assert all(not torch.allclose(a[i], b[i]) for i in range(3)) and torch.equal(a[3], b[3])


def test_fused_test_config_adds_the_hook_and_keeps_the_others():
    fused = Config.fromfile(str(ABLATIONS / 'mask-rcnn_repvit-m1.1_coco_fused-test.py'))
    main = Config.fromfile(str(MAIN_DET))
    assert fused.custom_hooks == main.custom_hooks + [dict(type='mmlightvit.FuseModelHook')]
    assert any(h['type'] == 'mmlightvit.RNGStateHook' for h in fused.custom_hooks)


# ----------------------------------------------------------------------------------------------------------------
# FuseModelHook on its own (a stand-in runner)


def fake_runner(model, training=False, hooks=()):
    class _Loop(BaseLoop):
        def run(self):
            pass

    return SimpleNamespace(model=model, hooks=list(hooks), logger=MMLogger.get_current_instance(), _resume=False,
                           _load_from=None,
                           _train_loop=_Loop.__new__(_Loop) if training else dict(type='EpochBasedTrainLoop'))


def test_fuse_hook_does_nothing_while_training():
    model = nn.Sequential(ConvBN(3, 8, 3, 1, 1))
    hook = FuseModelHook()
    hook.before_val(fake_runner(model, training=True))
    assert isinstance(model[0], ConvBN) and model.training
    hook.before_val(fake_runner(model))  # validation through Runner.val(): folds, in eval mode
    assert isinstance(model[0], nn.Conv2d) and not model.training


def load_through_hooks(runner, checkpoint):
    """What Runner.load_checkpoint does after reading the file: each hook's after_load_checkpoint, by priority."""
    for hook in runner.hooks:
        hook.after_load_checkpoint(runner, checkpoint)


def test_fuse_hook_folds_for_a_fused_checkpoint_and_strict_load_checks_it():
    model = nn.Sequential(ConvBN(3, 8, 3, 1, 1))
    state = model.state_dict()
    state.pop('0.bn.running_var')
    with pytest.raises(CheckpointError, match='missing keys: 0.bn.running_var'):
        load_through_hooks(fake_runner(model, hooks=[FuseModelHook(), StrictLoadHook()]),
                           dict(state_dict=state, meta={}))
    # a fused checkpoint: FuseModelHook folds first, so its weights fit when StrictLoadHook checks them
    fused_state = fuse_model(copy.deepcopy(model).eval()).state_dict()
    load_through_hooks(fake_runner(model, hooks=[FuseModelHook(), StrictLoadHook()]),
                       dict(state_dict=fused_state, meta=dict(fused=True)))
    assert isinstance(model[0], nn.Conv2d) and set(model.state_dict()) == set(fused_state)
    # mmengine alone loads non-strictly: without StrictLoadHook the fuse hook refuses to run
    with pytest.raises(CheckpointError, match='needs StrictLoadHook'):
        FuseModelHook().after_load_checkpoint(fake_runner(model), dict(state_dict=fused_state, meta={}))


# ----------------------------------------------------------------------------------------------------------------
# fuse_checkpoint.py and fused evaluation of a Mask R-CNN, end to end


def two_demo_images(cfg):
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.indices = 2  # the same two images as TWO_IMAGES in tools/test.py
    dataset = DATASETS.build(dataset_cfg)
    return pseudo_collate([dataset[0], dataset[1]])


def assert_same_detections(ours, reference, nms_iou=0.5):
    """Per image: same labels, boxes within 0.01 px, scores within 1e-4, masks (if any) on >= 99.9% of pixels.

    Folding is exact in real arithmetic; float32 rounding in the folded convs moves the backbone features by ~1e-6
    of their scale (checked in the test), and the heads (RoIAlign, FC layers, exp() in the box decoding) grow that
    to ~2e-3 px in the boxes of this random-weight model on 256 px images. The tolerances leave 5x room and are
    far below anything COCO metrics can see. Rounding can decide two kinds of ties, so a detection of ours may
    have no counterpart when it is (a) at the per-image cut-off (the lowest kept scores), or (b) in a near-tie of
    the final NMS: its IoU with a same-label reference detection is within 0.005 of the NMS threshold (``nms_iou``),
    so one side suppresses it and the other keeps it. This model's many thin boxes make (b) happen."""
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        assert len(a['labels']) == len(b['labels']) > 0
        # Detections whose scores differ by float rounding only may come out in another order: match each of ours
        # to an unused reference detection with the same label, box and score (within the tolerances).
        cutoff = max(float(a['scores'].min()), float(b['scores'].min())) + 1e-3
        unused = list(range(len(b['labels'])))
        for i in range(len(a['labels'])):
            match = next((j for j in unused if a['labels'][i] == b['labels'][j]
                          and (a['bboxes'][i] - b['bboxes'][j]).abs().max() <= 1e-2
                          and abs(a['scores'][i] - b['scores'][j]) <= 1e-4), None)
            if match is None:
                same_label = b['bboxes'][b['labels'] == a['labels'][i]]
                ious = bbox_overlaps(a['bboxes'][i:i + 1], same_label)[0]
                if float(a['scores'][i]) <= cutoff or ((ious - nms_iou).abs() <= 5e-3).any():
                    continue
            assert match is not None, (f'detection {i} (label {int(a["labels"][i])}, box {a["bboxes"][i].tolist()}, '
                                       f'score {float(a["scores"][i]):.5f}) has no counterpart')
            unused.remove(match)
            if 'masks' in a and isinstance(a['masks'], torch.Tensor):
                assert (a['masks'][i] == b['masks'][match]).float().mean() >= 0.999


def as_dicts(data_samples):
    return [{k: v.detach().cpu() for k, v in s.pred_instances.items()} for s in data_samples]


def box_predictions(instances) -> dict:
    """Boxes, labels and scores of one image (a dump keeps masks as RLE; they are compared through the boxes)."""
    return {k: instances[k] for k in ('bboxes', 'labels', 'scores')}


@pytest.fixture(scope='module')
def fused_maskrcnn(tmp_path_factory):
    """A demo Mask R-CNN with random weights and BN statistics, its checkpoint, the tool's fused checkpoint and
    the unfused predictions on two demo images."""
    work = tmp_path_factory.mktemp('fuse')
    cfg = Config.fromfile(str(DEMO_DET))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomise_bn(model)  # folding must matter for the comparison to mean anything
    model.eval()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, work / 'unfused.pth')
    tool = load_tool('tools/model_converters/fuse_checkpoint.py')
    result = tool.main([str(DEMO_DET), str(work / 'unfused.pth'), str(work / 'fused.pth')])
    # The reference predictions come from a process of their own (tools/test.py), as the fused ones below do, so
    # that the kernel choices of a long test session do not move them.
    run_output(['tools/test.py', str(DEMO_DET), str(work / 'unfused.pth'), '--work-dir', str(work / 'reference'),
                '--out', str(work / 'unfused.pkl'), *['--cfg-options', *TWO_IMAGES]])
    with open(work / 'unfused.pkl', 'rb') as fh:
        predictions = [box_predictions(d['pred_instances']) for d in pickle.load(fh)]
    data = two_demo_images(cfg)
    return SimpleNamespace(cfg=cfg, model=model, work=work, result=result, data=data, predictions=predictions)


@torch.no_grad()
def test_fuse_checkpoint_tool_matches_unfused_model(fused_maskrcnn):
    f = fused_maskrcnn
    checkpoint = load_checkpoint_file(str(f.work / 'fused.pth'))
    assert checkpoint['meta']['fused'] is True and checkpoint['meta']['content'] == 'model'
    # M1.1: 2 stem convs, per block 4 (RepVGG mixer, its inner conv-BN, 2 FFN conv-BNs), per down-sampling 8
    assert checkpoint['meta']['folded_modules'] == 2 + 18 * 4 + 3 * 8
    assert not any('.bn.' in k for k in checkpoint['state_dict'] if k.startswith('backbone.'))
    assert f.result['params_after'] < f.result['params_before']

    fused = fuse_model(MODELS.build(f.cfg.model).eval())
    fused.load_state_dict(checkpoint['state_dict'], strict=True)
    x = torch.randn(1, 3, 96, 160)
    for a, b in zip(fused.extract_feat(x), f.model.extract_feat(x)):
        # float32 folding: differences of ~1e-6 of the feature scale; allow 1e-5
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert_same_detections([box_predictions(d) for d in as_dicts(fused.test_step(f.data))], f.predictions,
                           f.cfg.model.test_cfg.rcnn.nms.iou_threshold)


def test_tools_test_evaluates_fused_with_the_hook(fused_maskrcnn):
    f = fused_maskrcnn
    # an ordinary checkpoint: the hook folds after loading; a fused one: before loading
    routes = {'unfused.pth': 'FuseModelHook (before_test)', 'fused.pth': 'before loading a fused checkpoint'}
    for checkpoint, log_line in routes.items():
        out = f.work / f'{checkpoint}.pkl'
        output = run_output(['tools/test.py', str(DEMO_DET), str(f.work / checkpoint), '--work-dir',
                             str(f.work / 'test'), '--out', str(out), '--cfg-options', FUSE_OPTION, *TWO_IMAGES])
        assert log_line in output and 'folded 98 modules' in output and 'coco/segm_mAP' in output
        with open(out, 'rb') as fh:
            dumped = pickle.load(fh)
        assert_same_detections([box_predictions(d['pred_instances']) for d in dumped], f.predictions,
                               f.cfg.model.test_cfg.rcnn.nms.iou_threshold)


# ----------------------------------------------------------------------------------------------------------------
# RTMDet + RepViT: the configs' wiring, and a smoke run on the demo set


@pytest.mark.parametrize('arch,channels,neck_width', [('m0.9', [96, 192, 384], 96), ('m1.1', [128, 256, 512], 128),
                                                       ('m1.5', [128, 256, 512], 128)])
def test_rtmdet_configs_match_backbone_widths(arch, channels, neck_width):
    cfg = Config.fromfile(str(REPVIT / f'rtmdet_repvit-{arch}_coco.py'))
    assert cfg.model.backbone.arch == arch and tuple(cfg.model.backbone.out_indices) == (1, 2, 3)
    assert cfg.model.neck.in_channels == channels
    assert cfg.model.neck.out_channels == cfg.model.bbox_head.in_channels == neck_width
    assert cfg.model.data_preprocessor.bgr_to_rgb is True  # RepViT's ImageNet weights expect RGB
    assert arch.replace('.', '_') in cfg.model.backbone.init_cfg.checkpoint


def test_rtmdet_demo_smoke_train_test_and_fused_tests(tmp_path):
    config = str(RTMDET_DEMO)
    run_output(['tools/train.py', config, '--work-dir', str(tmp_path), '--cfg-options', 'randomness.seed=0',
                'train_cfg.max_epochs=1',
                'train_dataloader.dataset.indices=8', 'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False', 'val_cfg=None', 'val_dataloader=None',
                'val_evaluator=None'])
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Epoch(train) [1][2/2]' in log  # 8 images, batch 4: two iterations
    checkpoint = (tmp_path / 'last_checkpoint').read_text().strip()
    fused_checkpoint = str(tmp_path / 'fused.pth')
    load_tool('tools/model_converters/fuse_checkpoint.py').main([config, checkpoint, fused_checkpoint])
    dumps = {}
    runs = (('unfused', checkpoint, [], None),
            ('fold-after-load', checkpoint, [FUSE_OPTION], 'FuseModelHook (before_test)'),
            ('fused-checkpoint', fused_checkpoint, [FUSE_OPTION], 'before loading a fused checkpoint'))
    for name, ckpt, extra, log_line in runs:
        out = tmp_path / f'{name}.pkl'
        # score_thr=0: after 2 iterations all scores may sit below RTMDet's 0.001, leaving nothing to compare
        output = run_output(['tools/test.py', config, ckpt, '--work-dir', str(tmp_path / name), '--out', str(out),
                             '--cfg-options', *TWO_IMAGES, 'model.test_cfg.score_thr=0.0', *extra])
        assert 'coco/bbox_mAP' in output
        if log_line:
            # the config's EMAHook stays; its copy of the model is folded too, or its parameter swap would break
            assert log_line in output and 'folded the EMAHook copy' in output
        with open(out, 'rb') as fh:
            dumps[name] = pickle.load(fh)
    # After 2 iterations many scores are nearly tied, so rounding may reorder them: compare order-free.
    for a, b in [pair for name in ('fold-after-load', 'fused-checkpoint')
                 for pair in zip(dumps[name], dumps['unfused'])]:
        a, b = a['pred_instances'], b['pred_instances']
        assert len(b['scores']) > 0
        torch.testing.assert_close(a['scores'].sort().values, b['scores'].sort().values, rtol=0, atol=1e-4)
        torch.testing.assert_close(a['bboxes'].sort(dim=0).values, b['bboxes'].sort(dim=0).values, rtol=0, atol=1e-2)
