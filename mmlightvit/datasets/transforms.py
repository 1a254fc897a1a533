"""Data transforms that official test pipelines use and mmdet / mmseg lack."""
import math
from typing import Tuple

import mmcv
from mmcv.transforms import BaseTransform

from mmlightvit.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AlignResize(BaseTransform):
    """Resize keeping the aspect ratio to fit ``scale``, then resize (not pad) each side up to a multiple of
    ``size_divisor``: the test-time resize of RepViT's official ADE20K code (mmseg 0.x ``AlignResize``).

    mmseg's ``Resize(scale, keep_ratio=True)`` stops after the first step (683x512 for a 500x375 image, where this
    gives 704x512), so the network sees other inputs than the released models were evaluated with. A label map
    (``gt_seg_map``, when loaded before this transform) is resized the same way with nearest interpolation.

    Args:
        scale: (long side, short side) bound, e.g. ``(2048, 512)``.
        size_divisor: each side of the output is a multiple of it.
        interpolation: for the image (mmcv's names).
    """

    def __init__(self, scale: Tuple[int, int], size_divisor: int = 32, interpolation: str = 'bilinear'):
        self.scale = tuple(scale)
        self.size_divisor = size_divisor
        self.interpolation = interpolation

    def _resize(self, img, interpolation: str):
        rescaled = mmcv.imrescale(img, self.scale, interpolation=interpolation)
        height, width = (math.ceil(n / self.size_divisor) * self.size_divisor for n in rescaled.shape[:2])
        return mmcv.imresize(rescaled, (width, height), interpolation=interpolation)

    def transform(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        img = self._resize(results['img'], self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale'] = img.shape[:2][::-1]
        results['scale_factor'] = (img.shape[1] / width, img.shape[0] / height)
        results['keep_ratio'] = True
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = self._resize(results['gt_seg_map'], 'nearest')
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, size_divisor={self.size_divisor}, '
                f'interpolation={self.interpolation!r})')
