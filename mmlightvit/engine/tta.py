"""Test-time augmentation that starts from the config's own test.

A multi-scale test resizes to the test scale times each ratio (mmseg 0.x's ``--aug-test``, the papers' protocol),
so one of its passes is the single-scale test itself. mmseg 1.x's dataset bases instead resize by each ratio times
the *raw* image size; a config whose test scale differs from the raw images (every ADE20K config, and the demo set
tested at 128 px) then averages passes of which none is the model's test, silently. A config sets
``tta_scale_ratios`` and :func:`tta_pipeline` derives the passes from its test pipeline; a hand-written
``tta_pipeline`` is checked to hold the single-scale pass.
"""
import copy
from typing import List, Optional, Sequence

from mmengine.config import Config

FLIPS = [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')]


def _type(step) -> str:
    return str(step.get('type', '')).split('.')[-1] if isinstance(step, dict) else ''


def _resize_index(pipeline: Sequence[dict]) -> Optional[int]:
    """Where the test pipeline resizes to its scale (mmseg / mmdet ``Resize``, ``AlignResize``, ...)."""
    return next((i for i, step in enumerate(pipeline) if _type(step).endswith('Resize') and 'scale' in step), None)


def scaled_tta_pipeline(test_pipeline: Sequence[dict], ratios: Sequence[float], flip: bool = True) -> List[dict]:
    """The test pipeline with its resize replaced by one pass per ratio (the test's resize at ``scale * ratio``,
    its other settings kept), each also flipped when ``flip``: mmengine's ``TestTimeAug`` over the steps that
    follow the loading."""
    index = _resize_index(test_pipeline)
    if index is None:
        raise ValueError('tta_scale_ratios needs a test pipeline that resizes to a scale (a Resize step with '
                         '`scale`); this one has none.')
    resize = test_pipeline[index]
    width, height = resize['scale']
    passes = [dict(copy.deepcopy(resize), scale=(int(width * ratio), int(height * ratio))) for ratio in ratios]
    groups = [passes] + ([copy.deepcopy(FLIPS)] if flip else [])
    groups += [[copy.deepcopy(step)] for step in test_pipeline[index + 1:]]
    return [copy.deepcopy(step) for step in test_pipeline[:index]] + [dict(type='TestTimeAug', transforms=groups)]


def _describe(step: dict) -> str:
    return ', '.join(f'{key}={step[key]}' for key in ('scale', 'scale_factor', 'keep_ratio') if key in step)


def check_tta_pipeline(test_pipeline: Sequence[dict], tta: Sequence[dict]) -> None:
    """Raise ValueError when no pass of ``tta`` repeats the single-scale test (same resize, no flip)."""
    index = _resize_index(test_pipeline)
    augment = next((step for step in tta if _type(step) == 'TestTimeAug'), None)
    if index is None or augment is None:
        return
    resize = test_pipeline[index]
    groups = augment['transforms']
    resizes = next((group for group in groups if any(_type(step).endswith('Resize') for step in group)), [])
    flips = next((group for group in groups if any(_type(step) == 'RandomFlip' for step in group)), None)
    same_scale = any(_type(step) == _type(resize) and tuple(step.get('scale') or ()) == tuple(resize['scale'])
                     and step.get('keep_ratio') == resize.get('keep_ratio') and 'scale_factor' not in step
                     for step in resizes)
    unflipped = flips is None or any(step.get('prob', 1.) == 0. for step in flips)
    if not (same_scale and unflipped):
        raise ValueError(
            f'tta_pipeline has no pass that repeats the single-scale test: the test pipeline resizes with '
            f'{_type(resize)}({_describe(resize)}), the TTA passes with '
            f'{"; ".join(f"{_type(s)}({_describe(s)})" for s in resizes) or "no resize"}'
            f'{"" if unflipped else ", every one flipped"} (scale_factor is relative to the raw image). Set '
            'tta_scale_ratios=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75] in the config to resize to the test scale times '
            'each ratio, or list the test scale (unflipped) among the tta_pipeline\'s resizes.')


def tta_pipeline(cfg: Config) -> List[dict]:
    """The test-time augmentation pipeline of ``cfg``: derived from its test pipeline when the config sets
    ``tta_scale_ratios``, else its ``tta_pipeline``; checked either way."""
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    ratios = cfg.get('tta_scale_ratios')
    pipeline = scaled_tta_pipeline(test_pipeline, ratios) if ratios else cfg.tta_pipeline
    check_tta_pipeline(test_pipeline, pipeline)
    return pipeline
