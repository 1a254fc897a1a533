"""mmdet's COCO, mmseg's ADE20K and PASCAL VOC and mmpretrain's ImageNet datasets with errors that name the file,
and no silent loss of annotations.

Used by the project's dataset configs (``type='mmlightvit.CocoDataset'`` / ``'mmlightvit.ADE20KDataset'`` /
``'mmlightvit.PascalVOCDataset'`` / ``'mmlightvit.ImageNet'``); they behave as mmdet's / mmseg's / mmpretrain's
classes in every other way.

* A malformed annotation JSON names the file (mmdet reports only ``line 1 column 180435``).
* An empty split (no images listed, or none left after filtering) names the split's files and the reason, instead
  of mmengine's ``need at least one array to concatenate``.
* A PASCAL VOC split whose list, images or label maps are missing names them and how to arrange VOC 2012 with the
  SBD augmentation set (mmseg only asserts).
* A sample that fails to load (a zero-byte or corrupt image, a missing label map) names the sample's files.
* COCO annotations that mmdet drops without a word (boxes of zero width or height or outside their image,
  unknown categories, polygons with fewer than 3 points) are counted and reported once per dataset.
"""
import collections
import logging
import os.path as osp
from typing import List

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.logging import print_log
from mmpretrain.datasets import ImageNet as MMPretrainImageNet
from mmseg.datasets import ADE20KDataset as MMSegADE20KDataset
from mmseg.datasets import BaseSegDataset
from mmseg.datasets import PascalVOCDataset as MMSegPascalVOCDataset

from mmlightvit.registry import DATASETS


class DatasetError(RuntimeError):
    """A dataset's files cannot be used as they are; the message names them."""


def _describe_file(path) -> str:
    if isinstance(path, str) and osp.isfile(path) and osp.getsize(path) == 0:
        return f'{path} (an empty, zero-byte file)'
    if isinstance(path, str) and not osp.exists(path):
        return f'{path} (does not exist)'
    return str(path)


class DatasetChecks:
    """Mixin for mmengine ``BaseDataset`` subclasses: clear errors for empty splits and samples that fail."""

    def _split_description(self) -> str:
        # BaseDataset has already joined data_root to ann_file and the prefixes
        prefix = ', '.join(f'{k}={v!r}' for k, v in (self.data_prefix or {}).items())
        ann = f'ann_file={self.ann_file!r}' if self.ann_file else ''
        return f'{type(self).__name__}({", ".join(part for part in (ann, prefix) if part)})'

    def filter_data(self) -> List[dict]:
        if not self.data_list:
            raise DatasetError(f'{self._split_description()} lists no samples: check that the annotation file and '
                               'the image / label folders are the ones for this split and are not empty.')
        data_list = super().filter_data()
        if not data_list:
            raise DatasetError(
                f'{self._split_description()}: all {len(self.data_list)} samples were filtered out '
                f'(filter_cfg={self.filter_cfg}); e.g. no image has a usable annotation.')
        return data_list

    def prepare_data(self, idx):
        try:
            return super().prepare_data(idx)
        except DatasetError:
            raise
        except Exception as err:
            info = self.get_data_info(idx)
            files = ', '.join(f'{key}={_describe_file(info[key])}' for key in ('img_path', 'seg_map_path')
                              if info.get(key))
            record = f'img_id={info["img_id"]}, ' if 'img_id' in info else ''
            raise DatasetError(f'{type(self).__name__}: sample {idx} ({record}{files}) could not be loaded: '
                               f'{type(err).__name__}: {err}') from err


@DATASETS.register_module()
class CocoDataset(DatasetChecks, MMDetCocoDataset):
    """mmdet's ``CocoDataset`` with the checks of :class:`DatasetChecks` and a report of dropped annotations."""

    def load_data_list(self) -> List[dict]:
        self._dropped = collections.defaultdict(list)  # reason -> annotation ids
        self._num_annotations = 0
        try:
            data_list = super().load_data_list()
        except ValueError as err:  # json.JSONDecodeError
            raise DatasetError(f'Annotation file {self.ann_file!r} is not valid JSON: {err}') from err
        except (KeyError, TypeError, AssertionError) as err:  # mmdet asserts unique annotation ids
            raise DatasetError(f'Annotation file {self.ann_file!r} is not in COCO format (images, annotations and '
                               f'categories with unique ids): {type(err).__name__}: {err}') from err
        self._report_dropped()
        return data_list

    def parse_data_info(self, raw_data_info: dict):
        img = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            self._num_annotations += 1
            reason = self._drop_reason(ann, img)
            if reason is not None:
                self._dropped[reason].append(ann.get('id'))
        return super().parse_data_info(raw_data_info)

    def _drop_reason(self, ann: dict, img: dict):
        """Why mmdet (parse_data_info, LoadAnnotations) leaves out an annotation that is not marked ignore."""
        if ann.get('ignore', False):
            return None
        x1, y1, w, h = ann['bbox']
        inter_w = max(0, min(x1 + w, img['width']) - max(x1, 0))
        inter_h = max(0, min(y1 + h, img['height']) - max(y1, 0))
        if inter_w * inter_h == 0 or ann.get('area', 0) <= 0 or w < 1 or h < 1:
            return 'boxes of zero width / height / area or outside their image'
        if ann['category_id'] not in self.cat_ids:
            return 'unknown category ids'
        polygons = ann.get('segmentation')
        if isinstance(polygons, list) and polygons and not any(
                len(p) >= 6 and len(p) % 2 == 0 for p in polygons):
            return 'polygons with fewer than 3 points (kept as ignored instances)'
        return None

    def _report_dropped(self) -> None:
        if not self._dropped:
            return
        total = sum(len(ids) for ids in self._dropped.values())
        parts = '; '.join(f'{len(ids)} {reason} (ids {", ".join(map(str, ids[:5]))}{", ..." if len(ids) > 5 else ""})'
                          for reason, ids in self._dropped.items())
        print_log(f'{self.ann_file}: {total} of {self._num_annotations} annotations are not used for training: '
                  f'{parts}.', logger='current', level=logging.WARNING)


@DATASETS.register_module()
class ADE20KDataset(DatasetChecks, MMSegADE20KDataset):
    """mmseg's ``ADE20KDataset`` with the checks of :class:`DatasetChecks`."""


@DATASETS.register_module()
class PascalVOCDataset(DatasetChecks, MMSegPascalVOCDataset):
    """mmseg's ``PascalVOCDataset`` with the checks of :class:`DatasetChecks`; a missing split list, image or
    label folder is named together with how to set up VOC 2012 and its SBD augmentation (``SegmentationClassAug``,
    ``aug.txt``)."""

    def load_data_list(self) -> List[dict]:
        # BaseDataset has joined data_root by now; mmseg would fail on the first missing one with a bare assert
        paths = [('ann_file', self.ann_file), ('img_path', self.data_prefix.get('img_path')),
                 ('seg_map_path', self.data_prefix.get('seg_map_path'))]
        missing = [f'{name}={path!r}' for name, path in paths if path and not osp.exists(path)]
        if missing:
            from mmlightvit.engine.setup import DATA_HELP  # the tools' missing-data help, kept in one place
            verb = 'does' if len(missing) == 1 else 'do'
            raise DatasetError(f'{type(self).__name__}: {", ".join(missing)} {verb} not exist.\n{DATA_HELP["voc"]}')
        return super().load_data_list()


@DATASETS.register_module()
class ImageNet(DatasetChecks, MMPretrainImageNet):
    """mmpretrain's ``ImageNet`` with the checks of :class:`DatasetChecks`."""


class CheckedSegDataset(DatasetChecks, BaseSegDataset):
    """mmseg's ``BaseSegDataset`` with the checks of :class:`DatasetChecks` (base of the demo ADE20K set)."""
