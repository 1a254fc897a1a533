"""mmdet's DetInferencer and mmseg's MMSegInferencer for this project's models.

They differ from the upstream classes in what they load: the weights go through the project's checkpoint path
(weights-only, released layouts converted, every key checked, see :func:`load_model_weights`), never a silent
partial load and never random weights; zoo names resolve through this project's metafiles; ``fuse=True`` runs the
re-parameterised model.
"""
import copy
import os
from typing import Optional, Union

import numpy as np
import torch
from mmdet.apis import DetInferencer
from mmengine.config import Config
from mmengine.registry import MODELS
from mmseg.apis import MMSegInferencer

from mmlightvit.engine.setup import take_classes_from_data
from mmlightvit.deploy.runtime import ExportedModelError, is_exported_model, use_exported_model
from mmlightvit.utils.checkpoint import CheckpointError, checkpoint_classes, read_checkpoint
from mmlightvit.utils.config import read_config
from .model import drop_pretrained, load_model_weights
from .model_index import find_model


def _config_from_checkpoint(checkpoint: dict, source: str) -> Config:
    """The config a checkpoint written by mmengine's Runner carries (``message_hub`` or ``meta``)."""
    text = (checkpoint.get('message_hub') or {}).get('runtime_info', {}).get('cfg') \
        or (checkpoint.get('meta') or {}).get('cfg')
    if not text:
        raise ValueError(f'{source} carries no config (it was not written by a training run); pass the config.')
    return Config.fromstring(text, file_format='.py')


def check_image_array(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """An image array as the inferencers take it: H x W x 3, BGR (as ``cv2.imread`` gives), values 0-255.

    A gray H x W (or H x W x 1) array is repeated into three channels; anything else that would be silently
    misread (values in [0, 1], an alpha channel, an empty or wrongly shaped array) raises ValueError saying what is
    expected.
    """
    expected = 'expected an H x W x 3 BGR array with values 0-255 (uint8, as cv2.imread / mmcv.imread give)'
    if image.size == 0:
        raise ValueError(f'{name} is empty (shape {image.shape}); {expected}.')
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f'{name} has dtype {image.dtype}; {expected}.')
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)  # gray: the same value in B, G and R
    if image.ndim != 3 or image.shape[2] != 3:
        hint = ' (drop the alpha channel: image[..., :3])' if image.ndim == 3 and image.shape[2] == 4 else ''
        raise ValueError(f'{name} has shape {image.shape}; {expected}{hint}.')
    if np.issubdtype(image.dtype, np.floating) and float(np.nanmax(image)) <= 1.0:
        raise ValueError(f'{name} is a float array with values in [0, 1]; the model reads 0-255 and would see a '
                         f'black image: pass (image * 255).astype(np.uint8) ({expected}).')
    return image


class _ProjectWeights:
    """What both inferencers change: model names from our metafiles, strict loading, optional fusing, inputs
    checked before they reach the pipeline."""

    def __init__(self, *args, fuse: bool = False, **kwargs):
        self.fuse = fuse
        super().__init__(*args, **kwargs)

    def _inputs_to_list(self, inputs) -> list:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise ValueError('No inputs given: pass an image path, a folder, or an H x W x 3 BGR array.')
        checked = []
        for index, item in enumerate(items):
            name = f'input {index}' if len(items) > 1 else 'the input'
            if isinstance(item, np.ndarray):
                item = check_image_array(item, name)
            elif isinstance(item, (str, os.PathLike)):
                item = os.fspath(item)
                if '://' not in item and not os.path.exists(item):
                    raise FileNotFoundError(f'{item}: no such image or folder.')
            else:
                raise TypeError(f'{name} is {type(item).__name__}; expected an image path, a folder, or an '
                                'H x W x 3 BGR array (uint8, 0-255).')
            checked.append(item)
        return super()._inputs_to_list(checked)

    def _load_model_from_metafile(self, model: str):
        entry = find_model(model)
        return Config.fromfile(entry.config), entry.weights

    def _init_model(self, cfg, weights: Optional[str], device: str = 'cpu'):
        if not weights:
            raise CheckpointError('No weights given (and the model has no released weights in the metafiles): '
                                  'predictions of a randomly initialised model mean nothing. Pass weights=PATH.')
        if is_exported_model(weights):
            return self._init_exported_model(cfg, weights)
        checkpoint = read_checkpoint(weights)
        if not cfg:
            cfg.update(_config_from_checkpoint(checkpoint, weights)._cfg_dict)
        # a config for one's own data takes its class names from the data, else from the checkpoint
        take_classes_from_data(cfg, checkpoint_classes(checkpoint))
        drop_pretrained(cfg)
        model = load_model_weights(MODELS.build(cfg.model), checkpoint, f'Checkpoint {weights!r}',
                                   fuse=self.fuse)
        model.cfg = cfg
        # the upstream method reads dataset_meta (classes, palette) from the checkpoint's meta and the config; it
        # gets the state dict just loaded, so its own non-strict load changes nothing
        super()._load_weights_to_model(model, {'meta': checkpoint.get('meta') or {},
                                               'state_dict': model.state_dict()}, cfg)
        return model.to(device).eval()

    def _init_exported_model(self, cfg, exported_file: str):
        """An exported whole model (``.onnx`` run by onnxruntime, ``.pte`` by ExecuTorch) in the config's pipeline,
        with the class names the exporter recorded."""
        if not cfg:
            raise ExportedModelError(f'{exported_file}: an exported model needs the config it was exported from (its '
                                     'data pipeline and preprocessing); pass it as the model argument.')
        take_classes_from_data(cfg)
        use_exported_model(cfg, exported_file)
        model = MODELS.build(cfg.model)
        model.cfg = cfg
        meta = {'dataset_meta': model.dataset_meta} if model.dataset_meta else {}
        super()._load_weights_to_model(model, {'meta': meta, 'state_dict': {}}, cfg)
        return model.eval()


class LightDetInferencer(_ProjectWeights, DetInferencer):
    """``LightDetInferencer('mask-rcnn_repvit-m1.1_coco')`` (released weights) or
    ``LightDetInferencer(CONFIG, weights=CHECKPOINT, device='cpu', fuse=True)``; called as mmdet's DetInferencer:
    ``inferencer('demo.jpg', out_dir='outputs', pred_score_thr=0.3)`` writes ``vis/`` and ``preds/*.json``."""


class LightSegInferencer(_ProjectWeights, MMSegInferencer):
    """As :class:`LightDetInferencer`, for segmentors (mmseg's MMSegInferencer: ``vis/`` and ``pred/`` label maps)."""


def build_inferencer(model: Union[str, Config], weights: Optional[str] = None, device: Optional[str] = None,
                     fuse: bool = False, **kwargs):
    """The inferencer for ``model`` (a config file, a Config, or a zoo model name), chosen by the config's scope."""
    if isinstance(model, Config):
        cfg = copy.deepcopy(model)
    elif not isinstance(model, (str, os.PathLike)):
        raise TypeError(f'model is {model!r}; expected a config file, a Config, or a model name from the metafiles '
                        '(mmlightvit.apis.list_models()).')
    elif os.fspath(model).endswith('.py'):
        if not os.path.isfile(model):
            raise FileNotFoundError(f'{model}: no such config file.')
        cfg = read_config(model)
    else:
        entry = find_model(os.fspath(model))
        cfg, weights = Config.fromfile(entry.config), weights or entry.weights
    if device is not None and str(device).startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'device {device!r}: no CUDA GPU is visible here (torch.cuda.is_available() is False); '
                         "use device='cpu' (--device cpu).")
    scope = cfg.get('default_scope')
    classes = {'mmdet': LightDetInferencer, 'mmseg': LightSegInferencer}
    if scope not in classes:
        raise ValueError(f'{getattr(cfg, "filename", model)}: default_scope {scope!r}; the inferencers serve '
                         f'detectors (mmdet) and segmentors (mmseg).')
    return classes[scope](cfg, weights=weights, device=device, fuse=fuse, **kwargs)
