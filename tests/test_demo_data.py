"""Tests of the synthetic demo datasets: determinism, annotation consistency, layout, atomic publishing, and the
dataset classes built through the mmdet / mmseg / mmpretrain registries with real pipelines."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from mmlightvit.datasets import (ADE_CLASSES, COCO_CLASSES, IMAGENET_CLASSES, ensure_demo_ade20k, ensure_demo_coco,
                                 generate_demo_ade20k, generate_demo_coco, generate_demo_imagenet)

# Small sets keep the tests fast; 40 train images still hold every class and every COCO size bucket.
COCO_KW = dict(num_train=40, num_val=8)
ADE_KW = dict(num_train=16, num_val=6)


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return generate_demo_coco(str(tmp_path_factory.mktemp('demo') / 'coco'), **COCO_KW)


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    return generate_demo_ade20k(str(tmp_path_factory.mktemp('demo') / 'ade20k'), **ADE_KW)


def _read_tree(root):
    """{relative path: bytes} of every file under root."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


@pytest.mark.parametrize('generate', [generate_demo_coco, generate_demo_ade20k, generate_demo_imagenet])
def test_deterministic(tmp_path, generate):
    kw = dict(num_train=5, num_val=2, image_size=(96, 128))
    a = _read_tree(generate(str(tmp_path / 'a'), seed=3, **kw))
    b = _read_tree(generate(str(tmp_path / 'b'), seed=3, **kw))
    c = _read_tree(generate(str(tmp_path / 'c'), seed=4, **kw))
    assert a.keys() == b.keys() == c.keys()
    assert a == b
    images = [k for k in a if k.endswith('.jpg')]
    assert len(images) == 7
    assert all(a[k] != c[k] for k in images)
    # No temporary directories are left next to the published sets.
    assert sorted(os.listdir(tmp_path)) == ['a', 'b', 'c']


def test_validation_split_independent_of_num_train(tmp_path):
    a = _read_tree(generate_demo_coco(str(tmp_path / 'a'), num_train=2, num_val=3, image_size=(64, 64)))
    b = _read_tree(generate_demo_coco(str(tmp_path / 'b'), num_train=5, num_val=3, image_size=(64, 64)))
    assert all(a[k] == b[k] for k in a if k.startswith('val'))


def test_coco_layout_and_annotations(coco_root):
    for split, num in (('train', COCO_KW['num_train']), ('val', COCO_KW['num_val'])):
        coco = COCO(osp.join(coco_root, 'annotations', f'instances_{split}.json'))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(COCO_CLASSES)
        assert [c['id'] for c in coco.loadCats(coco.getCatIds())] == [1, 2, 3, 4]
        assert len(coco.getImgIds()) == num
        for img_info in coco.loadImgs(coco.getImgIds()):
            path = osp.join(coco_root, split, img_info['file_name'])
            img = cv2.imread(path)
            assert img.shape == (img_info['height'], img_info['width'], 3) == (256, 256, 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_info['id']))
            assert 1 <= len(anns) <= 5
            for ann in anns:
                assert ann['iscrowd'] == 0 and ann['category_id'] in (1, 2, 3, 4)
                assert isinstance(ann['segmentation'], list) and len(ann['segmentation'][0]) >= 6
                mask = coco.annToMask(ann)
                # The stored area is the polygon's exact area; its rasterisation differs by a boundary effect.
                assert abs(int(mask.sum()) - ann['area']) <= 0.08 * ann['area'] + 4
                x, y, w, h = ann['bbox']
                ys, xs = np.nonzero(mask)
                assert xs.min() >= np.floor(x) and xs.max() <= np.ceil(x + w)
                assert ys.min() >= np.floor(y) and ys.max() <= np.ceil(y + h)
                assert x >= 0 and y >= 0 and x + w <= img_info['width'] and y + h <= img_info['height']
                # Learnable: the object stands out from a thin ring of background around it.
                inner = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
                ring = (cv2.dilate(mask, np.ones((7, 7), np.uint8)) - cv2.dilate(mask, np.ones((3, 3), np.uint8)))
                inside = img[inner].astype(float).mean(0)
                outside = img[ring.astype(bool)].astype(float).mean(0)
                assert np.linalg.norm(inside - outside) > 40


def test_coco_masks_do_not_overlap(coco_root):
    coco = COCO(osp.join(coco_root, 'annotations', 'instances_train.json'))
    for img_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        assert np.sum(masks, axis=0).max() <= 1


def test_coco_classes_and_sizes(coco_root):
    with open(osp.join(coco_root, 'annotations', 'instances_train.json')) as f:
        anns = json.load(f)['annotations']
    assert {a['category_id'] for a in anns} == {1, 2, 3, 4}
    areas = np.array([a['area'] for a in anns])
    small, large = areas < 32**2, areas >= 96**2
    for bucket in (small, ~small & ~large, large):
        assert bucket.sum() >= 0.1 * len(areas)
    # Every class has objects of every size, so AP per size bucket is not one class's AP.
    for cat in (1, 2, 3, 4):
        cat_areas = areas[[a['category_id'] == cat for a in anns]]
        assert cat_areas.min() < 32**2 and cat_areas.max() >= 96**2


def test_ade_layout_and_labels(ade_root):
    k = len(ADE_CLASSES)
    seen = set()
    for split, num in (('training', ADE_KW['num_train']), ('validation', ADE_KW['num_val'])):
        images = sorted(os.listdir(osp.join(ade_root, 'images', split)))
        labels = sorted(os.listdir(osp.join(ade_root, 'annotations', split)))
        assert len(images) == len(labels) == num
        assert [osp.splitext(n)[0] for n in images] == [osp.splitext(n)[0] for n in labels]
        assert all(n.endswith('.jpg') for n in images) and all(n.endswith('.png') for n in labels)
        for img_name, label_name in zip(images, labels):
            img = Image.open(osp.join(ade_root, 'images', split, img_name))
            label = Image.open(osp.join(ade_root, 'annotations', split, label_name))
            assert img.mode == 'RGB' and label.mode == 'L' and img.size == label.size == (256, 256)
            values = set(np.unique(np.asarray(label)).tolist())
            assert values <= set(range(k + 1))
            seen |= values
    assert seen == set(range(k + 1))  # every class and the ignored "other" region occur


def test_ensure_keeps_existing_and_publish_tolerates_races(tmp_path):
    kw = dict(num_train=2, num_val=1, image_size=(64, 64))
    root = str(tmp_path / 'coco')
    generate_demo_coco(root, seed=0, **kw)
    before = _read_tree(root)
    # ensure does not regenerate an existing set.
    assert ensure_demo_coco(root, seed=0, **kw) == root
    # A second writer that finishes later (here: other seed) keeps the published set and cleans up after itself.
    generate_demo_coco(root, seed=1, **kw)
    assert _read_tree(root) == before
    assert os.listdir(tmp_path) == ['coco']
    # overwrite replaces it.
    generate_demo_coco(root, seed=1, overwrite=True, **kw)
    assert _read_tree(root) != before
    assert os.listdir(tmp_path) == ['coco']

    # An empty placeholder directory is filled; a foreign non-empty directory is left alone.
    empty = tmp_path / 'empty'
    empty.mkdir()
    ensure_demo_ade20k(str(empty), **kw)
    assert (empty / 'demo_meta.json').is_file()
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    with pytest.raises(RuntimeError, match='not a complete demo dataset'):
        ensure_demo_ade20k(str(foreign), **kw)
    assert os.listdir(foreign) == ['keep.txt']


def test_demo_coco_dataset_builds_and_generates(tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    root = tmp_path / 'coco_auto'
    assert not root.exists()
    dataset = DATASETS.build(
        dict(
            type='mmlightvit.DemoCocoDataset',
            data_root=str(root),
            demo_cfg=dict(num_train=3, num_val=4),
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/'),
            test_mode=True,
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='PackDetInputs')
            ]))
    assert (root / 'annotations' / 'instances_val.json').is_file()
    assert dataset.metainfo['classes'] == COCO_CLASSES
    assert len(dataset) == 4
    coco = COCO(str(root / 'annotations' / 'instances_val.json'))
    for i in range(len(dataset)):
        sample = dataset[i]
        img_id = sample['data_samples'].img_id
        num = len(coco.getAnnIds(imgIds=img_id))
        gt = sample['data_samples'].gt_instances
        assert len(gt) == num and gt.masks.masks.shape == (num, 256, 256)
        assert sample['inputs'].shape == (3, 256, 256)
        assert set(gt.labels.tolist()) <= {0, 1, 2, 3}


def test_demo_ade20k_dataset_builds_and_generates(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    root = tmp_path / 'ade_auto'
    dataset = DATASETS.build(
        dict(
            type='mmlightvit.DemoADE20KDataset',
            data_root=str(root),
            demo_cfg=dict(num_train=2, num_val=3),
            data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')
            ]))
    assert dataset.metainfo['classes'] == ADE_CLASSES
    assert dataset.reduce_zero_label
    assert len(dataset) == 3
    for i in range(len(dataset)):
        sample = dataset[i]
        seg = sample['data_samples'].gt_sem_seg.data.numpy()[0]
        raw = np.asarray(Image.open(sample['data_samples'].seg_map_path))
        # reduce_zero_label: 0 ("other") -> 255 (ignored), class value v -> v - 1.
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        assert np.array_equal(seg, expected)
        assert sample['inputs'].shape == (3, 256, 256)


def test_imagenet_layout_and_labels(tmp_path):
    """mmpretrain's ImageNet layout: class folders, and meta/{split}.txt with '<class>/<file> <label>' lines whose
    label is the folder's class index; classes balanced."""
    root = generate_demo_imagenet(str(tmp_path / 'imagenet'), num_train=8, num_val=4, image_size=(48, 64))
    for split, num in (('train', 8), ('val', 4)):
        with open(osp.join(root, 'meta', f'{split}.txt')) as f:
            lines = [line.split() for line in f.read().splitlines()]
        assert len(lines) == num
        for rel, label in lines:
            assert rel.split('/')[0] == IMAGENET_CLASSES[int(label)]
            assert Image.open(osp.join(root, split, rel)).size == (64, 48)
        assert sorted(int(label) for _, label in lines) == sorted(list(range(4)) * (num // 4))


def test_demo_imagenet_dataset_builds_and_generates(tmp_path):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    init_default_scope('mmpretrain')
    root = tmp_path / 'imagenet_auto'
    dataset = DATASETS.build(
        dict(type='mmlightvit.DemoImageNetDataset', data_root=str(root), split='val',
             demo_cfg=dict(num_train=4, num_val=8),
             pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
    assert (root / 'meta' / 'val.txt').is_file()
    assert dataset.metainfo['classes'] == IMAGENET_CLASSES
    assert len(dataset) == 8
    assert [int(dataset[i]['data_samples'].gt_label) for i in range(8)] == [0, 1, 2, 3] * 2
    assert dataset[0]['inputs'].shape == (3, 64, 64)
