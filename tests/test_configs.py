"""Every shipped config builds; our backbones build from mmdet, mmseg and mmpretrain configs by 'mmlightvit.X'."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmlightvit.analysis.complexity import predict_batch
from mmlightvit.engine.setup import check_class_counts
from mmlightvit.engine.tta import tta_pipeline
from tests.conftest import (DET_CONFIG, NO_VAL, NO_WORKERS, SEG_CONFIG, read_config, run_output,
                            training_options)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def _without_downloads(cfg: Config) -> Config:
    backbone = cfg.model.backbone
    if isinstance(backbone.get('init_cfg'), dict) and backbone.init_cfg.get('type') == 'Pretrained':
        backbone.init_cfg = None
    return cfg


# Models whose backbone is above this size are built and run on the meta device (shapes only): their heads and
# post-processing are those of the same family's smaller variants (RepViT and EdgeNeXt: all; FasterViT-0,
# TransNeXt-Micro / Tiny), whose configs run for real below (Cascade Mask R-CNN, shipped with FasterViT-2 to 4 only:
# tests/test_export_onnx.py runs its predict on FasterViT-0); initialising and running 50 million to 1.4 billion
# parameters for each of them would take minutes of the suite.
REAL_RUN_MAX_BACKBONE_PARAMS = 40e6
# The models already run below (as config dicts): configs that differ only outside the model (schedules, test-time
# options, ablations of the recipe) have their model run once.
_MODELS_RUN = set()


@pytest.mark.parametrize('path', CONFIGS, ids=[str(p.relative_to(ROOT / 'configs')) for p in CONFIGS])
def test_config_builds(path):
    cfg = _without_downloads(read_config(path))
    check_class_counts(cfg)  # every head has as many classes as the data
    if 'tta_model' in cfg:
        tta_pipeline(cfg)  # --tta holds the single-scale test among its passes
    init_default_scope(cfg.default_scope)
    assert cfg.model.backbone.type.startswith('mmlightvit.')
    with torch.device('meta'):
        backbone = MODELS.build(cfg.model.backbone)
    if sum(p.numel() for p in backbone.parameters()) > REAL_RUN_MAX_BACKBONE_PARAMS:
        with torch.device('meta'), torch.no_grad():
            features = MODELS.build(cfg.model).eval().extract_feat(torch.empty(1, 3, 64, 96))
        assert all(f.shape[0] == 1 for f in features)  # backbone into neck: the channels fit
        return
    model_key = json.dumps(cfg.model.to_dict(), sort_keys=True, default=str)
    if model_key in _MODELS_RUN:
        return
    _MODELS_RUN.add(model_key)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # the whole model in predict mode (heads and post-processing included) on a small image, through the same data
    # path as tools/analysis/benchmark.py (RTMDet's preprocessor does not pad: its test pipeline pads to 640x640)
    # DINO keeps num_queries (900) encoder tokens: the image must give that many (4-scale at 256x320: 1700)
    shape = (256, 320) if cfg.model.type == 'DINO' else (64, 96)
    inputs, data_samples = predict_batch(model.eval(), cfg.default_scope, shape)
    with torch.no_grad():
        results = model(inputs, data_samples, mode='predict')
    assert len(results) == 1
    if cfg.default_scope == 'mmpretrain':
        assert results[0].pred_score.shape == (cfg.model.head.num_classes, )
    elif cfg.default_scope == 'mmseg':
        assert results[0].pred_sem_seg.data.shape[-2:] == shape
    else:
        assert results[0].pred_instances.bboxes.shape[-1] == 4


def test_paper_configs_name_the_official_checkpoints():
    """Dense-prediction configs start from the ImageNet release; ImageNet configs train from scratch (they name
    their own release in the header and the metafile, see tests/test_classification.py)."""
    for path in CONFIGS:
        if 'demo' in path.name or 'ablations' in path.parts or 'imagenet' in path.parts:
            continue
        init_cfg = read_config(path).model.backbone.init_cfg
        assert init_cfg.type == 'Pretrained' and init_cfg.checkpoint.startswith('https://'), path


@pytest.mark.parametrize('variant', ['m0.9', 'm1.0', 'm1.1', 'm1.5', 'm2.3'])
def test_rtmdet_recipe_scales_lr_from_its_own_batch(variant):
    cfg = read_config(f'configs/repvit/rtmdet_repvit-{variant}_coco.py')
    assert cfg.auto_scale_lr.base_batch_size == 8 * cfg.train_dataloader.batch_size == 256
    assert cfg.sync_bn == 'torch'
    assert cfg.model.neck.norm_cfg.type == cfg.model.bbox_head.norm_cfg.type == 'SyncBN'


def test_configs_read_data_with_the_checked_datasets():
    """COCO and ADE20K go through mmlightvit's dataset classes, whose errors name the file (the demo sets too)."""
    for path in CONFIGS:
        cfg = read_config(path)
        for split in ('train', 'val', 'test'):
            datasets = [cfg[f'{split}_dataloader'].dataset] if cfg.get(f'{split}_dataloader') else []
            while datasets:
                dataset = datasets.pop()
                if 'dataset' in dataset or 'datasets' in dataset:  # wrappers: RepeatDataset, ConcatDataset, ...
                    datasets.extend(dataset.datasets if 'datasets' in dataset else [dataset.dataset])
                else:
                    assert dataset.type.startswith('mmlightvit.'), (path, split, dataset.type)


@pytest.mark.parametrize('config, paper_params', [
    ('configs/transnext/mask-rcnn_transnext-tiny_coco.py', 47.9),
    ('configs/transnext/mask-rcnn_transnext-small_coco.py', 69.3),
    ('configs/transnext/mask-rcnn_transnext-base_coco.py', 109.2),
    ('configs/transnext/upernet_transnext-tiny_ade20k-512x512-160k.py', 59),
    ('configs/transnext/upernet_transnext-small_ade20k-512x512-160k.py', 80),
    ('configs/transnext/upernet_transnext-base_ade20k-512x512-160k.py', 121),
    ('configs/transnext/mask2former_transnext-tiny_ade20k-512x512-160k.py', 47.5),  # official README
    ('configs/transnext/mask2former_transnext-small_ade20k-512x512-160k.py', 69.0),
    ('configs/transnext/mask2former_transnext-base_ade20k-512x512-160k.py', 109),
])
def test_transnext_model_params_match_paper(config, paper_params):
    """The paper's detection and segmentation tables list whole-model parameters (UperNet with its auxiliary head)."""
    cfg = _without_downloads(read_config(config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    digits = len(str(paper_params).split('.')[1]) if '.' in str(paper_params) else 0
    assert round(params, digits) == paper_params, params


BUILD_EVERYWHERE = textwrap.dedent('''
    import sys
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    assert 'mmlightvit' not in sys.modules

    def build(scope, model_cfg):
        init_default_scope(scope)
        registry = __import__(scope + '.registry', fromlist=['MODELS']).MODELS
        return registry.build(model_cfg)

    backbone = dict(type='mmlightvit.RepViT', arch='m0.9')
    channels = [48, 96, 192, 384]
    x = torch.randn(1, 3, 64, 64)

    det = Config.fromfile('{root}/configs/repvit/mask-rcnn_repvit-m1.1_coco.py').model
    det.backbone = backbone
    det.neck.in_channels = channels
    assert len(build('mmdet', det).extract_feat(x)) == 5

    for base in ('fpn_r50', 'upernet_r50'):
        seg = Config.fromstring("_base_ = 'mmseg::_base_/models/%s.py'" % base, '.py').model
        seg.pretrained = None
        seg.backbone = backbone
        seg.decode_head.num_classes = 150
        if base == 'fpn_r50':
            seg.neck.in_channels = channels
        else:
            seg.decode_head.in_channels = channels
            seg.auxiliary_head.in_channels = channels[2]
        model = build('mmseg', seg).eval()
        assert model.encode_decode(x, [dict(img_shape=(64, 64))]).shape == (1, 150, 64, 64)

    print('built in mmdet and mmseg')
''')


def test_backbone_builds_from_mmdet_and_mmseg_without_custom_imports():
    script = BUILD_EVERYWHERE.replace('{root}', str(ROOT))
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'built in mmdet and mmseg' in proc.stdout


def test_backbone_builds_in_mmpretrain_image_classifier():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    model = PRETRAIN_MODELS.build(
        dict(type='ImageClassifier', backbone=dict(type='mmlightvit.RepViT', arch='m0.9', out_indices=(3, )),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=1000, in_channels=384))).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


_TEST_2_IMAGES = ['test_dataloader.dataset.indices=2'] + [f'test_dataloader.{o}' for o in NO_WORKERS]
# options for 2 training iterations, options for a 2-image test, the metric the test prints
DET_SMOKE = (training_options(DET_CONFIG), _TEST_2_IMAGES, 'coco/segm_mAP')
SEG_SMOKE = (training_options(SEG_CONFIG), _TEST_2_IMAGES, 'mIoU')
DINO_SMOKE = (DET_SMOKE[0], _TEST_2_IMAGES, 'coco/bbox_mAP')
SMOKE = {
    'configs/transnext/mask-rcnn_transnext-micro_coco-demo.py': DET_SMOKE,
    'configs/transnext/fpn_transnext-micro_ade20k-demo.py': SEG_SMOKE,
    'configs/transnext/mask2former_transnext-micro_ade20k-demo.py': SEG_SMOKE,
    'configs/transnext/dino-4scale_transnext-micro_coco-demo.py': DINO_SMOKE,
    'configs/fastervit/dino-4scale_fastervit-0_coco-demo.py': DINO_SMOKE,
    'configs/edgenext/ssdlite_edgenext-small_coco-demo.py': (
        ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=8', 'train_dataloader.batch_size=4'] + NO_VAL
        + [f'train_dataloader.{o}' for o in NO_WORKERS], _TEST_2_IMAGES, 'coco/bbox_mAP'),
    'configs/edgenext/deeplabv3_edgenext-small_ade20k-demo.py': (  # epoch-based, as its full-size recipe
        ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=4', 'train_dataloader.batch_size=2'] + NO_VAL
        + [f'train_dataloader.{o}' for o in NO_WORKERS], _TEST_2_IMAGES, 'mIoU'),
    'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py': DET_SMOKE,
    'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py': SEG_SMOKE,
    'configs/edgenext/mask-rcnn_edgenext-small_coco-demo.py': DET_SMOKE,
    'configs/edgenext/fpn_edgenext-small_ade20k-demo.py': SEG_SMOKE,
    'configs/fastervit/mask-rcnn_fastervit-0_coco-demo.py': DET_SMOKE,
    'configs/fastervit/fpn_fastervit-0_ade20k-demo.py': SEG_SMOKE,
}


# The session's shared trainings of these two configs (tests/conftest.py), with their smoke options
SHARED_TRAININGS = {str(DET_CONFIG.relative_to(ROOT)): 'det_checkpoint',
                    str(SEG_CONFIG.relative_to(ROOT)): 'seg_checkpoint'}


@pytest.mark.parametrize('config', sorted(SMOKE))
def test_demo_smoke_train_and_test(config, tmp_path, request):
    train_options, test_options, metric = SMOKE[config]
    if config in SHARED_TRAININGS:
        checkpoint = request.getfixturevalue(SHARED_TRAININGS[config])
    else:
        run_output(['tools/train.py', config, '--work-dir', str(tmp_path), '--cfg-options', *train_options])
        checkpoint = (tmp_path / 'last_checkpoint').read_text().strip()
    output = run_output(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                         *test_options])
    assert metric in output
