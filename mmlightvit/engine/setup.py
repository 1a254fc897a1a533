"""What tools/train.py and tools/test.py share: reading the config, checking data, building the Runner."""
import os.path as osp
import re
from typing import Iterator, Optional, Tuple

import torch
from mmengine.config import Config
import mmengine.registry
from mmengine.registry import RUNNERS, Registry
from mmengine.runner import Runner

from .dist import setup_cpu_distributed

DATA_HELP = {
    'coco': ('COCO-2017: download train2017, val2017 and annotations_trainval2017 from https://cocodataset.org '
             'and arrange them as data/coco/{train2017,val2017,annotations}.'),
    'ade': ('ADE20K: download ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu and unzip it to '
            'data/ade/ADEChallengeData2016/{images,annotations}.'),
}
DEMO_HELP = ('To try the same model on small generated data instead, use the matching *_demo.py config (or '
             "inherit configs/_base_/datasets/coco_instance_demo.py / ade20k_demo.py); "
             "point at another copy with --cfg-options {key}.data_root=PATH.")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset named by the config is not on disk."""


def _datasets(node, key: str) -> Iterator[Tuple[str, dict]]:
    """Every dataset dict under a dataloader, through wrappers (RepeatDataset, ConcatDataset, ...)."""
    if isinstance(node, dict):
        if 'dataset' in node or 'datasets' in node:
            inner = node.get('dataset', node.get('datasets'))
            inner_key = f'{key}.dataset' if 'dataset' in node else f'{key}.datasets'
            yield from _datasets(inner, inner_key)
        else:
            yield key, node
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _datasets(item, f'{key}.{i}')


def check_dataset_paths(cfg: Config, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """Fail early, naming the missing path and how to get the data, when a dataset is not on disk.

    Demo datasets (types containing 'Demo') generate themselves and are skipped.
    """
    for loader in loaders:
        if not cfg.get(loader):
            continue
        for key, dataset in _datasets(cfg[loader].get('dataset'), f'{loader}.dataset'):
            if 'Demo' in str(dataset.get('type', '')):
                continue
            root = dataset.get('data_root') or ''
            paths = [('data_root', root)] if root else []
            ann_file = dataset.get('ann_file')
            if ann_file:
                paths.append(('ann_file', osp.join(root, ann_file)))
            for field, path in paths:
                if not osp.exists(path):
                    dataset_type = str(dataset.get('type', '')).lower()
                    kind = next((k for k in DATA_HELP if k in dataset_type), None)
                    help_text = DATA_HELP.get(kind, 'Put the dataset at that path.')
                    raise DatasetNotFoundError(
                        f'{key}.{field} points to {osp.abspath(path)!r}, which does not exist.\n'
                        f'{help_text}\n' + DEMO_HELP.format(key=key))


def load_config(config: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    setup_cpu_distributed(cfg, launcher)
    return cfg


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to mixed precision: mmengine's AmpOptimWrapper (float16 with dynamic loss
    scaling, or the config's ``dtype``) on a GPU; bfloat16 autocast without loss scaling on the CPU."""
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if torch.cuda.is_available():
        if wrapper_type not in ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper'):
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        return
    if wrapper_type not in ('OptimWrapper', 'mmlightvit.CPUBFloat16OptimWrapper'):
        raise RuntimeError(f'--amp on the CPU runs bfloat16 autocast through mmlightvit.CPUBFloat16OptimWrapper, '
                           f'which replaces a plain OptimWrapper; this config uses {wrapper_type!r}.')
    if not torch.backends.mkldnn.is_available():
        raise RuntimeError('--amp on the CPU needs bfloat16 kernels (oneDNN), which this torch build lacks; train '
                           'in float32 by dropping --amp, or on a GPU.')
    cfg.optim_wrapper.type = 'mmlightvit.CPUBFloat16OptimWrapper'
    for key in ('loss_scale', 'dtype'):  # float16 settings of a GPU recipe mean nothing here
        cfg.optim_wrapper.pop(key, None)
    if cfg.get('default_scope') == 'mmdet':
        # mmcv's CPU kernels (NMS, RoIAlign) take float32 only: the backbone and neck run in bfloat16, the heads not.
        cfg.optim_wrapper.setdefault('autocast_modules', ['backbone', 'neck'])


def explain_missing_type(err: KeyError) -> Optional[str]:
    """Turn mmengine's 'X is not in the S::model registry' into a list of every registry that was searched."""
    match = re.search(r'(\S+) is not in the (\S+)::(\S+) registry', str(err.args[0]) if err.args else '')
    if match is None:
        return None
    name, scope, kind = match.groups()
    roots = [r for r in vars(mmengine.registry).values()
             if isinstance(r, Registry) and r.name == kind and r.parent is None]
    if not roots:
        return None
    if '.' in name:  # a scope-prefixed name is looked up in that package's registry alone
        scope = name.split('.', 1)[0]
    registry = roots[0] if roots[0].scope == scope else roots[0]._children.get(scope, roots[0])
    searched = []
    while registry is not None:
        searched.append(f'{registry.scope}::{registry.name}')
        registry = registry.parent
    ours = roots[0]._children.get('mmlightvit')
    ours_text = ''
    if ours is not None:
        ours.import_from_location()
        ours_text = (f" This project's {kind} types are used with the prefix 'mmlightvit.', e.g. "
                     f"type='mmlightvit.{next(iter(sorted(ours.module_dict)), 'Name')}'; registered: "
                     f"{', '.join(sorted(ours.module_dict)) or 'none'}.")
    return (f'Unknown {kind} type {name!r}: looked in the registries {" -> ".join(searched)} (current scope '
            f'first, then its parents; sibling packages are only searched with a scope prefix such as '
            f"'mmdet.' or 'mmseg.').{ours_text}")


def build_runner(cfg: Config) -> Runner:
    try:
        if 'runner_type' in cfg:
            return RUNNERS.build(cfg)
        return Runner.from_cfg(cfg)
    except KeyError as err:
        explanation = explain_missing_type(err)
        if explanation is None:
            raise
        raise KeyError(explanation) from err
