"""ONNX export of a backbone or a whole model, checked against onnxruntime.

What can be exported from a config (``build_export_target``):

* ``backbone``: the backbone alone, re-parameterised (``fuse_model``); outputs are its multi-scale maps;
* ``model`` for an mmseg ``EncoderDecoder``: image -> segmentation logits at the input size (``encode_decode``;
  for Mask2Former its semantic inference, :func:`mask2former_logits`) and the label map (their argmax);
* ``model`` for an mmdet detector (Mask / Cascade Mask R-CNN, RTMDet, SSDLite, DINO, ...): ``(image, image_size)``
  -> final detections (after NMS; DINO's top-k has none), and masks for instance segmentation
  (:mod:`mmlightvit.deploy.detection`); the graph holds standard ONNX ``NonMaxSuppression`` and ``RoiAlign``;
* ``model`` for an mmpretrain ``ImageClassifier``: image -> class probabilities.

The image input of every exported graph is the preprocessed batch (normalised, RGB/BGR as the config's
``data_preprocessor`` says, padded as it pads; the graph's metadata records mean, std, channel order and the pad
divisor). Batch, height and width are dynamic (a backbone may declare ``fixed_size_export``: then one fixed-size
graph per input size; none of the four does). FasterViT and TransNeXt compute their size-dependent tables (carrier-
token pooling, window counts, position biases) in the graph from the runtime size; a backbone's
``export_size_divisor`` (TransNeXt in extrapolation mode: 32) joins the target's size divisor.
:func:`compare_with_onnxruntime` runs the file with onnxruntime on the CPU at several sizes and reports
the largest differences from PyTorch and the median latency of both.

Exporter: ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`` (torch.export, then ONNX opset 20), the
default and maintained path of torch >= 2.13. It traces the size arithmetic symbolically, so sizes computed from the
input (EdgeNeXt's padding, the segmentor's final resize) stay expressions of the runtime size in the graph. The
TorchScript exporter (``dynamo=False``) is deprecated there. Neither exporter can keep a Python ``if`` or an
``int()`` on a size dynamic: what the export size gives is recorded for every size, silently, which is why the
parity check runs at a second size with different height and width (it caught EdgeNeXt's conditional padding,
mmseg's ``Upsample``, replaced here by :class:`IntegerUpsample`, and the adaptive average pooling of mmseg's pyramid
pooling module, replaced by :class:`SizeFreeAdaptiveAvgPool`). The multi-scale deformable attention of DINO and
Mask2Former reads its levels' sizes from a tensor; :mod:`mmlightvit.deploy.deformable` carries them as integers.
"""
import json
import math
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.apis.model import build_model, config_without_pretrained
from mmlightvit.deploy.deformable import replace_deformable_attention
from mmlightvit.deploy.detection import DetectionExportError, DetectorPredictions
from mmlightvit.deploy.ops import onnx_translations
from mmlightvit.deploy.runtime import DETECTOR_KINDS, data_preprocessor_config
from mmlightvit.models.layers import averaging_matrix, fuse_model
from mmlightvit.models.weights import load_model_weights
from mmlightvit.utils.checkpoint import read_checkpoint

DEFAULT_OPSET = 20
MODES = ('backbone', 'model')
INPUT_NAME = 'image'
#: The detectors' second input: each image's (height, width) before padding.
SIZE_INPUT_NAME = 'image_size'
#: The share of equal labels (pixels of a label map, detections) an exported model must reach.
LABEL_AGREEMENT = 0.999
#: A single-file .onnx holds at most 2 GB (protobuf); larger models keep their weights in FILE.onnx.data.
EXTERNAL_DATA_BYTES = 1 << 30


class ExportError(RuntimeError):
    """A model or a mode that cannot be exported, with the reason."""


# ----------------------------------------------------------------------------------------------------------------
# What gets exported


class BackboneFeatures(nn.Module):
    """A backbone whose forward returns its feature maps as a tuple (one graph output each)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone(image))


class SegmentorLogits(nn.Module):
    """An mmseg EncoderDecoder as image -> segmentation logits ``(N, classes, H, W)`` at the input size and the
    label map ``(N, H, W)``."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        from mmseg.models.decode_heads import Mask2FormerHead
        if isinstance(self.segmentor.decode_head, Mask2FormerHead):
            logits = mask2former_logits(self.segmentor.decode_head, self.segmentor.extract_feat(image),
                                        image.shape[2:])
        else:
            # The decode head resizes its logits to metas[0]['img_shape'] and reads no other meta; a torch.Size
            # there is used as is (mmseg's slide inference passes one), so the size stays symbolic during export.
            logits = self.segmentor.encode_decode(image, [dict(img_shape=image.shape[2:])])
        return logits, logits.argmax(dim=1)


def mask2former_logits(head: nn.Module, feats: Sequence[torch.Tensor], size) -> torch.Tensor:
    """mmseg's ``Mask2FormerHead.predict``: the last decoder layer's class probabilities (without "no object")
    times its mask probabilities at ``size``, summed over the queries. ``predict`` itself wraps the metas in data
    samples, whose deep copy fails on symbolic sizes; the head's forward reads none of them."""
    all_class_logits, all_mask_logits = head(feats, [])
    masks = F.interpolate(all_mask_logits[-1], size=size, mode='bilinear', align_corners=False)
    classes = F.softmax(all_class_logits[-1], dim=-1)[..., :-1]
    return torch.einsum('bqc, bqhw->bchw', classes, masks.sigmoid())


class ClassifierScores(nn.Module):
    """An mmpretrain ImageClassifier as image -> class probabilities ``(N, classes)`` (its head's ``predict``
    takes the softmax of the same logits)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.classifier(image, mode='tensor').softmax(dim=-1), )


class IntegerUpsample(nn.Module):
    """mmseg's ``Upsample`` for an integer scale factor, with the output size kept symbolic.

    mmseg computes the size as ``int(size * factor)``: during export ``int()`` fixes it to the traced size, so
    every other input size would be resized to the traced feature size. ``size * k`` is the same number for an
    integer ``k`` and stays an expression of the input size.
    """

    def __init__(self, upsample: nn.Module):
        super().__init__()
        self.factor = int(upsample.scale_factor)
        self.mode = upsample.mode
        self.align_corners = upsample.align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mmseg.models.utils import resize
        return resize(x, [t * self.factor for t in x.shape[-2:]], None, self.mode, self.align_corners)


def replace_mmseg_upsample(model: nn.Module) -> int:
    """Swap every size-less mmseg ``Upsample`` with an integer scale factor (FPNHead's, ...) for
    :class:`IntegerUpsample`; returns how many were replaced."""
    from mmseg.models.utils import Upsample
    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            factor = getattr(child, 'scale_factor', None)
            if (isinstance(child, Upsample) and not child.size and isinstance(factor, float)
                    and factor.is_integer()):
                setattr(parent, name, IntegerUpsample(child))
                replaced += 1
    return replaced


class SizeFreeAdaptiveAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d`` to a fixed output size, whose graph holds for every input size.

    torch.export records PyTorch's decomposition of adaptive average pooling, which decides at the traced size
    whether the input divides into equal windows (then a plain average pooling with the traced window) and how long
    the longest window is: at another size the graph averages the wrong windows or reads past the map (mmseg's
    pyramid pooling module in UperNet / PSPNet). Here the pooling is two products with averaging matrices built from
    the runtime size (:func:`averaging_matrix`), the windows PyTorch averages.
    """

    def __init__(self, pool: nn.AdaptiveAvgPool2d):
        super().__init__()
        size = pool.output_size
        self.output_size = (size, size) if isinstance(size, int) else tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = averaging_matrix(x.shape[-2], self.output_size[0], x)
        columns = averaging_matrix(x.shape[-1], self.output_size[1], x)
        return rows @ x @ columns.transpose(0, 1)


def replace_adaptive_pooling(model: nn.Module) -> int:
    """Swap every ``nn.AdaptiveAvgPool2d`` to a fixed size other than 1 x 1 (a mean, which exports as one) for
    :class:`SizeFreeAdaptiveAvgPool`; returns how many were replaced."""
    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if not isinstance(child, nn.AdaptiveAvgPool2d):
                continue
            size = child.output_size
            sizes = (size, size) if isinstance(size, int) else tuple(size)
            if None not in sizes and sizes != (1, 1):
                setattr(parent, name, SizeFreeAdaptiveAvgPool(child))
                replaced += 1
    return replaced


@dataclass
class ExportTarget:
    """An eval-mode module ``image -> tuple of tensors`` and what the export and the check need to know."""
    module: nn.Module
    kind: str  # 'backbone', 'segmentor' or 'detector'
    output_names: List[str]
    size_divisor: int = 1  # input height and width must be multiples of it (1: any size)
    backbone_type: str = ''
    metadata: Dict[str, str] = field(default_factory=dict)
    fixed_size_reason: Optional[str] = None  # the backbone's ``fixed_size_export``
    input_names: List[str] = field(default_factory=lambda: [INPUT_NAME])
    # the smallest height and width a dynamic graph is traced at (the backbone's ``dynamic_export_min_size``)
    min_trace_size: int = 1
    # the backbone's ``fixed_size_program``: why ExecuTorch / Core ML hold one size where ONNX need not
    fixed_size_program: Optional[str] = None

    @property
    def dynamic_size(self) -> bool:
        """Whether one ONNX graph with dynamic height and width can be exported."""
        return self.fixed_size_reason is None

    @property
    def program_fixed_size_reason(self) -> Optional[str]:
        """Why an ExecuTorch program or a Core ML package of this target holds one input size (``None``: it may
        take a range of sizes)."""
        return self.fixed_size_reason or self.fixed_size_program

    def padded(self, height: int, width: int) -> Tuple[int, int]:
        """The size the data preprocessor would pad an image of ``height x width`` to for this model."""
        d = self.size_divisor
        return -(-height // d) * d, -(-width // d) * d

    def example_inputs(self, image: torch.Tensor, image_size: Optional[Sequence[int]] = None) -> tuple:
        """The module's inputs for a batch ``image``: with a size input, every image's ``image_size`` (default:
        the whole, unpadded image)."""
        if SIZE_INPUT_NAME not in self.input_names:
            return (image, )
        size = torch.tensor(image_size or image.shape[2:], dtype=torch.int64)
        return image, size.expand(image.shape[0], 2).contiguous()


def _load_weights(module: nn.Module, checkpoint: str) -> Tuple[nn.Module, dict]:
    """Load ``checkpoint`` strictly into ``module`` (a whole model, or a backbone) and return it fused, with the
    checkpoint's ``meta``."""
    raw = read_checkpoint(checkpoint)
    return load_model_weights(module, raw, f'Checkpoint {checkpoint!r}', fuse=True), raw.get('meta') or {}


def _dataset_metadata(meta: dict) -> Dict[str, str]:
    """The checkpoint's class names and palette as graph metadata (JSON), for the runtime's visualisation."""
    dataset_meta = {k: v for k, v in (meta.get('dataset_meta') or {}).items() if k in ('classes', 'palette')}
    if not dataset_meta:
        return {}
    return {'dataset_meta': json.dumps(dataset_meta, default=lambda value: list(value))}


def _preprocessor_metadata(cfg) -> Dict[str, str]:
    pre = data_preprocessor_config(cfg) or {}
    meta = {}
    for key in ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr', 'to_rgb'):  # to_rgb: mmpretrain's name
        if pre.get(key) is not None:
            meta[f'preprocess.{key}'] = str(list(pre[key]) if isinstance(pre[key], (list, tuple)) else pre[key])
    return meta


def build_export_target(config: str, checkpoint: Optional[str], mode: str = 'backbone',
                        cfg_options: Optional[dict] = None) -> ExportTarget:
    """Build what ``mode`` exports from ``config``, load ``checkpoint`` (``None`` or ``'none'``: the random
    initial weights) and fold the re-parameterisable blocks.

    Raises:
        FileNotFoundError, CheckpointError: the checkpoint is missing, unreadable, unsafe or does not match.
        ExportError: the mode does not apply to this model (e.g. ``model`` on a two-stage detector).
    """
    if mode not in MODES:
        raise ExportError(f'Unknown mode {mode!r}; choose one of {MODES}.')
    # Weights come from `checkpoint`; ImageNet initialisation would only try to download.
    cfg = config_without_pretrained(config, cfg_options)
    if cfg.model.get('backbone') is None:
        raise ExportError(f'{config}: the model has no backbone to export.')
    use_checkpoint = checkpoint is not None and str(checkpoint).lower() != 'none'
    model = build_model(cfg, init_weights=not use_checkpoint).eval()
    backbone_type = type(model.backbone).__name__
    fixed_size = getattr(model.backbone, 'fixed_size_export', None)
    # what the backbone's exported graph needs the input to be a multiple of (TransNeXt in extrapolation mode: 32)
    backbone_divisor = int(getattr(model.backbone, 'export_size_divisor', 1))
    # what the ONNX export keeps dynamic and ExecuTorch / Core ML do not (FasterViT, TransNeXt: see the backbones)
    sizes = dict(min_trace_size=int(getattr(model.backbone, 'dynamic_export_min_size', 1)),
                 fixed_size_program=getattr(model.backbone, 'fixed_size_program', None))
    metadata = dict(_preprocessor_metadata(cfg), config=osp.basename(config), mode=mode,
                    checkpoint=osp.basename(checkpoint) if use_checkpoint else 'none (random weights)')

    if mode == 'backbone':
        backbone = model.backbone
        backbone = _load_weights(backbone, checkpoint)[0] if use_checkpoint else fuse_model(backbone)
        strides = [2**(i + 2) for i in getattr(backbone, 'out_indices', ())]
        names = [f'feat_s{s}' for s in strides] or None
        module = BackboneFeatures(backbone).eval()
        if names is None:  # a backbone without the project's contract: count its outputs
            with torch.no_grad():
                names = [f'feat{i}' for i in range(len(module(torch.zeros(1, 3, 64, 64))))]
        return ExportTarget(module, 'backbone', names, backbone_divisor, backbone_type, metadata, fixed_size,
                            **sizes)

    if use_checkpoint:
        model, meta = _load_weights(model, checkpoint)
        metadata.update(_dataset_metadata(meta))
    else:
        model = fuse_model(model)
    replace_adaptive_pooling(model)
    replace_deformable_attention(model)
    if callable(getattr(model, 'encode_decode', None)):
        replace_mmseg_upsample(model)
        return ExportTarget(SegmentorLogits(model).eval(), 'segmentor', ['seg_logits', 'seg_label'],
                            backbone_divisor, backbone_type, metadata, fixed_size, **sizes)
    if type(model).__name__ == 'ImageClassifier':
        return ExportTarget(ClassifierScores(model).eval(), 'classifier', ['scores'], backbone_divisor, backbone_type,
                            metadata, fixed_size, **sizes)
    try:
        module = DetectorPredictions(model).eval()
    except DetectionExportError as err:
        raise ExportError(f'--mode model: {err} (segmentors, Mask2Former included, classifiers and these '
                          'detectors export whole; any model exports its backbone with --mode backbone)') from err
    # The neck upsamples by 2 and adds / concatenates with the next level, so the input must halve exactly down
    # to the coarsest stride: pad as the data preprocessor does, else to the head's coarsest stride.
    divisor = int(cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1))
    if divisor == 1 and not module.dino:  # DINO's neck maps each level on its own: any size
        head = model.rpn_head if module.two_stage else model.bbox_head
        strides = getattr(getattr(head, 'prior_generator', None), 'strides', [(32, 32)])
        divisor = max(max(s) if isinstance(s, (tuple, list)) else s for s in strides)
    divisor = math.lcm(divisor, backbone_divisor)
    kind = 'instance-segmentor' if module.with_mask else 'detector'
    return ExportTarget(module, kind, module.output_names, divisor, backbone_type, metadata, fixed_size,
                        [INPUT_NAME, SIZE_INPUT_NAME], **sizes)


# ----------------------------------------------------------------------------------------------------------------
# Export


def short_reason(err: BaseException, max_lines: int = 3) -> str:
    """The informative part of an exporter's or converter's error (torch.onnx wraps it in pages of advice)."""
    text = str(err)
    if '## Exception summary' in text:
        text = text.split('## Exception summary', 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ' '.join(lines[:max_lines])[:800] or type(err).__name__


def exported_file_metadata(target: ExportTarget, dynamic: bool) -> Dict[str, str]:
    """What every exported file records about its model (the ``mmlightvit.*`` entries; the runtime reads them):
    the target's metadata (preprocessing, classes, config, checkpoint), its kind, size divisor and whether its
    height and width are dynamic."""
    return dict(target.metadata, kind=target.kind, size_divisor=str(target.size_divisor), dynamic_size=str(dynamic))


def _check_size_ranges(target: ExportTarget, program, traced: Tuple[int, int]) -> None:
    """Refuse a graph that holds for a bounded range of heights or widths only. torch.export records a branch on the
    size (an ``if`` or a comparison taken at the traced size) as a range of the input size, not as an error, and
    ONNX has no place for the range: the graph would fail or be wrong beyond it, so the export stops here instead.
    (It does not catch everything: a size of 1 fixed in the graph, e.g. FasterViT's window batch, shows as a
    bounded batch at most; hence the backbones' ``dynamic_export_min_size`` and the trace batch of 2.)"""
    from torch.utils._sympy.numbers import int_oo
    exported = program.exported_program
    user_inputs = set(exported.graph_signature.user_inputs)
    image = next(n for n in exported.graph.nodes if n.op == 'placeholder' and n.name in user_inputs)
    for axis, name in ((2, 'height'), (3, 'width')):
        size = image.meta['val'].shape[axis]
        bounds = exported.range_constraints.get(getattr(getattr(size, 'node', None), 'expr', None))
        if bounds is not None and bounds.upper is not int_oo:
            raise ExportError(
                f'{target.kind} ({target.backbone_type}) traced at {traced[0]}x{traced[1]} gives a graph for input '
                f'{name}s {bounds.lower}..{bounds.upper} only (a size-dependent branch of the traced size); export '
                'at a larger --shape.')


def export_onnx(target: ExportTarget, out_file: str, shape: Sequence[int] = (224, 224), batch: int = 1,
                opset: int = DEFAULT_OPSET, dynamic: bool = True, half: bool = False) -> str:
    """Export ``target`` to ``out_file``, traced with a ``batch x 3 x H x W`` input (``shape``, padded to the
    target's size divisor; a batch of at least 2 when dynamic). ``dynamic``: batch, height and width are dynamic in
    the graph, traced at no less than the target's ``min_trace_size`` per side (FasterViT: 2 x 2 windows in both
    transformer stages); otherwise the graph accepts exactly the traced size (the only option for backbones with a
    ``fixed_size_export`` reason). ``half``: a float16 graph (image and weights; the module is converted in place),
    the form that GPU runtimes such as TensorRT run in float16."""
    if dynamic and not target.dynamic_size:
        raise ExportError(f'{target.backbone_type} cannot be exported with dynamic height and width: '
                          f'{target.fixed_size_reason}. Export it at fixed sizes instead (--static: one '
                          'file per input size).')
    if dynamic:
        # the traced size does not limit a dynamic graph; a window count of 1 at the traced size would be fixed
        shape = [max(side, target.min_trace_size) for side in shape]
        # torch.export may take a dynamic size whose example is 1 for the constant 1 where it meets broadcasting:
        # traced with one image, DINO's positional encodings kept a batch of 1 and failed on two (so did
        # FasterViT's window batch and TransNeXt's token batch).
        batch = max(batch, 2)
    height, width = target.padded(*shape)
    image = torch.randn(batch, 3, height, width)
    if half:
        target.module.half()
        image = image.half()
    example = target.example_inputs(image)
    with torch.no_grad():
        # A forward at the traced size first: backbones that cache size-dependent tables (FasterViT, TransNeXt)
        # then find real tensors for this size, which a fixed-size graph stores as constants.
        target.module(*example)
    dim = torch.export.Dim.DYNAMIC
    dynamic_shapes = ({0: dim, 2: dim, 3: dim}, {0: dim})[:len(example)] if dynamic else None
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    try:
        program = torch.onnx.export(
            target.module, example, dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=opset,
            input_names=target.input_names, output_names=target.output_names, verbose=False,
            custom_translation_table=onnx_translations())
    except Exception as err:  # torch.export / decomposition / translation errors
        raise ExportError(f'Exporting {target.kind} ({target.backbone_type}) to ONNX failed: '
                          f'{type(err).__name__}: {short_reason(err)}') from err
    if dynamic:
        _check_size_ranges(target, program, (height, width))
    program.model.metadata_props.update(
        {f'mmlightvit.{k}': v for k, v in dict(exported_file_metadata(target, dynamic),
                                                 precision='fp16' if half else 'fp32').items()})
    weight_bytes = sum(p.numel() * p.element_size() for p in target.module.state_dict().values())
    program.save(out_file, external_data=weight_bytes > EXTERNAL_DATA_BYTES)
    return out_file


# ----------------------------------------------------------------------------------------------------------------
# Parity and latency


@dataclass
class ParityResult:
    """An exported file's runtime (onnxruntime, ExecuTorch, ...) vs PyTorch eager at one input size."""
    input_shape: Tuple[int, ...]
    max_abs_diff: float
    max_rel_diff: float  # max |runtime - PyTorch| / max |PyTorch| of each output, the largest over outputs
    torch_ms: float
    runtime_ms: float
    passed: bool
    note: str = ''
    label_agreement: Optional[float] = None  # the share of equal values in the integer outputs (labels)


def median_ms(fn, warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def ort_session(onnx_file: str, threads: Optional[int] = None):
    """An onnxruntime CPU session using ``threads`` intra-op threads (default: PyTorch's thread count)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # Idle worker threads would otherwise spin after each run, taking the cores from whatever runs next (in the
    # benchmark, the next form timed).
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])


def compare_with_onnxruntime(target: ExportTarget, onnx_file: str, shapes: Sequence[Sequence[int]],
                             batch: int = 1, tolerance: float = 1e-4, warmup: int = 2, repeat: int = 5,
                             threads: Optional[int] = None, seed: int = 0, session=None,
                             feeds: Optional[Sequence[Dict[str, np.ndarray]]] = None,
                             label_agreement: float = LABEL_AGREEMENT) -> List[ParityResult]:
    """Run ``onnx_file`` and ``target.module`` on the same random inputs at each ``(H, W)`` in ``shapes`` (padded
    to the target's size divisor), or on each of ``feeds`` (the graph's inputs by name, e.g. preprocessed images
    from :func:`mmlightvit.deploy.quantize.calibration_feeds`) when given, and compare every output.

    A size passes when the output shapes agree and ``max |ORT - PyTorch| <= tolerance * max |PyTorch|`` for each
    output (the difference relative to the output's scale; the largest ratio is ``max_rel_diff``) and the integer
    outputs (label maps, labels) agree on at least ``label_agreement`` of their values. Latency is
    the median of ``repeat`` runs after ``warmup`` runs, PyTorch eager (inference mode) and onnxruntime on the
    CPU with the same number of threads. ``session``: another runtime's session of the file with onnxruntime's
    ``run`` interface (:func:`mmlightvit.deploy.runtime.runtime_session`), compared instead.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        session = session or ort_session(onnx_file, threads)
        if feeds is None:
            feeds = [_random_feed(target, size, batch, seed + i) for i, size in enumerate(shapes)]
        return [_compare_on(target, session, feed, tolerance, label_agreement, warmup, repeat) for feed in feeds]
    finally:
        torch.set_num_threads(previous_threads)


def _random_feed(target: ExportTarget, shape: Sequence[int], batch: int, seed: int) -> Dict[str, np.ndarray]:
    """Random inputs of ``batch`` images of ``shape`` (padded to the target's size divisor)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = shape
    x = torch.randn(batch, 3, *target.padded(height, width), generator=generator)
    inputs = target.example_inputs(x, (height, width))  # detectors: the padding is outside the image
    return {name: t.numpy() for name, t in zip(target.input_names, inputs)}


def _compare_on(target: ExportTarget, session, feed: Dict[str, np.ndarray], tolerance: float,
                min_agreement: float, warmup: int, repeat: int) -> ParityResult:
    inputs = [torch.from_numpy(feed[name]) for name in target.input_names]
    x = inputs[0]
    with torch.inference_mode():
        expected = [t.numpy() for t in target.module(*inputs)]
        torch_ms = median_ms(lambda: target.module(*inputs), warmup, repeat)
    got = session.run(None, feed)
    runtime_ms = median_ms(lambda: session.run(None, feed), warmup, repeat)
    if target.kind in DETECTOR_KINDS and len(got) == len(expected):
        got = _in_reference_order(got, expected)
    shape_problems = [f'{name}: runtime {tuple(o.shape)} vs PyTorch {tuple(e.shape)}'
                      for name, o, e in zip(target.output_names, got, expected) if o.shape != e.shape]
    if len(got) != len(expected) or shape_problems:
        note = '; '.join(shape_problems) or f'{len(got)} outputs vs {len(expected)}'
        return ParityResult(tuple(x.shape), float('inf'), float('inf'), torch_ms, runtime_ms, False, note)
    # Integer outputs (labels, label maps) are compared by agreement: a logit tie broken the other way flips a
    # pixel's label, and a detection whose label differs is another detection.
    is_label = [np.issubdtype(e.dtype, np.integer) for e in expected]
    pairs = [(o.astype(np.float64), e.astype(np.float64)) for o, e, lab in zip(got, expected, is_label) if not lab]
    abs_diffs = [float(np.abs(o - e).max()) if e.size else 0.0 for o, e in pairs] or [0.0]
    rel_diffs = [d / max(float(np.abs(e).max()), 1e-12) if e.size else 0.0
                 for d, (_, e) in zip(abs_diffs, pairs)] or [0.0]
    agreements = [float((o == e).mean()) if e.size else 1.0 for o, e, lab in zip(got, expected, is_label) if lab]
    agreement = min(agreements) if agreements else None
    finite = all(np.isfinite(o).all() for o, _ in pairs)
    passed = finite and max(rel_diffs) <= tolerance and (agreement is None or agreement >= min_agreement)
    note = '' if finite else 'non-finite output'
    if agreement is not None and agreement < min_agreement:
        note = f'labels agree on {agreement:.2%} only'
    if not passed and finite and target.kind in DETECTOR_KINDS:
        note = _differing_detections(got, expected, tolerance)
    return ParityResult(tuple(x.shape), max(abs_diffs), max(rel_diffs), torch_ms, runtime_ms, passed, note,
                        agreement)


def _differing_detections(got: List[np.ndarray], expected: List[np.ndarray], tolerance: float) -> str:
    """How many of the paired detections differ (another label, or a box or score beyond ``tolerance`` of the
    largest PyTorch value): a few among many is what an untrained detector's near-equal scores give, where NMS or
    top-k keep another of two boxes; most is an export that computes something else."""
    differ = (np.abs(got[0] - expected[0]).max(-1) > tolerance * max(float(np.abs(expected[0]).max()), 1e-12))
    differ |= got[1] != expected[1]
    return f'{int(differ.sum())} of {differ.size} detections differ'


def _in_reference_order(got: List[np.ndarray], expected: List[np.ndarray]) -> List[np.ndarray]:
    """The runtime's detections (``dets, labels[, masks]``) reordered to follow PyTorch's: each PyTorch detection
    is paired with the nearest runtime detection of its label. Two detections whose scores differ in the last bit
    can come out of ``topk`` in either order, which is not a difference in what was detected."""
    dets, labels = got[0], got[1]
    if dets.shape != expected[0].shape or labels.shape != expected[1].shape:
        return got
    order = np.zeros(labels.shape, dtype=np.int64)
    for image in range(dets.shape[0]):
        distance = np.abs(dets[image][:, None, :] - expected[0][image][None, :, :]).max(-1)
        distance[labels[image][:, None] != expected[1][image][None, :]] = np.inf
        order[image] = distance.argmin(axis=0)
    return [np.take_along_axis(t, order.reshape(*order.shape, *[1] * (t.ndim - 2)), axis=1) for t in got]


def format_table(results: Sequence[ParityResult], tolerance: Optional[float] = None,
                 runtime: str = 'onnxruntime') -> str:
    """A markdown table: input, max abs / relative difference, median latency of PyTorch and of ``runtime``,
    pass/fail."""
    rel_header = 'max rel diff' + (f' (tol {tolerance:g})' if tolerance is not None else '')
    lines = [f'| input | max abs diff | {rel_header} | labels equal | PyTorch (ms) | {runtime} (ms) | speed-up | '
             'parity |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in results:
        shape = 'x'.join(str(s) for s in r.input_shape)
        status = 'ok' if r.passed else 'FAIL' + (f' ({r.note})' if r.note else '')
        labels = '-' if r.label_agreement is None else f'{r.label_agreement:.2%}'
        lines.append(f'| {shape} | {r.max_abs_diff:.2e} | {r.max_rel_diff:.2e} | {labels} | {r.torch_ms:.1f} | '
                     f'{r.runtime_ms:.1f} | {r.torch_ms / max(r.runtime_ms, 1e-9):.2f} | {status} |')
    return '\n'.join(lines)
