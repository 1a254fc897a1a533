"""An exported model run inside the config's own data pipeline and evaluator: an ``.onnx`` file by onnxruntime or
OpenVINO, an ExecuTorch program (``.pte``, with its metadata in ``FILE.pte.json``) by ExecuTorch's XNNPACK backend.

``tools/test.py CONFIG model.onnx`` and ``tools/image_demo.py ... --weights model.onnx`` (or ``model.pte``) replace
the config's model with :class:`ExportedModel` (:func:`use_exported_model`): the config's data preprocessor makes the
batch, the runtime runs the graph that ``tools/deploy/export_onnx.py --mode model`` (``export_executorch.py``)
wrote, and the steps mmdet / mmseg / mmpretrain take after the network (scaling boxes to the original image,
pasting masks, resizing logits to the original image, the softmax label) turn its outputs into the same data samples
the PyTorch model gives, so the config's metrics and visualisers work unchanged. The file type picks the runtime
(:func:`exported_backend`).
"""
import contextlib
import ctypes
import json
import os.path as osp
import sys
from types import SimpleNamespace
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModel

from mmlightvit.registry import MODELS

#: The kinds of exported whole model (their ``mmlightvit.kind`` metadata) that serve a config of each OpenMMLab
#: package.
KINDS_OF_SCOPE = {'mmdet': ('detector', 'instance-segmentor'), 'mmseg': ('segmentor', ),
                  'mmpretrain': ('classifier', )}
DETECTOR_KINDS = KINDS_OF_SCOPE['mmdet']
RUNNABLE_KINDS = sum(KINDS_OF_SCOPE.values(), ())
#: The runtimes an exported file runs on (all on the CPU): an ``.onnx`` file on the first two (onnxruntime unless
#: another is asked for), a ``.pte`` on ExecuTorch.
BACKENDS = ('onnxruntime', 'openvino', 'executorch')
#: The backends of each exported file type, the default first.
BACKENDS_OF_SUFFIX = {'.onnx': ('onnxruntime', 'openvino'), '.pte': ('executorch', )}


class _SignalStack(ctypes.Structure):
    """Linux's ``stack_t``, what ``sigaltstack`` reads and writes."""
    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int), ('ss_size', ctypes.c_size_t)]


@contextlib.contextmanager
def signal_stack_kept():
    """Run the block, then give the calling thread back the alternate signal stack it had before.

    OpenVINO's CPU plugin (2026.4) gives the thread that loads it an alternate signal stack of its own, and when it
    unloads it unmaps that memory and puts back the stack it found, which is another plugin instance's when two models
    end in the order they began: the thread is left with an unmapped stack. The next signal handled on the alternate
    stack (every Python signal handler is: SIGINT's, a DataLoader's SIGCHLD, faulthandler's) then kills the process
    with a segmentation fault, long after the models are gone. Every OpenVINO call here that can load the plugin runs
    inside this block, so the plugin's stack is never the thread's outside it.
    """
    if not sys.platform.startswith('linux'):  # the struct's layout above is Linux's
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


def openvino_cpu_capabilities() -> List[str]:
    """What OpenVINO's CPU plugin can compute in on this CPU (``FP32``, ``BF16``, ``INT8``, ...)."""
    import openvino as ov
    with signal_stack_kept():
        return list(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))


class OpenVINOSession:
    """An OpenVINO CPU model with onnxruntime's ``InferenceSession`` interface (``get_inputs``, ``run``).

    The float operations run in float32, or in bfloat16 with ``bf16``. The precision is always stated: unasked,
    OpenVINO's CPU plugin computes a float32 file in bfloat16 on every CPU with AVX512_BF16 or AMX (errors of ~1e-2
    relative where float32 gives ~1e-6), so the same file would give other numbers on other machines.
    """

    def __init__(self, onnx_file: str, threads: Optional[int] = None, bf16: bool = False):
        import openvino as ov
        if bf16 and 'BF16' not in (capabilities := openvino_cpu_capabilities()):
            raise ExportedModelError(
                'OpenVINO computes in BF16 on CPUs with AVX512_BF16 or AMX instructions; this CPU has neither '
                f'(its OpenVINO capabilities: {", ".join(capabilities)}).')
        config = {'INFERENCE_NUM_THREADS': threads or torch.get_num_threads(),
                  'INFERENCE_PRECISION_HINT': 'bf16' if bf16 else 'f32'}
        with signal_stack_kept():
            self.model = ov.Core().compile_model(onnx_file, 'CPU', config)
            self._request = self.model.create_infer_request()

    def get_inputs(self):
        return [SimpleNamespace(name=port.get_any_name()) for port in self.model.inputs]

    def run(self, output_names, feed: dict) -> List[np.ndarray]:
        results = self._request.infer(feed)
        return [np.asarray(results[port]) for port in self.model.outputs]


class ExecuTorchSession:
    """An ExecuTorch program (``.pte``, XNNPACK delegate) with onnxruntime's ``InferenceSession`` interface
    (``get_inputs``, ``get_outputs``, ``run``); the input and output names come from its sidecar metadata.

    ``threads``: the size of ExecuTorch's thread pool (one per process, shared by every program; default PyTorch's
    thread count).

    A one-stage detector's program ends before its NMS (a custom operator the runtime has no kernel for): it gives
    its ranked candidates, and ``run`` finishes them with the NMS and selection of the PyTorch graph, with the
    settings in the metadata (``nms``), so that it returns the ``dets`` and ``labels`` of the other runtimes.
    """

    def __init__(self, pte_file: str, threads: Optional[int] = None):
        from mmlightvit.deploy.executorch_export import input_bounds
        self.metadata = exported_metadata(pte_file)
        self.input_names = json.loads(self.metadata.get('input_names', '["image"]'))
        self.output_names = json.loads(self.metadata.get('output_names', '[]'))
        self.fixed_shape, self.bounds = input_bounds(self.metadata)
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime
        wanted = threads or torch.get_num_threads()
        if portable_lib._threadpool_get_thread_count() != wanted:
            portable_lib._unsafe_reset_threadpool(wanted)
        try:
            self.method = Runtime.get().load_program(pte_file).load_method('forward')
        except Exception as err:  # the runtime's loader errors (a damaged program, an operator without kernel)
            raise ExportedModelError(f'ExecuTorch cannot load {pte_file!r}: {type(err).__name__}: {err}') from err
        if self.method is None:
            raise ExportedModelError(f'{pte_file!r} has no forward method.')
        self.pte_file = pte_file
        self.nms = json.loads(self.metadata['nms']) if 'nms' in self.metadata else None

    def get_inputs(self):
        return [SimpleNamespace(name=name) for name in self.input_names]

    def get_outputs(self):
        return [SimpleNamespace(name=name) for name in self.output_names]

    def run(self, output_names, feed: dict) -> List[np.ndarray]:
        inputs = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in self.input_names]
        if self.fixed_shape is not None and self.fixed_shape[0] == 1 and inputs[0].shape[0] > 1:
            # a program of one image runs a batch (a test loader's) one image at a time
            outputs = [self.run(output_names, {name: x[i:i + 1].numpy() for name, x in zip(self.input_names, inputs)})
                       for i in range(inputs[0].shape[0])]
            return [np.concatenate(parts) for parts in zip(*outputs)]
        self._check_shape(tuple(inputs[0].shape))
        outputs = self.method.execute(inputs)
        if self.nms is not None:
            from mmlightvit.deploy.detection import detections_from_ranked_candidates
            outputs = detections_from_ranked_candidates(*outputs, self.nms)
        return [output.numpy() for output in outputs]

    def _check_shape(self, shape: tuple) -> None:
        """An input outside the exported bounds fails inside ExecuTorch with an error code only: say it here."""
        if self.fixed_shape is not None:
            if list(shape) != self.fixed_shape:
                raise ExportedModelError(f'{self.pte_file} was exported for inputs of shape {self.fixed_shape} only; '
                                         f'got {list(shape)}.')
            return
        max_batch, min_size, max_size = self.bounds
        if not (1 <= shape[0] <= max_batch and min(shape[2:]) >= min_size and max(shape[2:]) <= max_size):
            raise ExportedModelError(
                f'{self.pte_file} runs batches of 1 to {max_batch} images of {min_size} to {max_size} pixels a side '
                f'(the bounds it was exported with); got an input of shape {list(shape)}. Export it with a larger '
                '--max-batch / --max-size, or resize the images.')


def runtime_session(exported_file: str, backend: str = 'onnxruntime', threads: Optional[int] = None,
                    bf16: bool = False):
    """A CPU session of ``backend`` (see :data:`BACKENDS`) over ``exported_file``; ``bf16``: its float operations
    in bfloat16 (OpenVINO only)."""
    check_bf16_backend(exported_file, backend, bf16)
    if backend == 'onnxruntime':
        from mmlightvit.deploy.onnx_export import ort_session
        return ort_session(exported_file, threads)
    if backend == 'openvino':
        return OpenVINOSession(exported_file, threads, bf16)
    if backend == 'executorch':
        return ExecuTorchSession(exported_file, threads)
    raise ExportedModelError(f'Unknown backend {backend!r}; known: {", ".join(BACKENDS)}.')


class ExportedModelError(ValueError):
    """An exported file that cannot serve this config, with the reason."""


def check_bf16_backend(exported_file: str, backend: str, bf16: bool) -> None:
    """BF16 is a form of OpenVINO's; onnxruntime's CPU kernels and ExecuTorch run a file as it was exported."""
    if bf16 and backend != 'openvino':
        raise ExportedModelError(f'{backend} runs {exported_file} as it was exported; the BF16 form of an exported '
                                 'file is OpenVINO\'s (--backend openvino).')


def _suffix(path: str) -> str:
    return osp.splitext(str(path))[1].lower()


def is_exported_model(path: str) -> bool:
    return _suffix(path) in BACKENDS_OF_SUFFIX


def exported_backend(path: str, backend: Optional[str] = None) -> str:
    """The runtime of the exported file ``path``: ``backend`` when given (checked against the file type), else the
    file type's default (onnxruntime for ``.onnx``, ExecuTorch for ``.pte``)."""
    suffix = _suffix(path)
    if suffix not in BACKENDS_OF_SUFFIX:
        raise ExportedModelError(f'{path!r} is no exported model; known file types: '
                                 f'{", ".join(BACKENDS_OF_SUFFIX)}.')
    if backend is None:
        return BACKENDS_OF_SUFFIX[suffix][0]
    if backend not in BACKENDS_OF_SUFFIX[suffix]:
        raise ExportedModelError(f'--backend {backend} cannot run a {suffix} file; it runs on '
                                 f'{" or ".join(BACKENDS_OF_SUFFIX[suffix])}.')
    return backend


def exported_metadata(exported_file: str) -> dict:
    """The ``mmlightvit.*`` metadata the exporter wrote (without the prefix): into the ONNX graph, or into the
    sidecar ``FILE.pte.json`` of an ExecuTorch program."""
    if not osp.isfile(exported_file):
        raise FileNotFoundError(f'Exported model {exported_file!r} does not exist.')
    if _suffix(exported_file) == '.pte':
        from mmlightvit.deploy.executorch_export import read_pte_metadata
        return read_pte_metadata(exported_file)
    import onnx
    onnx_file = exported_file
    try:
        model = onnx.load(onnx_file, load_external_data=False)
    except Exception as err:  # protobuf decode errors of a damaged or foreign file
        raise ExportedModelError(f'{onnx_file!r} is not a readable ONNX file ({type(err).__name__}: {err}).') from err
    return {p.key[len('mmlightvit.'):]: p.value for p in model.metadata_props if p.key.startswith('mmlightvit.')}


@MODELS.register_module()
class ExportedModel(BaseModel):
    """Runs ``exported_file`` with onnxruntime, OpenVINO or ExecuTorch on the CPU; see the module docstring.

    Args:
        exported_file: a whole model exported by ``tools/deploy/export_onnx.py --mode model`` (``.onnx``) or
            ``tools/deploy/export_executorch.py --mode model`` (``.pte``).
        data_preprocessor: the config's ``model.data_preprocessor``.
        test_cfg: the config's ``model.test_cfg`` (mask threshold of instance segmentation, mmseg's mode).
        align_corners: the segmentor's decode head setting, for the resize of logits to the original image.
        backend: one of :data:`BACKENDS` that runs the file type (None: its default, see :func:`exported_backend`).
        threads: the runtime's threads (default: PyTorch's thread count).
        bf16: run the float operations in bfloat16 (OpenVINO only, on CPUs with AVX512_BF16 or AMX).
    """

    def __init__(self, exported_file: str, data_preprocessor: dict, test_cfg: Optional[dict] = None,
                 align_corners: bool = False, backend: Optional[str] = None, threads: Optional[int] = None,
                 bf16: bool = False):
        super().__init__(data_preprocessor=data_preprocessor)
        self.metadata = exported_metadata(exported_file)
        self.kind = self.metadata.get('kind')
        if self.kind not in RUNNABLE_KINDS:
            raise ExportedModelError(
                f'{exported_file!r} holds a {self.kind or "model without mmlightvit metadata"}; tools/test.py and the '
                f'inference API run whole models exported with --mode model ({", ".join(RUNNABLE_KINDS)}).')
        self.exported_file = exported_file
        # the class names (and palette) of the checkpoint the graph was exported from, for visualisation
        self.dataset_meta = json.loads(self.metadata['dataset_meta']) if 'dataset_meta' in self.metadata else None
        self.test_cfg = ConfigDict(test_cfg or {})
        self.align_corners = align_corners
        self.backend = exported_backend(exported_file, backend)
        self.session = runtime_session(exported_file, self.backend, threads, bf16)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._paster = None

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'predict'):
        if mode != 'predict':
            raise ExportedModelError(f'An exported model only predicts (mode {mode!r} was asked for); train and '
                                     'compute losses with the PyTorch model.')
        outputs = self.run(inputs, data_samples)
        if self.kind in DETECTOR_KINDS:
            return self._detections(outputs, data_samples)
        if self.kind == 'segmentor':
            return self._segmentation(outputs[0], data_samples)
        return self._classification(outputs[0], data_samples)

    def run(self, inputs: torch.Tensor, data_samples) -> List[torch.Tensor]:
        """The graph's outputs for a preprocessed batch, as tensors."""
        feed = {self.input_names[0]: inputs.float().contiguous().numpy()}
        if len(self.input_names) > 1:  # the detectors' unpadded image sizes
            sizes = [sample.metainfo['img_shape'][:2] for sample in data_samples]
            feed[self.input_names[1]] = np.asarray(sizes, dtype=np.int64)
        return [torch.from_numpy(o) for o in self.session.run(None, feed)]

    # --------------------------------------------------------------------------------------------------------
    # After the network, as the PyTorch model's heads do

    def _detections(self, outputs: List[torch.Tensor], data_samples):
        from mmengine.structures import InstanceData
        dets, labels = outputs[0], outputs[1]
        masks = outputs[2] if len(outputs) > 2 else None
        for index, sample in enumerate(data_samples):
            found = labels[index] >= 0
            meta = sample.metainfo
            result = InstanceData(metainfo=meta)
            boxes = dets[index, found, :4].clone()
            result.scores = dets[index, found, 4]
            result.labels = labels[index, found]
            if masks is not None:
                # mmdet's own pasting, which also rescales the boxes (in place) as mmdet's mask head does
                result.masks = self._mask_paster()._predict_by_feat_single(
                    masks[index, found][:, None], boxes, result.labels, meta, self.test_cfg, rescale=True,
                    activate_map=True)
            else:  # boxes back to the original image: mmdet divides by the resize's (w, h) factors
                boxes /= boxes.new_tensor(meta.get('scale_factor', (1.0, 1.0))).repeat(2)
            result.bboxes = boxes
            sample.pred_instances = result
        return data_samples

    def _mask_paster(self):
        """An mmdet FCNMaskHead whose ``_predict_by_feat_single`` pastes RoI-sized mask probabilities
        (``activate_map``) into the original image; none of its layers run."""
        if self._paster is None:
            from mmdet.models.roi_heads.mask_heads import FCNMaskHead
            self._paster = FCNMaskHead(num_convs=0, in_channels=1, conv_out_channels=1, class_agnostic=True)
        return self._paster

    def _segmentation(self, logits: torch.Tensor, data_samples):
        from mmengine.structures import PixelData
        from mmseg.models.utils import resize
        for index, sample in enumerate(data_samples):
            meta = sample.metainfo
            top, bottom, left, right = meta.get('padding_size', (0, 0, 0, 0))
            height, width = logits.shape[2:]
            sample_logits = logits[index:index + 1, :, top:height - bottom, left:width - right]
            sample_logits = resize(sample_logits, size=meta['ori_shape'], mode='bilinear',
                                   align_corners=self.align_corners, warning=False).squeeze(0)
            sample.set_data(dict(seg_logits=PixelData(data=sample_logits),
                                 pred_sem_seg=PixelData(data=sample_logits.argmax(dim=0, keepdim=True))))
        return data_samples

    def _classification(self, scores: torch.Tensor, data_samples):
        from mmpretrain.structures import DataSample
        data_samples = data_samples or [DataSample() for _ in range(len(scores))]
        for sample, sample_scores in zip(data_samples, scores):
            sample.set_pred_score(sample_scores).set_pred_label(sample_scores.argmax(dim=0, keepdim=True))
        return data_samples


def data_preprocessor_config(cfg: Config) -> Optional[dict]:
    """The model's data preprocessor: ``model.data_preprocessor``, or for mmpretrain the top-level
    ``data_preprocessor`` its ImageClassifier takes (as ``mmpretrain.ClsDataPreprocessor`` when untyped)."""
    preprocessor = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor')
    if cfg.get('default_scope') == 'mmpretrain':
        preprocessor = ConfigDict(preprocessor or {})
        preprocessor.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
    return preprocessor


def _averages_parameters(hook_cfg) -> bool:
    """Whether a ``custom_hooks`` entry is an ``EMAHook``. It keeps an averaged copy of the PyTorch model (a deep
    copy, which a runtime session refuses) and swaps its parameters in to test; an exported model has none, and its
    graph already holds the averaged weights: EMAHook saves them as the checkpoint's ``state_dict``, which the
    exporter reads (and which the PyTorch test swaps in)."""
    kind = hook_cfg.get('type', '') if isinstance(hook_cfg, dict) else ''
    return getattr(kind, '__name__', str(kind)).rsplit('.', 1)[-1] == 'EMAHook'


def use_exported_model(cfg: Config, exported_file: str, backend: Optional[str] = None, bf16: bool = False) -> None:
    """Make ``cfg`` evaluate / run ``exported_file`` on ``backend`` (None: the file type's default runtime, see
    :func:`exported_backend`; ``bf16``: its float operations in bfloat16, OpenVINO only) instead of its PyTorch
    model (nothing is loaded into a model)."""
    if backend is not None and backend not in BACKENDS:
        raise ExportedModelError(f'Unknown backend {backend!r}; known: {", ".join(BACKENDS)}.')
    backend = exported_backend(exported_file, backend)
    check_bf16_backend(exported_file, backend, bf16)
    model = cfg.model
    metadata = exported_metadata(exported_file)
    exported_config = metadata.get('config')
    scope = cfg.get('default_scope')
    if metadata.get('kind') in RUNNABLE_KINDS and metadata['kind'] not in KINDS_OF_SCOPE.get(scope, RUNNABLE_KINDS):
        raise ExportedModelError(f'{exported_file} holds an exported {metadata["kind"]} (from {exported_config}), '
                                 f'which cannot serve {osp.basename(cfg.filename or "this config")} ({scope}).')
    if model.get('type') in ('mmlightvit.ExportedModel', 'ExportedModel'):
        return
    test_cfg = model.get('test_cfg') or {}
    if cfg.get('default_scope') == 'mmseg':
        mode = test_cfg.get('mode', 'whole')
        if mode != 'whole':
            raise ExportedModelError(
                f'{cfg.filename}: the segmentor tests in {mode!r} mode; an exported segmentor computes whole images '
                "(set --cfg-options model.test_cfg.mode=whole, or test the PyTorch model).")
    detector_test_cfg = test_cfg.get('rcnn', test_cfg) if isinstance(test_cfg, dict) else {}
    decode_head = model.get('decode_head') or {}
    cfg.model = ConfigDict(type='mmlightvit.ExportedModel', exported_file=exported_file,
                           data_preprocessor=data_preprocessor_config(cfg),
                           test_cfg=dict(detector_test_cfg) if cfg.get('default_scope') == 'mmdet' else dict(test_cfg),
                           align_corners=bool(decode_head.get('align_corners', False)), backend=backend, bf16=bf16)
    cfg.load_from = None
    cfg.custom_hooks = [hook for hook in cfg.get('custom_hooks') or [] if not _averages_parameters(hook)]
    if exported_config and exported_config != osp.basename(cfg.filename or ''):
        print(f'note: {exported_file} was exported from {exported_config}; its pipeline is taken from '
              f'{osp.basename(cfg.filename or "")}.')
