"""What reproducing the papers' dense numbers needs: released models that load as they are, the official test
pipelines, and test-time augmentation.

No release can be downloaded here, so each release test writes a file in the release's layout (backbone in the
official module tree through the family's ``to_official_state_dict``, heads under the names mmdet 2.x / mmseg 0.x
wrote, mmcv 1.x ``meta``) around a randomly initialised model of the paper config.
"""
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mmlightvit.engine import build_runner, load_config, prepare_run
from mmlightvit.utils import CheckpointError, load_checkpoint_file
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]


def evaluation_runner(config, work_dir, checkpoint=None, seed=None):
    """A Runner as tools/test.py builds it, without the ImageNet download; the checkpoint is loaded at once. With a
    seed the model's random initialisation is the same on every run."""
    cfg = load_config(str(ROOT / config), work_dir=str(work_dir))
    cfg.model.backbone.init_cfg = None
    if seed is not None:
        cfg.randomness = dict(seed=seed)
    prepare_run(cfg, training=False)
    cfg.load_from = checkpoint
    runner = build_runner(cfg)
    if checkpoint is not None:
        runner.load_or_resume()  # what Runner.test() does first
    return runner


def assert_same_state(loaded, expected) -> None:
    """The same keys and, bit for bit, the same tensors. Bits, not values: a parameter that only ``init_weights()``
    fills (DINO's ``level_embed``) holds raw memory in a runner that has not trained, NaN patterns among it."""
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(_bytes(loaded[key]), _bytes(value)), key


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def released_layout(model) -> 'OrderedDict[str, torch.Tensor]':
    state = OrderedDict((k, v) for k, v in model.state_dict().items() if not k.startswith('backbone.'))
    state.update(('backbone.' + k, v) for k, v in model.backbone.to_official_state_dict().items())
    return state


RELEASES = {
    # config: (meta of the writer, wrapped in {'meta', 'state_dict'} or a bare state dict)
    'configs/repvit/mask-rcnn_repvit-m1.1_coco.py': (dict(mmcv_version='1.7.1', CLASSES=('person', )), True),
    'configs/repvit/fpn_repvit-m1.1_ade20k-512x512-40k.py': (dict(mmcv_version='1.7.1', CLASSES=('wall', ),
                                                                  PALETTE=[[120, 120, 120]]), True),
    'configs/transnext/mask-rcnn_transnext-tiny_coco.py': (None, False),
    'configs/transnext/upernet_transnext-tiny_ade20k-512x512-160k.py': (None, False),
    # written by mmengine 0.7.3 (mmseg 1.0.0): meta + state_dict, mmseg 1.x head names
    'configs/transnext/mask2former_transnext-tiny_ade20k-512x512-160k.py': (
        dict(mmengine_version='0.7.3', dataset_meta=dict(classes=('wall', ))), True),
}


@pytest.mark.parametrize('config', list(RELEASES))
def test_release_layout_loads_strictly_and_equals_our_layout(config, tmp_path):
    meta, wrapped = RELEASES[config]
    reference = evaluation_runner(config, tmp_path / 'reference').model
    release = released_layout(reference)
    assert any(k.startswith('backbone.') for k in release) and set(release) != set(reference.state_dict())
    path = tmp_path / 'release.pth'
    torch.save({'meta': meta, 'state_dict': release} if wrapped else release, path)

    fresh = evaluation_runner(config, tmp_path / 'fresh')
    assert not torch.equal(fresh.model.state_dict()['backbone.' + next(iter(reference.backbone.state_dict()))],
                           reference.backbone.state_dict()[next(iter(reference.backbone.state_dict()))])
    assert_same_state(evaluation_runner(config, tmp_path / 'loaded', str(path)).model.state_dict(),
                      reference.state_dict())

    # one head key less: stopped, the key named
    head_key = next(k for k in release if not k.startswith('backbone.') and k.endswith('.weight'))
    damaged = OrderedDict((k, v) for k, v in release.items() if k != head_key)
    torch.save({'state_dict': damaged}, tmp_path / 'damaged.pth')
    with pytest.raises(CheckpointError, match=f'missing keys: {head_key}'):
        evaluation_runner(config, tmp_path / 'damaged', str(tmp_path / 'damaged.pth'))


def test_test_tool_and_converter_take_a_release(tmp_path):
    config = 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py'
    model = evaluation_runner(config, tmp_path / 'reference').model
    meta = dict(CLASSES=('circle', 'rectangle', 'triangle', 'star'))
    torch.save({'meta': meta, 'state_dict': released_layout(model)}, tmp_path / 'release.pth')
    # converted once by the tool: our keys, the reference's weights, the classes as dataset_meta
    run_python(['tools/model_converters/release_to_mmlightvit.py', config, tmp_path / 'release.pth',
                tmp_path / 'converted.pth'])
    converted = load_checkpoint_file(str(tmp_path / 'converted.pth'))
    assert converted['meta']['backbone_layout'] == 'official'
    assert converted['meta']['dataset_meta']['classes'] == ('circle', 'rectangle', 'triangle', 'star')
    assert_same_state(converted['state_dict'], model.state_dict())
    # evaluated as it is by tools/test.py
    proc = run_python(['tools/test.py', config, tmp_path / 'release.pth', '--work-dir', tmp_path / 'test',
                       '--cfg-options', 'test_dataloader.dataset.indices=2'])
    assert 'official RepViT layout; converted in memory' in proc.stdout + proc.stderr
    assert 'coco/bbox_mAP:' in proc.stdout + proc.stderr


def test_repvit_segmentation_tests_with_the_official_align_resize():
    """The official RepViT ADE20K test: keep-ratio into 2048x512, then resize (not pad) to multiples of 32."""
    import cv2
    import numpy as np
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    pipeline = Config.fromfile(str(ROOT / 'configs/repvit/fpn_repvit-m2.3_ade20k-512x512-40k.py')).test_pipeline
    assert pipeline[1] == dict(type='mmlightvit.AlignResize', scale=(2048, 512), size_divisor=32)
    img = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    out = Compose(pipeline[1:2])(dict(img=img))
    assert out['img'].shape[:2] == (512, 704)  # mmseg's Resize: 512 x 683, padded rather than resized
    expected = cv2.resize(cv2.resize(img, (683, 512), interpolation=cv2.INTER_LINEAR), (704, 512),
                          interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out['img'], expected)
    assert out['scale_factor'] == (704 / 500, 512 / 375)


def _test(config, checkpoint, work_dir, *extra):
    proc = run_python(['tools/test.py', config, checkpoint, '--work-dir', work_dir, *extra])
    return proc.stdout + proc.stderr


@pytest.mark.parametrize('config, tta_model, metric', [
    ('configs/repvit/fpn_repvit-m1.1_ade20k-demo.py', 'SegTTAModel', 'mIoU:'),
    ('configs/repvit/rtmdet_repvit-m0.9_coco-demo.py', 'DetTTAModel', 'coco/bbox_mAP:'),
])
def test_tta_evaluates_through_the_tta_model(config, tta_model, metric, tmp_path):
    # seeded: some random initialisations predict one class everywhere, with and without TTA
    model = evaluation_runner(config, tmp_path / 'build', seed=0).model
    if hasattr(model, 'decode_head'):  # a classifier of larger weights than its init: class maps vary in space
        torch.nn.init.normal_(model.decode_head.conv_seg.weight, std=1.0)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'weights.pth')
    options = ['--cfg-options', 'test_dataloader.dataset.indices=2']
    plain = _test(config, tmp_path / 'weights.pth', tmp_path / 'plain', '--out', str(tmp_path / 'plain.pkl'),
                  *options)
    tta = _test(config, tmp_path / 'weights.pth', tmp_path / 'tta', '--tta', '--out', str(tmp_path / 'tta.pkl'),
                *options)
    # the model of the dumped config is the TTA model around the detector / segmentor
    assert 'module=dict(' in tta and 'module=dict(' not in plain and f"type='{tta_model}'" in tta
    assert metric in tta
    with open(tmp_path / 'plain.pkl', 'rb') as f, open(tmp_path / 'tta.pkl', 'rb') as g:
        plain_results, tta_results = pickle.load(f), pickle.load(g)
    assert len(plain_results) == len(tta_results) == 2
    if 'SegTTA' in tta_model:
        one, two = plain_results[0]['pred_sem_seg']['data'], tta_results[0]['pred_sem_seg']['data']
    else:
        one, two = plain_results[0]['pred_instances']['bboxes'], tta_results[0]['pred_instances']['bboxes']
    assert one.shape != two.shape or not torch.equal(one, two)  # the merged views predict differently


def test_ms_configs_test_as_the_official_ms_configs():
    from mmengine.config import Config

    from mmlightvit.engine.tta import tta_pipeline
    for size in ('tiny', 'small', 'base'):
        ms = Config.fromfile(str(ROOT / f'configs/transnext/upernet_transnext-{size}_ade20k-512x512-160k_ms.py'))
        extra = Config.fromfile(
            str(ROOT / f'configs/transnext/upernet_transnext-{size}_ade20k-512x512-160k_ms-extrapolation.py'))
        for cfg, extrapolation in ((ms, False), (extra, True)):
            assert cfg.model.backbone.img_size == 800 and cfg.model.backbone.extrapolation is extrapolation
            assert cfg.model.test_cfg == dict(mode='whole')
            resizes = tta_pipeline(cfg)[1]['transforms'][0]
            assert [r['scale'] for r in resizes] == [(1024, 256), (1536, 384), (2048, 512), (2560, 640), (3072, 768),
                                                     (3584, 896)]
            assert all(r['keep_ratio'] for r in resizes)
            assert [f['prob'] for f in tta_pipeline(cfg)[1]['transforms'][1]] == [0., 1.]
    fastervit = Config.fromfile(str(ROOT / 'configs/fastervit/upernet_fastervit-4_ade20k-512x512-160k.py'))
    assert tta_pipeline(fastervit) == tta_pipeline(ms) and fastervit.tta_model.type == 'SegTTAModel'
