"""What tools/train.py and tools/test.py share: reading the config, checking data, building the Runner."""
import copy
import json
import logging
import os
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmlightvit.registry import build_or_explain
from mmlightvit.utils.checkpoint import install_safe_checkpoint_loading
from mmlightvit.utils.config import ConfigError, read_config

from .checkpointing import unwrap_model
from .reproducibility import SEEDED_SAMPLERS
from .dist import setup_cpu_distributed

DATA_HELP = {
    'coco': ('COCO-2017: download train2017, val2017 and annotations_trainval2017 from https://cocodataset.org '
             'and arrange them as data/coco/{train2017,val2017,annotations}.'),
    'ade': ('ADE20K: download ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu and unzip it to '
            'data/ade/ADEChallengeData2016/{images,annotations}.'),
    'voc': ('PASCAL VOC 2012 with the SBD augmentation set (10,582 training images): extract VOC 2012 '
            '(VOCtrainval_11-May-2012.tar, http://host.robots.ox.ac.uk/pascal/VOC/voc2012) to data/VOCdevkit/VOC2012 '
            'and SBD (benchmark.tgz, http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
            'semantic_contours/benchmark.tgz) with its benchmark_RELEASE folder renamed to data/VOCdevkit/VOCaug, then '
            "run mmseg's tools/dataset_converters/voc_aug.py data/VOCdevkit data/VOCdevkit/VOCaug (in mmseg's "
            'repository, or site-packages/mmseg/.mim/tools/): it writes data/VOCdevkit/VOC2012/SegmentationClassAug '
            "and ImageSets/Segmentation/aug.txt next to VOC's JPEGImages, SegmentationClass and "
            'ImageSets/Segmentation/{train,val}.txt.'),
    'imagenet': ('ImageNet-1k (ILSVRC 2012): download the training and validation images from https://image-net.org '
                 'and arrange them as mmpretrain reads them: data/imagenet/{train,val}/<class>/*.JPEG, with '
                 'data/imagenet/meta/{train,val}.txt listing "<class>/<file> <label>" per line (the validation '
                 'labels in the order of the class indices; see mmpretrain\'s dataset preparation guide).'),
}
DEMO_HELP = ('To try the same model on small generated data instead, use the matching *_demo.py config (or '
             'inherit configs/_base_/datasets/coco_instance_demo.py / ade20k_demo.py / imagenet_demo.py). A copy '
             'elsewhere: link it to the path above (ln -s /path/to/copy {path}), or pass --cfg-options '
             "{overrides} (the evaluators' annotation files follow the datasets).")


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
    datasets = [(key, dataset) for loader in loaders if cfg.get(loader)
                for key, dataset in _datasets(cfg[loader].get('dataset'), f'{loader}.dataset')]
    for key, dataset in datasets:
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
                overrides = ' '.join(f'{k}.data_root=PATH' for k, d in datasets if d.get('data_root'))
                raise DatasetNotFoundError(
                    f'{key}.{field} points to {osp.abspath(path)!r}, which does not exist.\n'
                    f'{help_text}\n' + DEMO_HELP.format(path=root or path, overrides=overrides))


def dataset_folders(cfg: Config) -> List[str]:
    """The folders that hold the config's datasets (each dataset's ``data_root``, else its image / annotation
    folders and annotation files): no tool writes into them."""
    folders = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if not cfg.get(loader):
            continue
        for _, dataset in _datasets(cfg[loader].get('dataset'), loader):
            root = dataset.get('data_root') or ''
            # a data_root at or above the working directory (e.g. '.') would forbid every output: take its parts
            if root and not (osp.abspath(os.getcwd()) + os.sep).startswith(osp.abspath(root).rstrip(os.sep) + os.sep):
                folders.append(root)
                continue
            prefixes = dataset.get('data_prefix') or {}
            paths = list(prefixes.values()) if isinstance(prefixes, dict) else [prefixes]
            paths.append(osp.dirname(dataset.get('ann_file') or ''))
            folders += [osp.join(root, path) for path in paths if isinstance(path, str) and path]
    return sorted({osp.abspath(folder) for folder in folders})


def _dataset_annotation_file(dataset: dict) -> Optional[str]:
    ann_file = dataset.get('ann_file')
    return osp.normpath(osp.join(dataset.get('data_root') or '', ann_file)) if ann_file else None


def align_evaluator_annotations(cfg: Config, cfg_options: Optional[dict] = None) -> None:
    """Make each evaluator's ``ann_file`` the annotation file of the dataset it evaluates.

    mmdet's COCO metrics read the ground truth from their own ``ann_file``; after ``--cfg-options
    test_dataloader.dataset.data_root=...`` it would still name the old copy and score the predictions against
    other annotations. An ``ann_file`` that differs from its dataset's is replaced (and the change logged),
    unless it was itself given in ``cfg_options``; then it is kept with a warning.
    """
    explicit = set(cfg_options or ())
    for loader, evaluator_key in (('val_dataloader', 'val_evaluator'), ('test_dataloader', 'test_evaluator')):
        if not cfg.get(loader) or not cfg.get(evaluator_key):
            continue
        datasets = list(_datasets(cfg[loader].get('dataset'), f'{loader}.dataset'))
        expected = _dataset_annotation_file(datasets[0][1]) if len(datasets) == 1 else None
        if expected is None:
            continue
        # a copy: configs often share one evaluator between val and test (test_evaluator = val_evaluator)
        evaluator = copy.deepcopy(cfg[evaluator_key])
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for index, metric in enumerate(metrics):
            ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
            if not ann_file or osp.normpath(ann_file) == expected:
                continue
            key = f'{evaluator_key}.ann_file' if metric is evaluator else f'{evaluator_key}.{index}.ann_file'
            if key in explicit:
                print_log(f'{key}={ann_file!r} (given) differs from the annotation file of the dataset it '
                          f'evaluates, {expected!r}.', logger='current', level=logging.WARNING)
                continue
            metric['ann_file'] = expected
            cfg[evaluator_key] = evaluator
            print_log(f'{key} follows {datasets[0][0]}: {expected!r} (the config named {ann_file!r}).',
                      logger='current', level=logging.WARNING)


def load_config(config: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    cfg = read_config(config, cfg_options)
    align_evaluator_annotations(cfg, cfg_options)
    take_classes_from_data(cfg)
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


def _hook_type(hook) -> str:
    return str(hook.get('type', '')) if isinstance(hook, dict) else type(hook).__name__


def prepare_run(cfg: Config, training: bool, allow_partial_load: bool = False) -> None:
    """Turn on what keeps a run from losing work or giving a wrong number silently (see the README's "Resume and
    checkpoint safety"): crash-safe checkpoints, strict checks of every loaded checkpoint, and for training the
    random generators in the checkpoints plus per-sample augmentation seeds (exact resume with any number of
    DataLoader workers). Settings the config already makes are kept. mmengine's checkpoint loaders become the
    project's weights-only ones (:func:`~mmlightvit.utils.install_safe_checkpoint_loading`).
    """
    install_safe_checkpoint_loading()
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if isinstance(checkpoint_hook, dict) and checkpoint_hook.get('type') in ('CheckpointHook',
                                                                             'mmengine.CheckpointHook'):
        checkpoint_hook.type = 'mmlightvit.AtomicCheckpointHook'
    custom_hooks = list(cfg.get('custom_hooks') or [])
    present = {_hook_type(hook).split('.')[-1] for hook in custom_hooks}
    if 'StrictLoadHook' not in present:
        custom_hooks.append(dict(type='mmlightvit.StrictLoadHook', allow_partial=allow_partial_load))
    if training and 'RNGStateHook' not in present:
        custom_hooks.append(dict(type='mmlightvit.RNGStateHook'))
    cfg.custom_hooks = custom_hooks
    if training and cfg.get('train_dataloader'):
        sampler = cfg.train_dataloader.get('sampler')
        sampler_type = str(sampler.get('type', '')) if isinstance(sampler, dict) else ''
        if sampler_type.replace('mmengine.', '') in SEEDED_SAMPLERS:
            sampler.type = SEEDED_SAMPLERS[sampler_type.replace('mmengine.', '')]


def check_feature_channels(model) -> None:
    """Compare the channels a backbone gives with what the neck (or, without one, the decode head) expects.

    Both are known once the model is built; a mismatch would otherwise surface at the first forward pass as a
    convolution's channel error. Only backbones that declare ``out_channels`` (this project's) are checked.
    """
    backbone = getattr(model, 'backbone', None)
    produced = list(getattr(backbone, 'out_channels', None) or [])
    if not produced:
        return
    if getattr(model, 'neck', None) is not None:
        name, consumer, indices = 'model.neck', model.neck, range(len(produced))
    elif getattr(model, 'decode_head', None) is not None:
        name, consumer = 'model.decode_head', model.decode_head
        in_index = getattr(consumer, 'in_index', list(range(len(produced))))
        indices = [in_index] if isinstance(in_index, int) else in_index
    else:
        return
    expected = getattr(consumer, 'in_channels', None)
    if not isinstance(expected, (list, tuple)) or any(i >= len(produced) for i in indices):
        return
    given = [produced[i] for i in indices]
    if list(expected) != given:
        out_indices = getattr(backbone, 'out_indices', None)
        raise ValueError(
            f'{name}.in_channels is {list(expected)}, but the backbone ({type(backbone).__name__}'
            f'{f", out_indices {tuple(out_indices)}" if out_indices is not None else ""}) gives {given}: set '
            f'{name}.in_channels={given} (or pick the backbone variant the neck was written for).')


class ClassCountError(ValueError):
    """A head's class count differs from its dataset's."""


def _class_count_owners(node, path: str) -> Iterator[Tuple[str, dict]]:
    """Every config dict with an int ``num_classes`` under ``node``, with its config path (the RPN is
    class-agnostic)."""
    if isinstance(node, dict):
        if isinstance(node.get('num_classes'), int):
            yield path, node
        for key, value in node.items():
            if key != 'rpn_head':
                yield from _class_count_owners(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            yield from _class_count_owners(item, f'{path}.{index}')


def class_counts(node, path: str) -> Iterator[Tuple[str, int]]:
    """Every ``num_classes`` setting under a model config, with its config path."""
    for owner_path, owner in _class_count_owners(node, path):
        yield f'{owner_path}.num_classes', owner['num_classes']


def dataset_classes(dataset: dict) -> Optional[tuple]:
    """The class names a dataset config will have: its ``metainfo.classes``, else its class's ``METAINFO`` (None
    when only the data tells: folder-per-class datasets, ``classes=None`` whose files are not there to read).
    Call within the config's default scope."""
    metainfo = dataset.get('metainfo') or {}
    if 'classes' in metainfo:
        return tuple(metainfo['classes']) if metainfo['classes'] else None
    classes = (getattr(_registered_class(dataset), 'METAINFO', None) or {}).get('classes')
    return tuple(classes) if classes else None


def _registered_class(dataset: dict):
    """The class a dataset config builds; None for an unknown type (the Runner reports it when it builds it)."""
    from mmengine.registry import DATASETS
    dataset_type = dataset.get('type')
    try:
        return DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    except KeyError:
        return None


def read_data_classes(dataset: dict) -> Optional[tuple]:
    """The class names that a dataset's files define: the categories of a COCO-format annotation file (in the
    file's order, which is mmdet's label order), the class folders of a folder-per-class image set (sorted, as
    mmpretrain orders them). None when the files are not there (the missing-data check names them). Call within
    the config's default scope."""
    from mmdet.datasets import CocoDataset
    from mmpretrain.datasets import CustomDataset
    cls = _registered_class(dataset)
    root = dataset.get('data_root') or ''
    if isinstance(cls, type) and issubclass(cls, CocoDataset):
        ann_file = osp.join(root, dataset.get('ann_file') or '')
        if not osp.isfile(ann_file):
            return None
        with open(ann_file) as f:
            try:
                categories = json.load(f).get('categories')
            except ValueError as err:
                raise ConfigError(f'{ann_file}: not valid JSON ({err}).') from err
        if not categories:
            raise ConfigError(f'{ann_file} lists no categories: give the class names in the config '
                              '(metainfo=dict(classes=(...))).')
        return tuple(category['name'] for category in categories)
    if isinstance(cls, type) and issubclass(cls, CustomDataset) and not dataset.get('ann_file'):
        prefix = dataset.get('data_prefix') or ''
        folder = osp.join(root, prefix.get('img_path', '') if isinstance(prefix, dict) else prefix)
        if not osp.isdir(folder):
            return None
        classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if not classes:
            raise ConfigError(f'{folder} has no class folders: a folder-per-class set holds one sub-folder of '
                              'images per class.')
        return tuple(classes)
    raise ConfigError(f'A {dataset.get("type")} dataset cannot name its classes from its files (segmentation '
                      'label maps hold class indices only): list them in the config, '
                      'metainfo=dict(classes=(...)).')


def take_classes_from_data(cfg: Config, checkpoint_classes: Optional[Sequence[str]] = None) -> Optional[tuple]:
    """Fill in the class names of the datasets whose ``metainfo`` says ``classes=None`` from their files, and set
    every head's ``num_classes`` to their number; returns the classes (None when no dataset asks for this, or
    its files are not there and no ``checkpoint_classes`` are given).

    The configs for a user's own data (``configs/_base_/datasets/custom_*.py``) ask for it, so a class count is
    never kept in step by hand. Every split that asks must name the same classes. ``checkpoint_classes``, the
    classes a trained model was trained for, serve where the data is not at hand (inference elsewhere).
    """
    from mmengine.registry import DefaultScope
    asking = [(key, dataset) for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
              if cfg.get(loader) for key, dataset in _datasets(cfg[loader].get('dataset'), f'{loader}.dataset')
              if isinstance(dataset.get('metainfo'), dict) and 'classes' in dataset.metainfo
              and dataset.metainfo.classes is None]
    if not asking:
        return None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        found = {key: read_data_classes(dataset) for key, dataset in asking}
    found = {key: classes for key, classes in found.items() if classes is not None}
    if len(set(found.values())) > 1:
        listing = '; '.join(f'{key}: {", ".join(classes)}' for key, classes in found.items())
        raise ClassCountError(f'The splits name different classes ({listing}): one model cannot be trained and '
                              'evaluated on both. Give every split the same categories.')
    if found:
        classes, source = next(iter(found.values())), 'the data'
    elif checkpoint_classes:
        classes, source = tuple(checkpoint_classes), 'the checkpoint (the data is not here)'
    else:
        return None
    for _, dataset in asking:
        dataset.metainfo.classes = classes
    for node, path in ((cfg.get('model'), 'model'), (cfg.get('data_preprocessor'), 'data_preprocessor')):
        for _, owner in _class_count_owners(node, path):
            owner['num_classes'] = len(classes)
    print_log(f'Classes from {source} ({len(classes)}): {", ".join(classes)}; every num_classes follows.',
              logger='current')
    return classes


def read_data_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """The config with its datasets' classes filled in (``take_classes_from_data``): what a tool that builds the
    config's datasets outside a runner reads (calibration images, the dataset browser)."""
    cfg = read_config(config, cfg_options)
    take_classes_from_data(cfg)
    return cfg


def class_dependent_keys(cfg: Config) -> List[str]:
    """The state-dict keys of the config's model whose shape follows its class count (classifier layers, per-class
    box regressors and mask predictors, label embeddings): those that change shape when every ``num_classes``
    changes. Found by building the model on the meta device with one class more."""
    from mmengine.registry import MODELS, DefaultScope
    shifted = copy.deepcopy(cfg.model)
    for _, owner in _class_count_owners(shifted, 'model'):
        owner['num_classes'] += 1
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')), torch.device('meta'):
        original = MODELS.build(copy.deepcopy(cfg.model)).state_dict()
        changed = MODELS.build(shifted).state_dict()
    return [key for key, value in original.items() if key in changed and changed[key].shape != value.shape]


def check_class_counts(cfg: Config) -> None:
    """Compare every head's ``num_classes`` with the classes of the datasets the run reads.

    A head with more classes than the data trains and evaluates without complaint (the extra outputs are never
    supervised) and one with fewer fails inside the first loss with an index error; both are a config that was
    not updated for the data.
    """
    counts = list(class_counts(cfg.get('model'), 'model'))
    if not counts:
        return
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if not cfg.get(loader):
                continue
            for key, dataset in _datasets(cfg[loader].get('dataset'), f'{loader}.dataset'):
                classes = dataset_classes(dataset)
                wrong = [(setting, n) for setting, n in counts if classes is not None and n != len(classes)]
                if wrong:
                    names = ', '.join(map(str, classes[:8])) + (', ...' if len(classes) > 8 else '')
                    settings = ', '.join(f'{setting} is {n}' for setting, n in wrong)
                    fixes = ' '.join(f'{setting}={len(classes)}' for setting, _ in wrong)
                    raise ClassCountError(
                        f'{settings}, but {key} ({dataset.get("type")}) has {len(classes)} classes ({names}). Set '
                        f'the class count to the data: --cfg-options {fixes} (or give the dataset the classes '
                        'the heads were made for through its metainfo=dict(classes=...)).')


def build_runner(cfg: Config) -> Runner:
    check_class_counts(cfg)
    runner = build_or_explain(RUNNERS.build if 'runner_type' in cfg else Runner.from_cfg, cfg)
    check_feature_channels(unwrap_model(runner.model))
    return runner
