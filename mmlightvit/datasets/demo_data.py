"""Small synthetic datasets that the project generates itself, so that demos and tests need no download.

* ``generate_demo_coco``: COCO-format instance segmentation of flat-coloured shapes (class = shape kind) on a
  mildly textured background, with object areas spread over COCO's small / medium / large buckets.
* ``generate_demo_ade20k``: ADE20K-format semantic segmentation (sky band, textured ground, shapes, and an
  ignored "other" region labelled 0, which mmseg maps to 255 under ``reduce_zero_label=True``).
* ``generate_demo_imagenet``: ImageNet-format classification (class folders and ``meta/{train,val}.txt``): one
  shape per image on the COCO set's background, class = shape kind, classes balanced.

All are deterministic: every image draws from its own ``np.random.default_rng([seed, split, index])``, so a
seed gives byte-identical files (for the same OpenCV build, whose JPEG/PNG encoders are deterministic) and
changing ``num_train`` does not change the validation images. All write into a temporary sibling directory and
rename it to ``root`` at the end, so a reader never sees a half-written set and concurrent writers (the ranks of
a distributed job) simply keep whichever copy was published first.

Generation uses numpy, cv2 and json only. The dataset classes at the end of this module derive from the
project's checked COCO and segmentation datasets (:mod:`mmlightvit.datasets.checked`) and from mmpretrain's
``ImageNet``, and generate the data on first use.
"""
import fnmatch
import json
import os
import os.path as osp
import shutil
import warnings
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mmlightvit.registry import DATASETS
from mmlightvit.utils.files import replace_folder_atomically

from .checked import CheckedSegDataset, CocoDataset, ImageNet

# Bump when the drawing code changes, so that a stale generated set can be recognised from its meta file.
DEMO_DATA_VERSION = 1
META_FILE = 'demo_meta.json'
GENERATOR = 'mmlightvit.datasets.demo_data'  # recorded in META_FILE: the mark of a set this module wrote

COCO_CLASSES = ('circle', 'rectangle', 'triangle', 'star')
COCO_PALETTE = [(220, 20, 60), (0, 120, 255), (0, 170, 30), (250, 170, 30)]

# Index 0 of the label PNGs is "other" (ignored); class i of ADE_CLASSES has label value i + 1.
ADE_CLASSES = ('sky', 'ground', 'circle', 'rectangle', 'triangle')
ADE_PALETTE = [(70, 130, 180), (107, 142, 35), (220, 20, 60), (0, 120, 255), (250, 170, 30)]

# COCO evaluation splits objects at areas 32**2 and 96**2. Areas are drawn log-uniformly from these ranges
# (kept clear of the thresholds, so the bucket of every object is unambiguous) with the given probabilities.
# 20**2 is the smallest area: a smaller object has no anchor of a standard Mask R-CNN with IoU above 0.3.
_COCO_AREA_BUCKETS = ((20**2, 30**2, 0.35), (36**2, 90**2, 0.40), (100**2, 128**2, 0.25))
_MARGIN = 2  # objects keep this many pixels from the image border and from each other


# --------------------------------------------------------------------------------------------------- shapes
def _unit_shape(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (N, 2) of a shape of the given kind centred at the origin, randomly rotated, not yet scaled."""
    if kind == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 'rectangle':
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        w, h = np.sqrt(aspect), 1 / np.sqrt(aspect)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    elif kind == 'triangle':
        t = np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 'star':
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    else:
        raise ValueError(f'unknown shape kind {kind!r}')
    # A circle is rotation invariant; rotating it anyway keeps the number of draws from rng the same per kind.
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T


def _polygon_area(pts: np.ndarray) -> float:
    """Shoelace area of a simple polygon."""
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _shape_with_area(kind: str, area: float, max_extent: Tuple[float, float],
                     rng: np.random.Generator) -> np.ndarray:
    """A shape of ``kind`` with the given area, shrunk if needed so that its box fits in ``max_extent`` (w, h)."""
    pts = _unit_shape(kind, rng)
    pts *= np.sqrt(area / _polygon_area(pts))
    extent = pts.max(0) - pts.min(0)
    shrink = min(1.0, max_extent[0] / extent[0], max_extent[1] / extent[1])
    return pts * shrink


def _to_cv_points(poly: np.ndarray) -> np.ndarray:
    """Polygon in COCO pixel coordinates -> int32 points for cv2 drawing with ``shift=4``.

    COCO coordinates put pixel corners at integers (pixel (i, j) covers [j, j+1) x [i, i+1)), cv2 puts pixel
    centres at integers; the half-pixel offset makes the drawn shape coincide with the annotated polygon.
    """
    return np.round((poly - 0.5) * 16).astype(np.int32)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, min_dist: float) -> Tuple[int, ...]:
    """A random RGB colour at least ``min_dist`` (Euclidean) away from the background colour."""
    for _ in range(100):
        colour = rng.integers(0, 256, size=3)
        if np.linalg.norm(colour - background) >= min_dist:
            break
    else:  # practically unreachable; the inverse colour is always far enough from the background
        colour = 255 - np.round(background).astype(int)
    return tuple(int(c) for c in colour)


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise of unit scale: a coarse random grid upsampled with bicubic interpolation."""
    coarse = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    up = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return up.reshape(shape[0], shape[1], channels)


def _add_noise_and_quantise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(img.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)


def _write_rgb(path: str, img_rgb: np.ndarray, quality: int = 90) -> None:
    ok = cv2.imwrite(path, cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f'cv2 could not write {path}')


def _write_json(path: str, obj) -> None:
    with open(path, 'w') as f:
        json.dump(obj, f)


# ------------------------------------------------------------------------------------------- atomic output
def _is_complete(root: str, markers: Sequence[str]) -> bool:
    return all(osp.isfile(osp.join(root, m)) for m in markers)


def _foreign_files(root: str, layout: Sequence[str]) -> List[str]:
    """Files under ``root`` that the generator does not write (``layout``: fnmatch patterns of relative paths)."""
    foreign = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = osp.relpath(osp.join(dirpath, name), root).replace(os.sep, '/')
            if not any(fnmatch.fnmatchcase(rel, pattern) for pattern in layout):
                foreign.append(rel)
    return sorted(foreign)


def _check_replaceable(root: str, kind: str, layout: Sequence[str]) -> None:
    """Raise unless ``root`` is a demo set of ``kind`` that this generator wrote, holding nothing else.

    ``overwrite`` replaces only such a directory: the meta file names this generator and every file is one the
    generator writes. Anything else may be someone's data, so it is never removed.
    """
    try:
        with open(osp.join(root, META_FILE)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get('generator') != GENERATOR or meta.get('kind') != kind:
        reason = f'it has no {META_FILE} written by {GENERATOR} for a {kind} set'
    else:
        foreign = _foreign_files(root, layout)
        if not foreign:
            return
        shown = ', '.join(foreign[:5]) + (f', ... ({len(foreign)} in all)' if len(foreign) > 5 else '')
        reason = f'it holds files the generator did not write: {shown}'
    raise RuntimeError(f'Refusing to replace {root}: {reason}. Only a demo dataset generated there is ever '
                       'removed (with overwrite / --force); choose another directory or clear it yourself.')


def _publish(tmp: str, root: str, kind: str, layout: Sequence[str], overwrite: bool) -> None:
    """Move the finished ``tmp`` directory to ``root`` in one rename (the ``publish`` step of
    :func:`~mmlightvit.utils.files.replace_folder_atomically`, which removes what is left of ``tmp``).

    If ``root`` already holds a complete set (another process published first) it is kept and ``tmp`` is
    dropped, unless ``overwrite``, which replaces a set this generator wrote and nothing else. An empty ``root``
    (e.g. created by hand) is replaced; a non-empty one that is not a complete set is left alone and reported,
    since it may hold someone's files.
    """
    root = osp.abspath(root)
    markers = [pattern for pattern in layout if not any(c in pattern for c in '*?[')]
    old = None
    if overwrite and osp.exists(root) and not (osp.isdir(root) and not os.listdir(root)):
        _check_replaceable(root, kind, layout)  # checked before generating too; the tree may have changed since
        old = f'{tmp}.old'
        os.rename(root, old)
    elif osp.isdir(root) and not os.listdir(root):
        try:
            os.rmdir(root)
        except OSError:  # another process removed it or already published into it
            pass
    try:
        os.replace(tmp, root)  # atomic; fails when root is a non-empty directory
    except OSError:
        if not _is_complete(root, markers):
            raise RuntimeError(f'{root} exists but is not a complete demo dataset (missing one of {markers}); '
                               'remove it or choose another directory') from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _generate_atomically(root: str, kind: str, layout: Sequence[str], overwrite: bool, write_fn) -> str:
    if overwrite and osp.isdir(root) and os.listdir(root):
        _check_replaceable(root, kind, layout)  # fail before spending time on generation
    replace_folder_atomically(root, write_fn, publish=partial(_publish, kind=kind, layout=layout, overwrite=overwrite))
    return root


def _warn_if_different(root: str, expected: dict) -> None:
    """Warn when an existing set was generated with other settings than the ones now asked for."""
    try:
        with open(osp.join(root, META_FILE)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return
    diff = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if diff:
        warnings.warn(f'demo dataset in {root} was generated with other settings (existing, requested): {diff}; '
                      'delete it or regenerate with --force to apply them')


def _meta(kind: str, seed: int, num_train: int, num_val: int, image_size: Tuple[int, int], classes) -> dict:
    return dict(generator=GENERATOR, kind=kind, version=DEMO_DATA_VERSION, seed=seed,
                num_train=num_train, num_val=num_val, image_size=list(image_size), classes=list(classes))


# ---------------------------------------------------------------------------------------------------- COCO
COCO_MARKERS = (META_FILE, 'annotations/instances_train.json', 'annotations/instances_val.json')
COCO_LAYOUT = COCO_MARKERS + ('train/??????.jpg', 'val/??????.jpg')  # every file generate_demo_coco writes
COCO_DEFAULTS = dict(num_train=400, num_val=50, image_size=(256, 256), seed=0)


def _coco_background(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Mildly textured background: a base colour, a linear gradient and low-frequency colour blobs."""
    base = rng.uniform(40, 215, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)) * rng.uniform(20, 60)
    img = base[None, None] + ramp[..., None] + 12 * _smooth_noise(rng, (h, w), 6, 3)
    return np.clip(img, 0, 255).round().astype(np.uint8), base


def _coco_image(rng: np.random.Generator, h: int, w: int, shapes: Sequence[str] = COCO_CLASSES,
                class_probs: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, List[dict]]:
    """One image and its objects (dicts with ``category_id``, the 1-based index into ``shapes``, and ``polygon``
    in COCO pixel coordinates). Classes are drawn uniformly, or with ``class_probs``."""
    img, bg = _coco_background(rng, h, w)
    num_objects = int(rng.integers(1, 6))
    lows, highs, probs = (np.array(v, dtype=float) for v in zip(*_COCO_AREA_BUCKETS))
    buckets = rng.choice(len(probs), size=num_objects, p=probs / probs.sum())
    areas = np.exp(rng.uniform(np.log(lows[buckets]), np.log(highs[buckets])))
    if class_probs is None:
        kinds = rng.integers(0, len(shapes), size=num_objects)
    else:
        kinds = rng.choice(len(shapes), size=num_objects, p=np.asarray(class_probs) / np.sum(class_probs))
    # Placing the largest objects first lets rejection sampling find room for all of them more often.
    order = np.argsort(-areas, kind='stable')

    occupied = np.zeros((h, w), np.uint8)  # placed objects grown by _MARGIN, to keep objects apart
    scratch = np.zeros((h, w), np.uint8)
    objects = []
    max_extent = (w - 2 * _MARGIN - 1, h - 2 * _MARGIN - 1)
    for i in order:
        kind = shapes[kinds[i]]
        shape = _shape_with_area(kind, areas[i], max_extent, rng)
        lo, hi = shape.min(0), shape.max(0)
        for _ in range(30):
            centre = rng.uniform([_MARGIN - lo[0], _MARGIN - lo[1]], [w - _MARGIN - hi[0], h - _MARGIN - hi[1]])
            poly = np.round(shape + centre, 2)
            # Slightly larger than the grown polygon, so everything drawn into scratch below lies inside it.
            x0, y0 = np.floor(poly.min(0)).astype(int) - _MARGIN - 2
            x1, y1 = np.ceil(poly.max(0)).astype(int) + _MARGIN + 3
            box = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
            scratch[box] = 0
            cv2.fillPoly(scratch, [_to_cv_points(poly)], 1, cv2.LINE_8, shift=4)
            cv2.polylines(scratch, [_to_cv_points(poly)], True, 1, 2 * _MARGIN + 1, cv2.LINE_8, shift=4)
            if not np.any(occupied[box] & scratch[box]):
                occupied[box] |= scratch[box]
                objects.append(dict(category_id=int(kinds[i]) + 1, polygon=poly))
                break
        # An object that finds no room after 30 tries is dropped; the first one always fits (empty image).

    for obj in objects:
        colour = _contrasting_colour(rng, bg, min_dist=120)
        cv2.fillPoly(img, [_to_cv_points(obj['polygon'])], colour, cv2.LINE_AA, shift=4)
    return _add_noise_and_quantise(img, rng, sigma=5.0), objects


def _coco_annotation(ann_id: int, image_id: int, category_id: int, poly: np.ndarray) -> dict:
    x0, y0 = poly.min(0)
    x1, y1 = poly.max(0)
    return dict(id=ann_id, image_id=image_id, category_id=category_id,
                segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]], area=round(_polygon_area(poly), 2),
                bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)], iscrowd=0)


def _coco_split(out_dir: str, split: str, split_code: int, num: int, image_size: Tuple[int, int],
                seed: int) -> dict:
    h, w = image_size
    os.makedirs(osp.join(out_dir, split))
    images, annotations = [], []
    for idx in range(num):
        rng = np.random.default_rng([seed, split_code, idx])
        img, objects = _coco_image(rng, h, w)
        image_id = idx + 1
        file_name = f'{image_id:06d}.jpg'
        _write_rgb(osp.join(out_dir, split, file_name), img)
        images.append(dict(id=image_id, file_name=file_name, height=h, width=w))
        annotations += [_coco_annotation(len(annotations) + i + 1, image_id, obj['category_id'], obj['polygon'])
                        for i, obj in enumerate(objects)]
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(COCO_CLASSES)]
    return dict(
        info=dict(description=f'mmlightvit demo shapes ({split})', version=str(DEMO_DATA_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=categories)


def generate_demo_coco(root: str,
                       num_train: int = COCO_DEFAULTS['num_train'],
                       num_val: int = COCO_DEFAULTS['num_val'],
                       image_size: Tuple[int, int] = COCO_DEFAULTS['image_size'],
                       seed: int = COCO_DEFAULTS['seed'],
                       overwrite: bool = False) -> str:
    """Write a COCO-format instance-segmentation set of shapes to ``root`` and return ``root``.

    Layout: ``annotations/instances_{train,val}.json``, ``{train,val}/*.jpg`` and ``demo_meta.json``.
    ``image_size`` is (H, W). If ``root`` already holds a complete set (e.g. another rank finished first), that
    set is kept unless ``overwrite``.
    """
    image_size = (int(image_size[0]), int(image_size[1]))

    def write(tmp: str) -> None:
        os.makedirs(osp.join(tmp, 'annotations'))
        for split, code, num in (('train', 0, num_train), ('val', 1, num_val)):
            coco = _coco_split(tmp, split, code, num, image_size, seed)
            _write_json(osp.join(tmp, 'annotations', f'instances_{split}.json'), coco)
        _write_json(osp.join(tmp, META_FILE), _meta('coco', seed, num_train, num_val, image_size, COCO_CLASSES))

    return _generate_atomically(root, 'coco', COCO_LAYOUT, overwrite, write)


def ensure_demo_coco(root: str, **kwargs) -> str:
    """Generate the COCO demo set into ``root`` unless it is already there; return ``root``."""
    if _is_complete(root, COCO_MARKERS):
        cfg = {**COCO_DEFAULTS, **kwargs}
        _warn_if_different(root, dict(seed=cfg['seed'], num_train=cfg['num_train'], num_val=cfg['num_val'],
                                      image_size=list(cfg['image_size'])))
        return root
    return generate_demo_coco(root, **kwargs)


# ----------------------------------------------------------------------------------- a "custom" COCO set
# What a user's own export tends to look like, unlike the demo set: other class names, category ids that are not
# 1..N, imbalanced classes, images of several non-square sizes, some of them grayscale. The classes are the demo
# set's shapes under other names, so a demo-trained detector has something to transfer.
CUSTOM_CLASSES = ('washer', 'plate', 'bracket')
CUSTOM_SHAPES = ('circle', 'rectangle', 'triangle')  # what each class looks like
CUSTOM_CATEGORY_IDS = (3, 7, 12)
CUSTOM_CLASS_PROBS = (0.6, 0.3, 0.1)
CUSTOM_IMAGE_SIZES = ((192, 256), (240, 320), (256, 192), (180, 300))  # (H, W), one per image in turn
CUSTOM_GRAY_EVERY = 6  # every 6th image is grayscale
CUSTOM_MARKERS = (META_FILE, 'annotations/train.json', 'annotations/val.json')
CUSTOM_LAYOUT = CUSTOM_MARKERS + ('images/train/part_????.jpg', 'images/val/part_????.jpg')
CUSTOM_DEFAULTS = dict(num_train=120, num_val=30, seed=0)


def _custom_split(out_dir: str, split: str, split_code: int, num: int, seed: int) -> dict:
    os.makedirs(osp.join(out_dir, 'images', split))
    images, annotations = [], []
    for idx in range(num):
        rng = np.random.default_rng([seed, split_code, idx])
        h, w = CUSTOM_IMAGE_SIZES[idx % len(CUSTOM_IMAGE_SIZES)]
        img, objects = _coco_image(rng, h, w, CUSTOM_SHAPES, CUSTOM_CLASS_PROBS)
        image_id = 1000 + idx
        file_name = f'part_{idx + 1:04d}.jpg'
        path = osp.join(out_dir, 'images', split, file_name)
        if idx % CUSTOM_GRAY_EVERY == CUSTOM_GRAY_EVERY - 1:
            if not cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise OSError(f'cv2 could not write {path}')
        else:
            _write_rgb(path, img)
        images.append(dict(id=image_id, file_name=file_name, height=h, width=w))
        annotations += [
            _coco_annotation(len(annotations) + i + 1, image_id, CUSTOM_CATEGORY_IDS[obj['category_id'] - 1],
                             obj['polygon']) for i, obj in enumerate(objects)]
    categories = [dict(id=i, name=name, supercategory='part') for i, name in zip(CUSTOM_CATEGORY_IDS, CUSTOM_CLASSES)]
    return dict(images=images, annotations=annotations, categories=categories)


def generate_custom_coco(root: str,
                         num_train: int = CUSTOM_DEFAULTS['num_train'],
                         num_val: int = CUSTOM_DEFAULTS['num_val'],
                         seed: int = CUSTOM_DEFAULTS['seed'],
                         overwrite: bool = False) -> str:
    """Write a COCO-format instance-segmentation set laid out as a user's own data often is
    (``images/{train,val}/*.jpg``, ``annotations/{train,val}.json``) to ``root`` and return ``root``; see
    ``CUSTOM_*`` for how it differs from the demo set. An existing complete set is kept unless ``overwrite``."""

    def write(tmp: str) -> None:
        os.makedirs(osp.join(tmp, 'annotations'))
        for split, code, num in (('train', 300, num_train), ('val', 301, num_val)):
            _write_json(osp.join(tmp, 'annotations', f'{split}.json'), _custom_split(tmp, split, code, num, seed))
        _write_json(osp.join(tmp, META_FILE),
                    _meta('custom-coco', seed, num_train, num_val, CUSTOM_IMAGE_SIZES, CUSTOM_CLASSES))

    return _generate_atomically(root, 'custom-coco', CUSTOM_LAYOUT, overwrite, write)


def ensure_custom_coco(root: str, **kwargs) -> str:
    """Generate the custom COCO-format set into ``root`` unless it is already there; return ``root``."""
    if _is_complete(root, CUSTOM_MARKERS):
        cfg = {**CUSTOM_DEFAULTS, **kwargs}
        _warn_if_different(root, dict(seed=cfg['seed'], num_train=cfg['num_train'], num_val=cfg['num_val']))
        return root
    return generate_custom_coco(root, **kwargs)


# -------------------------------------------------------------------------------------------------- ADE20K
ADE_MARKERS = (META_FILE, )  # the whole tree appears in one rename, so the meta file alone marks completeness
ADE_LAYOUT = ADE_MARKERS + (  # every file generate_demo_ade20k writes
    'images/training/demo_training_??????.jpg', 'images/validation/demo_validation_??????.jpg',
    'annotations/training/demo_training_??????.png', 'annotations/validation/demo_validation_??????.png')
ADE_DEFAULTS = dict(num_train=400, num_val=50, image_size=(256, 256), seed=0)
_ADE_SHAPES = ('circle', 'rectangle', 'triangle')


def _ade_image(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """One RGB image and its label map (0 = other, i + 1 = ADE_CLASSES[i])."""
    label = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # Horizon: a gently waving line; sky above, ground below.
    horizon = (rng.uniform(0.3, 0.65) * h
               + rng.uniform(3, 12) * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * xx[0] / w + rng.uniform(0, 6.3)))
    is_sky = yy < horizon[None, :]

    # Sky: smooth vertical gradient from a deep blue at the top to a paler tone at the horizon, no texture.
    top = rng.uniform([20, 60, 150], [80, 130, 230]).astype(np.float32)
    bottom = np.minimum(top + rng.uniform([60, 60, 10], [140, 110, 40]), 255).astype(np.float32)
    frac = np.clip(yy / np.maximum(horizon[None, :], 1), 0, 1)[..., None]
    sky = top * (1 - frac) + bottom * frac

    # Ground: green or brown with strong mid- and high-frequency texture.
    ground_base = (rng.uniform([50, 100, 30], [110, 170, 80]) if rng.random() < 0.5 else
                   rng.uniform([110, 80, 40], [170, 120, 80])).astype(np.float32)
    ground = (ground_base + 18 * _smooth_noise(rng, (h, w), max(h // 8, 2), 1)
              + 10 * rng.standard_normal((h, w, 1), dtype=np.float32))

    img = np.where(is_sky[..., None], sky, ground)
    label[is_sky] = ADE_CLASSES.index('sky') + 1
    label[~is_sky] = ADE_CLASSES.index('ground') + 1
    img = np.clip(img, 0, 255).round().astype(np.uint8)

    # "Other" (label 0, ignored in training and evaluation): an irregular checkered blob in some images, like
    # the unlabelled stuff of real ADE20K.
    if rng.random() < 0.5:
        n = int(rng.integers(6, 11))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))  # sorted, so the polygon does not cross itself
        radius = rng.uniform(0.08, 0.2) * min(h, w) * rng.uniform(0.7, 1.3, n)
        centre = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
        blob = centre + np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)
        cell = int(rng.integers(4, 9))
        checker = ((xx // cell + yy // cell) % 2).astype(bool)
        c0, c1 = rng.integers(0, 256, size=(2, 3))
        pattern = np.where(checker[..., None], c0, c1).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [_to_cv_points(blob)], 1, cv2.LINE_8, shift=4)
        img[mask > 0] = pattern[mask > 0]
        label[mask > 0] = 0

    # Shapes, painted in order (a later one covers an earlier one in image and label alike). The image and the
    # label are drawn with the same call without anti-aliasing, so their boundaries coincide exactly.
    # 2-5 shapes of 20**2 to 90**2 pixels give each shape class about 4% of all pixels (sky and ground ~45% each).
    for _ in range(int(rng.integers(2, 6))):
        kind = _ADE_SHAPES[int(rng.integers(0, len(_ADE_SHAPES)))]
        area = np.exp(rng.uniform(np.log(20**2), np.log(90**2)))
        shape = _shape_with_area(kind, area, (w - 3, h - 3), rng)  # 1 px of slack for the centre
        lo, hi = shape.min(0), shape.max(0)
        poly = shape + rng.uniform([1 - lo[0], 1 - lo[1]], [w - 1 - hi[0], h - 1 - hi[1]])
        local = img[int(np.clip(poly[:, 1].mean(), 0, h - 1)), int(np.clip(poly[:, 0].mean(), 0, w - 1))]
        colour = _contrasting_colour(rng, local.astype(float), min_dist=120)
        pts = _to_cv_points(poly)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_8, shift=4)
        cv2.fillPoly(label, [pts], ADE_CLASSES.index(kind) + 1, cv2.LINE_8, shift=4)

    return _add_noise_and_quantise(img, rng, sigma=4.0), label


def generate_demo_ade20k(root: str,
                         num_train: int = ADE_DEFAULTS['num_train'],
                         num_val: int = ADE_DEFAULTS['num_val'],
                         image_size: Tuple[int, int] = ADE_DEFAULTS['image_size'],
                         seed: int = ADE_DEFAULTS['seed'],
                         overwrite: bool = False) -> str:
    """Write an ADE20K-format semantic-segmentation set to ``root`` and return ``root``.

    Layout as mmseg's ADE20K: ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/
    *.png`` (same basenames; single-channel uint8 labels, 0 = other, 1..K = ``ADE_CLASSES``), plus
    ``demo_meta.json``. ``image_size`` is (H, W). An existing complete set is kept unless ``overwrite``.
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    h, w = image_size

    def write(tmp: str) -> None:
        for split, code, num in (('training', 0, num_train), ('validation', 1, num_val)):
            img_dir = osp.join(tmp, 'images', split)
            ann_dir = osp.join(tmp, 'annotations', split)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            for idx in range(num):
                rng = np.random.default_rng([seed, 100 + code, idx])
                img, label = _ade_image(rng, h, w)
                name = f'demo_{split}_{idx + 1:06d}'
                _write_rgb(osp.join(img_dir, name + '.jpg'), img)
                if not cv2.imwrite(osp.join(ann_dir, name + '.png'), label):
                    raise OSError(f'cv2 could not write {name}.png')
        _write_json(osp.join(tmp, META_FILE), _meta('ade20k', seed, num_train, num_val, image_size, ADE_CLASSES))

    return _generate_atomically(root, 'ade20k', ADE_LAYOUT, overwrite, write)


def ensure_demo_ade20k(root: str, **kwargs) -> str:
    """Generate the ADE20K demo set into ``root`` unless it is already there; return ``root``."""
    if _is_complete(root, ADE_MARKERS):
        cfg = {**ADE_DEFAULTS, **kwargs}
        _warn_if_different(root, dict(seed=cfg['seed'], num_train=cfg['num_train'], num_val=cfg['num_val'],
                                      image_size=list(cfg['image_size'])))
        return root
    return generate_demo_ade20k(root, **kwargs)


# ------------------------------------------------------------------------------------------------ ImageNet
IMAGENET_CLASSES = COCO_CLASSES
IMAGENET_MARKERS = (META_FILE, 'meta/train.txt', 'meta/val.txt')
IMAGENET_LAYOUT = IMAGENET_MARKERS + tuple(  # every file generate_demo_imagenet writes
    f'{split}/{name}/demo_{split}_??????.jpg' for split in ('train', 'val') for name in IMAGENET_CLASSES)
IMAGENET_DEFAULTS = dict(num_train=2000, num_val=200, image_size=(64, 64), seed=0)


def _imagenet_image(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """One image showing a shape of class ``label`` covering 8-35% of the image, anywhere it fits."""
    img, bg = _coco_background(rng, h, w)
    area = np.exp(rng.uniform(np.log(0.08), np.log(0.35))) * h * w
    shape = _shape_with_area(IMAGENET_CLASSES[label], area, (w - 2 * _MARGIN - 1, h - 2 * _MARGIN - 1), rng)
    lo, hi = shape.min(0), shape.max(0)
    poly = shape + rng.uniform([_MARGIN - lo[0], _MARGIN - lo[1]], [w - _MARGIN - hi[0], h - _MARGIN - hi[1]])
    cv2.fillPoly(img, [_to_cv_points(poly)], _contrasting_colour(rng, bg, min_dist=120), cv2.LINE_AA, shift=4)
    return _add_noise_and_quantise(img, rng, sigma=5.0)


def generate_demo_imagenet(root: str,
                           num_train: int = IMAGENET_DEFAULTS['num_train'],
                           num_val: int = IMAGENET_DEFAULTS['num_val'],
                           image_size: Tuple[int, int] = IMAGENET_DEFAULTS['image_size'],
                           seed: int = IMAGENET_DEFAULTS['seed'],
                           overwrite: bool = False) -> str:
    """Write an ImageNet-format classification set of shapes to ``root`` and return ``root``.

    Layout as mmpretrain's ``ImageNet`` reads it: ``{train,val}/<class>/*.jpg`` and ``meta/{train,val}.txt``
    (``<class>/<file> <label>`` per line), plus ``demo_meta.json``. Image ``i`` of a split has label ``i % 4``.
    ``image_size`` is (H, W). An existing complete set is kept unless ``overwrite``.
    """
    image_size = (int(image_size[0]), int(image_size[1]))

    def write(tmp: str) -> None:
        os.makedirs(osp.join(tmp, 'meta'))
        for split, code, num in (('train', 200, num_train), ('val', 201, num_val)):
            for name in IMAGENET_CLASSES:
                os.makedirs(osp.join(tmp, split, name))
            lines = []
            for idx in range(num):
                label = idx % len(IMAGENET_CLASSES)
                img = _imagenet_image(np.random.default_rng([seed, code, idx]), label, *image_size)
                rel = f'{IMAGENET_CLASSES[label]}/demo_{split}_{idx + 1:06d}.jpg'
                _write_rgb(osp.join(tmp, split, rel), img)
                lines.append(f'{rel} {label}\n')
            with open(osp.join(tmp, 'meta', f'{split}.txt'), 'w') as f:
                f.writelines(lines)
        _write_json(osp.join(tmp, META_FILE),
                    _meta('imagenet', seed, num_train, num_val, image_size, IMAGENET_CLASSES))

    return _generate_atomically(root, 'imagenet', IMAGENET_LAYOUT, overwrite, write)


def ensure_demo_imagenet(root: str, **kwargs) -> str:
    """Generate the ImageNet-style demo set into ``root`` unless it is already there; return ``root``."""
    if _is_complete(root, IMAGENET_MARKERS):
        cfg = {**IMAGENET_DEFAULTS, **kwargs}
        _warn_if_different(root, dict(seed=cfg['seed'], num_train=cfg['num_train'], num_val=cfg['num_val'],
                                      image_size=list(cfg['image_size'])))
        return root
    return generate_demo_imagenet(root, **kwargs)


# ------------------------------------------------------------------------------------------ dataset classes
@DATASETS.register_module()
class DemoCocoDataset(CocoDataset):
    """The project's ``CocoDataset`` over the generated shapes set; generates it into ``data_root`` when missing.

    Args:
        data_root: root of the set (generated there if absent).
        demo_cfg: keyword arguments of ``generate_demo_coco`` (``num_train``, ``num_val``, ``image_size``,
            ``seed``) used when the set has to be generated.
        *args, **kwargs: passed to ``CocoDataset`` (``ann_file``, ``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = dict(classes=COCO_CLASSES, palette=COCO_PALETTE)

    def __init__(self, *args, data_root: str = 'data/demo/coco', demo_cfg: Optional[Dict] = None, **kwargs):
        ensure_demo_coco(data_root, **(demo_cfg or {}))
        super().__init__(*args, data_root=data_root, **kwargs)


@DATASETS.register_module()
class DemoADE20KDataset(CheckedSegDataset):
    """mmseg segmentation dataset over the generated ADE20K-style set; generates it into ``data_root`` when missing.

    Label 0 ("other") becomes the ignore index through ``reduce_zero_label=True``, as for ADE20K.

    Args:
        data_root: root of the set (generated there if absent).
        demo_cfg: keyword arguments of ``generate_demo_ade20k`` used when the set has to be generated.
        *args, **kwargs: passed to ``BaseSegDataset`` (``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = dict(classes=ADE_CLASSES, palette=ADE_PALETTE)

    def __init__(self,
                 *args,
                 data_root: str = 'data/demo/ade20k',
                 demo_cfg: Optional[Dict] = None,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True,
                 **kwargs):
        ensure_demo_ade20k(data_root, **(demo_cfg or {}))
        super().__init__(
            *args,
            data_root=data_root,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)


@DATASETS.register_module()
class DemoImageNetDataset(ImageNet):
    """The project's ``ImageNet`` (mmpretrain's, checked) over the generated shapes classification set; generates it
    into ``data_root`` when missing.

    Args:
        data_root: root of the set (generated there if absent).
        split: ``'train'`` or ``'val'``.
        demo_cfg: keyword arguments of ``generate_demo_imagenet`` used when the set has to be generated.
        **kwargs: passed to ``ImageNet`` (``pipeline``, ...).
    """

    METAINFO = dict(classes=IMAGENET_CLASSES)

    def __init__(self, data_root: str = 'data/demo/imagenet', split: str = 'train',
                 demo_cfg: Optional[Dict] = None, **kwargs):
        ensure_demo_imagenet(data_root, **(demo_cfg or {}))
        super().__init__(data_root=data_root, split=split, **kwargs)
