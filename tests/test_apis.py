"""Inference on images (tools/image_demo.py, mmlightvit.apis) and the dataset browser, on short demo trainings."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmlightvit.apis import LightDetInferencer, build_inferencer, find_model, list_models, load_model_index
from mmlightvit.utils import CheckpointError

from tests.conftest import DET_CONFIG, NO_WORKERS, ROOT, SEG_CONFIG, read_config, run_python as run


def first_test_image(config) -> Path:
    """The image of the config's first test sample (the generated demo sets are ordered by file name)."""
    folder = ROOT / ('data/demo/coco/val' if config == DET_CONFIG else 'data/demo/ade20k/images/validation')
    return sorted(folder.iterdir())[0]


def test_image_demo_detection_matches_test_tool(det_checkpoint, tmp_path):
    image = first_test_image(DET_CONFIG)
    run(['tools/image_demo.py', image, DET_CONFIG, '--weights', det_checkpoint, '--device', 'cpu',
         '--pred-score-thr', '0', '--out-dir', tmp_path / 'out'])
    with open(tmp_path / 'out/preds' / f'{image.name}.json') as f:
        demo = json.load(f)
    run(['tools/test.py', DET_CONFIG, det_checkpoint, '--work-dir', tmp_path / 'test', '--out', tmp_path / 'r.pkl',
         '--cfg-options', 'test_dataloader.dataset.indices=1', *[f'test_dataloader.{o}' for o in NO_WORKERS]])
    with open(tmp_path / 'r.pkl', 'rb') as f:
        (tested, ) = pickle.load(f)
    assert Path(tested['img_path']).name == image.name
    expected = tested['pred_instances']
    assert len(demo['scores']) == len(expected['scores']) > 0
    np.testing.assert_allclose(demo['scores'], expected['scores'].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(demo['bboxes'], expected['bboxes'].numpy(), rtol=1e-5, atol=1e-3)
    assert demo['labels'] == expected['labels'].tolist()

    drawn = np.asarray(Image.open(tmp_path / 'out/vis' / image.name).convert('RGB'), dtype=np.int16)
    original = np.asarray(Image.open(image).convert('RGB'), dtype=np.int16)
    assert drawn.shape == original.shape
    x0, y0, x1, y1 = (int(round(v)) for v in demo['bboxes'][0])
    changed = np.abs(drawn - original).max(axis=2) > 40
    assert changed[y0:y1 + 1, x0:x1 + 1].mean() > 0.05  # the best detection's box and mask are drawn


def test_fused_inferencer_predicts_what_the_trained_model_does(det_checkpoint):
    image = str(first_test_image(DET_CONFIG))
    plain = LightDetInferencer(str(DET_CONFIG), weights=det_checkpoint, device='cpu', show_progress=False)
    fused = build_inferencer(str(DET_CONFIG), weights=det_checkpoint, device='cpu', fuse=True, show_progress=False)
    assert isinstance(fused, LightDetInferencer)
    fusable = [m for m in fused.model.modules() if callable(getattr(m, 'fuse', None))]
    assert not fusable and any(callable(getattr(m, 'fuse', None)) for m in plain.model.modules())
    one = plain(image, pred_score_thr=0, return_datasamples=True)['predictions'][0].pred_instances
    two = fused(image, pred_score_thr=0, return_datasamples=True)['predictions'][0].pred_instances
    assert len(one) == len(two) > 0
    torch.testing.assert_close(two.scores, one.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(two.bboxes, one.bboxes, rtol=1e-4, atol=1e-2)


def test_image_demo_segmentation(seg_checkpoint, tmp_path):
    image = first_test_image(SEG_CONFIG)
    run(['tools/image_demo.py', image, SEG_CONFIG, '--weights', seg_checkpoint, '--device', 'cpu', '--out-dir',
         tmp_path / 'out'])
    with open(tmp_path / 'out/preds' / f'{image.name}.json') as f:
        summary = json.load(f)
    assert abs(sum(summary['pixel_share']) - 1) < 1e-4 and summary['shape'] == list(Image.open(image).size[::-1])
    label = np.array(Image.open(tmp_path / 'out/preds' / f'{image.name}_pred.png'))
    assert sorted(np.unique(label).tolist()) == summary['label_ids']
    # tools/test.py --out DIR writes the same map (mmseg stores it 1-based after reduce_zero_label)
    run(['tools/test.py', SEG_CONFIG, seg_checkpoint, '--work-dir', tmp_path / 'test', '--out', tmp_path / 'maps',
         '--cfg-options', 'test_dataloader.dataset.indices=1', *[f'test_dataloader.{o}' for o in NO_WORKERS]])
    (tested, ) = sorted((tmp_path / 'maps').glob('*.png'))
    assert tested.stem == image.stem
    np.testing.assert_array_equal(np.array(Image.open(tested)).astype(np.int64) - 1, label)
    drawn = np.asarray(Image.open(tmp_path / 'out/vis' / image.name).convert('RGB'), dtype=np.int16)
    original = np.asarray(Image.open(image).convert('RGB'), dtype=np.int16)
    assert drawn.shape == original.shape and (np.abs(drawn - original).max(axis=2) > 20).mean() > 0.5


def test_inference_refuses_random_and_mismatched_weights(tmp_path):
    with pytest.raises(CheckpointError, match='randomly initialised'):
        build_inferencer(str(DET_CONFIG), device='cpu')
    from mmlightvit.models.backbones.repvit import RepViT
    backbone = {f'backbone.{k}': v for k, v in RepViT(arch='m1.1').state_dict().items()}
    torch.save({'state_dict': backbone}, tmp_path / 'backbone.pth')  # a detector checkpoint without its heads
    with pytest.raises(CheckpointError, match=r'does not match MaskRCNN: missing keys: neck\.'):
        build_inferencer(str(DET_CONFIG), weights=str(tmp_path / 'backbone.pth'), device='cpu')


def test_zoo_names_resolve_to_configs_and_released_weights():
    models = load_model_index()
    assert len(models) == len(list(ROOT.glob('configs/*/**/*.py'))) - len(list(ROOT.glob('configs/_base_/**/*.py')))
    assert all(Path(m.config).is_file() for m in models.values())
    entry = find_model('mask-rcnn_repvit-m1.1_coco')
    assert entry.weights.startswith('https://') and entry.config.endswith('mask-rcnn_repvit-m1.1_coco.py')
    assert find_model('mask-rcnn_repvit-m1.1_coco.py') == entry
    assert 'fpn_repvit-m1.1_ade20k-demo' in list_models('repvit')
    with pytest.raises(ValueError, match='Unknown model .*mask-rcnn_repvit-m1.1_coco'):
        find_model('mask-rcnn_repvit-m7_coco')


@pytest.mark.parametrize('config', [DET_CONFIG, SEG_CONFIG])
def test_browse_dataset_draws_annotations(config, tmp_path):
    run(['tools/analysis/browse_dataset.py', config, '--output-dir', tmp_path / 'train', '--max-images', '2'])
    assert len(list((tmp_path / 'train').iterdir())) == 2  # the training pipeline (random augmentation) runs
    # the validation pipeline keeps the demo images as they are: what differs is the drawn annotation
    run(['tools/analysis/browse_dataset.py', config, '--split', 'val', '--output-dir', tmp_path / 'val',
         '--max-images', '1'])
    (drawn, ) = (tmp_path / 'val').iterdir()
    image = first_test_image(config)
    assert drawn.name.endswith(image.name)
    drawn = np.asarray(Image.open(drawn).convert('RGB'), dtype=np.int16)
    original = np.asarray(Image.open(image).convert('RGB'), dtype=np.int16)
    assert drawn.shape == original.shape
    assert (np.abs(drawn - original).max(axis=2) > 20).mean() > 0.05
    # a folder that holds files already is refused before any work unless --overwrite; the dataset folder always
    proc = run(['tools/analysis/browse_dataset.py', config, '--output-dir', tmp_path / 'val'], check=False)
    assert proc.returncode == 2 and '--output-dir' in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr
    data_root = read_config(config).val_dataloader.dataset.data_root
    proc = run(['tools/analysis/browse_dataset.py', config, '--output-dir', f'{data_root}/browse', '--overwrite'],
               check=False)
    assert proc.returncode == 2 and 'inside the dataset folder' in proc.stderr, proc.stderr
