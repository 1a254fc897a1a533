"""A user's own data: class names read from the data with every class count following, fine-tuning a trained model
onto other classes (exactly the class-dependent tensors start anew, each one named), and the worked example of
tools/README.md on the generated "custom" set."""
import copy
import json
import os.path as osp
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mmlightvit.datasets.demo_data import CUSTOM_CLASSES, CUSTOM_IMAGE_SIZES, generate_custom_coco
from mmlightvit.engine import ConfigError, build_runner, load_config, prepare_run
from mmlightvit.engine.setup import (ClassCountError, check_class_counts, class_dependent_keys,
                                     take_classes_from_data)
from mmlightvit.utils import CheckpointError, load_checkpoint_file
from tests.conftest import NO_WORKERS, ROOT, read_config, run_output, run_python
from tests.test_reproduction import released_layout

EXAMPLE = 'configs/repvit/mask-rcnn_repvit-m1.1_custom-demo.py'
# what the fine-tuning from the 4-class demo model to the 3 custom classes leaves as the model initialised it
CLASS_LAYERS = [f'roi_head.{layer}.{kind}'
                for layer in ('bbox_head.fc_cls', 'bbox_head.fc_reg', 'mask_head.conv_logits')
                for kind in ('weight', 'bias')]


@pytest.fixture(scope='module')
def custom_root(tmp_path_factory) -> Path:
    return Path(generate_custom_coco(str(tmp_path_factory.mktemp('data') / 'custom'), num_train=8, num_val=4))


def _on(root: Path) -> dict:
    return {f'{split}_dataloader.dataset.data_root': f'{root}/' for split in ('train', 'val', 'test')}


def test_generated_custom_set_is_what_a_users_export_looks_like(custom_root):
    with open(custom_root / 'annotations/train.json') as f:
        coco = json.load(f)
    assert [c['name'] for c in coco['categories']] == list(CUSTOM_CLASSES)
    assert [c['id'] for c in coco['categories']] != list(range(1, len(CUSTOM_CLASSES) + 1))
    assert {(i['height'], i['width']) for i in coco['images']} == set(CUSTOM_IMAGE_SIZES)
    gray = [i for i in coco['images']
            if cv2.imread(str(custom_root / 'images/train' / i['file_name']), cv2.IMREAD_UNCHANGED).ndim == 2]
    assert gray, 'no grayscale image'


def test_classes_and_class_counts_come_from_the_annotation_file(custom_root):
    cfg = load_config(str(ROOT / EXAMPLE), _on(custom_root))
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.metainfo.classes == CUSTOM_CLASSES
    assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.mask_head.num_classes == 3
    runner = build_runner(cfg)  # the class-count check passes
    assert runner.train_dataloader.dataset.metainfo['classes'] == CUSTOM_CLASSES
    # labels follow the file's category order (ids 3, 7, 12 -> labels 0, 1, 2)
    assert runner.train_dataloader.dataset.cat2label == {3: 0, 7: 1, 12: 2}


def test_classes_wait_for_the_data(tmp_path):
    """Without the files the classes stay unknown: the config still builds (the missing-data check names the path
    when a tool runs), and no class count is compared with COCO's 80 classes."""
    cfg = load_config(str(ROOT / EXAMPLE), _on(tmp_path / 'absent'))
    assert cfg.train_dataloader.dataset.metainfo.classes is None and cfg.model.roi_head.bbox_head.num_classes == 4
    check_class_counts(cfg)


def test_splits_that_name_other_classes_are_refused(custom_root, tmp_path):
    with open(custom_root / 'annotations/val.json') as f:
        coco = json.load(f)
    coco['categories'][0]['name'] = 'spacer'
    (tmp_path / 'val.json').write_text(json.dumps(coco))
    with pytest.raises(ClassCountError, match='spacer'):
        load_config(str(ROOT / EXAMPLE),
                    {**_on(custom_root), 'val_dataloader.dataset.ann_file': str(tmp_path / 'val.json')})


def test_class_folders_name_the_classes_of_a_classification_set(tmp_path):
    for split in ('train', 'val'):
        for name in ('cat', 'ant', 'bee'):
            (tmp_path / split / name).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / split / name / 'a.jpg'), np.zeros((8, 8, 3), np.uint8))
    cfg = read_config('configs/_base_/datasets/custom_imagefolder.py')
    cfg.model = dict(head=dict(num_classes=1000))
    cfg.data_preprocessor = dict(num_classes=1000)
    for split in ('train', 'val'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(tmp_path)
    assert take_classes_from_data(cfg) == ('ant', 'bee', 'cat')
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == 3


def test_label_maps_need_the_class_names_given(tmp_path):
    cfg = read_config('configs/_base_/datasets/custom_seg.py')
    cfg.model = dict(decode_head=dict(num_classes=150))
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(tmp_path)
    with pytest.raises(ConfigError, match=r'list them in the config, metainfo=dict\(classes='):
        take_classes_from_data(cfg)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.metainfo = dict(classes=('background', 'road'))
    assert take_classes_from_data(cfg) is None and cfg.model.decode_head.num_classes == 150  # given: kept as it is


def test_class_dependent_keys_are_found_from_the_model():
    assert class_dependent_keys(read_config(EXAMPLE)) == CLASS_LAYERS
    dino = class_dependent_keys(read_config('configs/fastervit/dino-4scale_fastervit-0_coco-demo.py'))
    assert dino == [f'bbox_head.cls_branches.{i}.{kind}' for i in range(3) for kind in ('weight', 'bias')] + [
        'dn_query_generator.label_embedding.weight']
    assert class_dependent_keys(read_config('configs/repvit/fpn_repvit-m1.1_ade20k-demo.py')) == [
        'decode_head.conv_seg.weight', 'decode_head.conv_seg.bias']


def _fine_tuning_runner(config, work_dir, checkpoint, options, allow_partial=False):
    """A Runner as tools/train.py builds it, stopped where Runner.train() loads ``load_from``."""
    cfg = load_config(str(ROOT / config), {**options, 'train_dataloader.num_workers': 0,
                                           'train_dataloader.persistent_workers': False}, work_dir=str(work_dir))
    prepare_run(cfg, training=True, allow_partial_load=allow_partial)
    cfg.load_from = str(checkpoint)
    runner = build_runner(cfg)
    runner._train_loop = runner.build_train_loop(runner._train_loop)  # what train() builds before loading
    before = copy.deepcopy(runner.model.state_dict())
    runner.load_or_resume()
    return runner, before


def test_fine_tuning_from_a_release_restarts_exactly_the_class_layers(custom_root, tmp_path):
    """A 4-class demo model written in the official RepViT release layout, fine-tuned onto the 3 custom classes: the
    six class-dependent tensors keep the fresh initialisation, every other tensor is the file's."""
    demo = build_runner(load_config(str(ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py'),
                                    work_dir=str(tmp_path / 'demo'))).model
    torch.save({'meta': dict(CLASSES=('circle', 'rectangle', 'triangle', 'star')), 'state_dict': released_layout(demo)},
               tmp_path / 'release.pth')
    runner, before = _fine_tuning_runner(EXAMPLE, tmp_path / 'run', tmp_path / 'release.pth', _on(custom_root))
    loaded, file_state = runner.model.state_dict(), demo.state_dict()
    for key, value in loaded.items():
        expected = before[key] if key in CLASS_LAYERS else file_state[key]
        assert torch.equal(value, expected), key
    log = Path(runner.log_dir, f'{runner.timestamp}.log').read_text()
    assert 'was trained for 4 classes, this model has 3: 6 tensors' in log
    assert all(key in log for key in CLASS_LAYERS)

    # any other mismatch stops the run, named; --allow-partial-load trains with it kept as initialised
    damaged = OrderedDict((k, v) for k, v in released_layout(demo).items() if not k.startswith('neck.lateral_convs.0'))
    torch.save({'state_dict': damaged}, tmp_path / 'damaged.pth')
    with pytest.raises(CheckpointError, match=r'missing keys: neck\.lateral_convs\.0\.conv\.weight'):
        _fine_tuning_runner(EXAMPLE, tmp_path / 'refused', tmp_path / 'damaged.pth', _on(custom_root))
    runner, before = _fine_tuning_runner(EXAMPLE, tmp_path / 'partial', tmp_path / 'damaged.pth', _on(custom_root),
                                         allow_partial=True)
    assert torch.equal(runner.model.state_dict()['neck.lateral_convs.0.conv.weight'],
                       before['neck.lateral_convs.0.conv.weight'])


def test_worked_example_fine_tunes_tests_and_plots(custom_root, det_checkpoint, tmp_path):
    """The guide's commands on the generated set, shortened: train --finetune-from the demo checkpoint, test, image
    demo, dataset browser, plot."""
    options = [f'{k}={v}' for k, v in _on(custom_root).items()] + [
        'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=4', 'val_dataloader.dataset.indices=2',
        *[f'{split}_dataloader.{o}' for split in ('train', 'val') for o in NO_WORKERS]]
    output = run_output(['tools/train.py', EXAMPLE, '--work-dir', tmp_path / 'run', '--finetune-from', det_checkpoint,
                         '--cfg-options', *options])
    assert 'Classes from the data (3): washer, plate, bracket' in output
    assert 'was trained for 4 classes, this model has 3: 6 tensors' in output
    assert 'coco/bbox_mAP:' in output
    checkpoint = (tmp_path / 'run/last_checkpoint').read_text().strip()
    assert load_checkpoint_file(checkpoint)['meta']['dataset_meta']['classes'] == CUSTOM_CLASSES
    output = run_output(['tools/test.py', EXAMPLE, checkpoint, '--work-dir', tmp_path / 'test', '--cfg-options',
                         *options])
    assert 'coco/segm_mAP:' in output
    # inference where the data is not: the classes come from the checkpoint
    elsewhere = tmp_path / 'elsewhere.py'
    elsewhere.write_text(f"_base_ = '{ROOT / EXAMPLE}'\n" + ''.join(
        f"{split}_dataloader = dict(dataset=dict(data_root='{tmp_path}/absent/'))\n"
        for split in ('train', 'val', 'test')))
    output = run_output(['tools/image_demo.py', custom_root / 'images/val/part_0001.jpg', elsewhere, '--weights',
                         checkpoint, '--out-dir', tmp_path / 'vis', '--device', 'cpu', '--pred-score-thr', '0'])
    assert 'Classes from the checkpoint (the data is not here) (3): washer, plate, bracket' in output
    assert json.loads((tmp_path / 'vis/preds/part_0001.jpg.json').read_text())['labels']
    run_python(['tools/analysis/browse_dataset.py', EXAMPLE, '--output-dir', tmp_path / 'browse', '--max-images', '1',
                '--cfg-options', *options[:3]])
    assert len(list((tmp_path / 'browse').iterdir())) == 1
    run_python(['tools/analysis/analyze_logs.py', 'plot', tmp_path / 'run', '--keys', 'loss', 'coco/bbox_mAP',
                '--out', tmp_path / 'curves.png'])
    assert osp.getsize(tmp_path / 'curves.png') > 0

    # a zoo name without released weights, and --resume with --finetune-from, are refused with the reason
    proc = run_python(['tools/train.py', EXAMPLE, '--finetune-from', 'mask-rcnn_repvit-m1.1_coco-demo',
                       '--work-dir', tmp_path / 'x', '--cfg-options', *options], check=False)
    assert proc.returncode == 2 and 'has no released weights' in proc.stderr
    proc = run_python(['tools/train.py', EXAMPLE, '--finetune-from', det_checkpoint, '--resume',
                       '--work-dir', tmp_path / 'y', '--cfg-options', *options], check=False)
    assert proc.returncode == 2 and '--resume continues a run' in proc.stderr
