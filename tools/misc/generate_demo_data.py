"""Generate the synthetic demo datasets (COCO-style shapes, ADE20K-style scenes, ImageNet-style shape images, and a
"custom" COCO-format set laid out as a user's own export) and summarise them.

    python tools/misc/generate_demo_data.py [--coco-root data/demo/coco] [--ade-root data/demo/ade20k]
                                            [--imagenet-root data/demo/imagenet] [--custom-root data/demo/custom]
                                            [--only coco ade imagenet custom] [--seed 0] [--force]

An existing complete set is kept (and only summarised) unless --force, which regenerates a set that this
generator wrote there and nothing else: a directory holding any other file is never removed. The dataset classes
``mmlightvit.DemoCocoDataset`` / ``mmlightvit.DemoADE20KDataset`` / ``mmlightvit.DemoImageNetDataset`` generate the
same data on first use, so running this script is optional for them. The custom set (other class names and
category ids, imbalanced classes, non-square and grayscale images) stands for a user's own data, which no dataset
class generates: the fine-tuning guide in tools/README.md starts by writing it with ``--only custom``.
"""
import argparse
import collections
import glob
import json
import os.path as osp
import time

import cv2
import numpy as np

from mmlightvit.datasets.demo_data import (ADE_CLASSES, IMAGENET_CLASSES, META_FILE, ensure_custom_coco,
                                           ensure_demo_ade20k, ensure_demo_coco, ensure_demo_imagenet,
                                           generate_custom_coco, generate_demo_ade20k, generate_demo_coco,
                                           generate_demo_imagenet)


def summarise_coco_files(pattern: str) -> None:
    for split in ('train', 'val'):
        with open(pattern.format(split=split)) as f:
            coco = json.load(f)
        names = {c['id']: c['name'] for c in coco['categories']}
        per_class = collections.Counter(names[a['category_id']] for a in coco['annotations'])
        areas = np.array([a['area'] for a in coco['annotations']])
        sizes = dict(small=int((areas < 32**2).sum()),
                     medium=int(((areas >= 32**2) & (areas < 96**2)).sum()),
                     large=int((areas >= 96**2).sum()))
        shapes = collections.Counter((image['height'], image['width']) for image in coco['images'])
        print(f'  {split}: {len(coco["images"])} images (H x W: '
              f'{", ".join(f"{h}x{w} {n}" for (h, w), n in sorted(shapes.items()))}), {len(coco["annotations"])} '
              f'annotations; per class {dict((n, per_class[n]) for n in names.values())}; by COCO size {sizes}')


def summarise_coco(root: str) -> None:
    summarise_coco_files(osp.join(root, 'annotations', 'instances_{split}.json'))


def summarise_custom(root: str) -> None:
    summarise_coco_files(osp.join(root, 'annotations', '{split}.json'))


def summarise_ade(root: str) -> None:
    names = ('other', ) + ADE_CLASSES
    for split in ('training', 'validation'):
        labels = sorted(glob.glob(osp.join(root, 'annotations', split, '*.png')))
        images = glob.glob(osp.join(root, 'images', split, '*.jpg'))
        counts = np.zeros(len(names), np.int64)
        present = np.zeros(len(names), np.int64)
        for path in labels:
            hist = np.bincount(cv2.imread(path, cv2.IMREAD_UNCHANGED).ravel(), minlength=len(names))
            counts += hist[:len(names)]
            present += hist[:len(names)] > 0
        frac = counts / max(counts.sum(), 1)
        per_class = ', '.join(f'{n} {p} img/{f:.1%}' for n, p, f in zip(names, present, frac))
        print(f'  {split}: {len(images)} images, {len(labels)} label maps; per class (images / pixels): {per_class}')


def summarise_imagenet(root: str) -> None:
    for split in ('train', 'val'):
        with open(osp.join(root, 'meta', f'{split}.txt')) as f:
            labels = collections.Counter(int(line.split()[1]) for line in f if line.strip())
        print(f'  {split}: {sum(labels.values())} images; per class '
              f'{dict((name, labels[i]) for i, name in enumerate(IMAGENET_CLASSES))}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--coco-root', default='data/demo/coco')
    parser.add_argument('--ade-root', default='data/demo/ade20k')
    parser.add_argument('--imagenet-root', default='data/demo/imagenet')
    parser.add_argument('--custom-root', default='data/demo/custom')
    parser.add_argument('--only', nargs='+', choices=['coco', 'ade', 'imagenet', 'custom'],
                        help='generate these sets only (default: all)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true',
                        help='regenerate sets that this generator wrote (other directories are never removed)')
    args = parser.parse_args()

    for kind, name, root, generate, ensure, summarise in (
            ('coco', 'COCO-style demo set', args.coco_root, generate_demo_coco, ensure_demo_coco, summarise_coco),
            ('ade', 'ADE20K-style demo set', args.ade_root, generate_demo_ade20k, ensure_demo_ade20k, summarise_ade),
            ('imagenet', 'ImageNet-style demo set', args.imagenet_root, generate_demo_imagenet, ensure_demo_imagenet,
             summarise_imagenet),
            ('custom', 'custom COCO-format set', args.custom_root, generate_custom_coco, ensure_custom_coco,
             summarise_custom)):
        if args.only and kind not in args.only:
            continue
        start = time.time()
        existed = osp.isfile(osp.join(root, META_FILE))
        if args.force:
            generate(root, seed=args.seed, overwrite=True)
            action = 'generated'
        else:
            ensure(root, seed=args.seed)
            action = 'kept existing' if existed else 'generated'
        print(f'{name} in {root} ({action}, {time.time() - start:.1f} s):')
        summarise(root)


if __name__ == '__main__':
    main()
