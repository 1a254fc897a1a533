"""ExecuTorch export (XNNPACK backend) of a backbone or a whole segmentor / classifier, in float32 or INT8.

What is exported is the same :class:`~mmlightvit.deploy.onnx_export.ExportTarget` the ONNX exporter writes (the
fused backbone, the segmentor's logits and label map, the classifier's probabilities): ``torch.export`` captures
it, ``executorch.exir.to_edge_transform_and_lower`` hands every operator XNNPACK implements to the XNNPACK
delegate (convolutions, matrix products, element-wise and activation ops, ...) and leaves the rest to ExecuTorch's
portable kernels, and ``to_executorch`` writes the ``.pte`` program.

Shapes: batch, height and width are dynamic within bounds (``torch.export.Dim``): ExecuTorch plans the memory of
the tensors outside the delegate (the inputs and outputs) for the largest shape, so the bounds are kept to what the
model is run at (:data:`DEFAULT_MAX_BATCH`, ``max_size``); the runtime refuses a larger input with a clear error.
The graph is traced with a batch of 2: torch.export specialises a dimension traced at size 1. Targets whose
``program_fixed_size_reason`` is set export at the traced size only: EdgeNeXt, FasterViT and TransNeXt (their
backbones' ``fixed_size_program``), whose ONNX graphs are dynamic but whose size guards torch.export refuses within
bounds.

INT8 (``calibration`` given): post-training static quantization through PT2E: torchao's ``prepare_pt2e`` inserts
observers where ExecuTorch's ``XNNPACKQuantizer`` (symmetric config: weights INT8 per output channel, activations
INT8 per tensor) quantizes, the calibration inputs (the config's training images through its test pipeline,
:func:`mmlightvit.deploy.quantize.calibration_feeds`, as for the ONNX INT8 form) run through it, ``convert_pt2e``
folds the ranges into quantize / dequantize pairs and XNNPACK lowers those pairs to its INT8 kernels.

Metadata: a ``.pte`` has no free-form metadata, so the ``mmlightvit.*`` entries the ONNX exporter writes into the
graph (kind, preprocessing, class names, size divisor, config, checkpoint, precision, the input bounds) go to a
sidecar JSON file beside it, ``FILE.pte.json`` (:func:`sidecar_path`), with the SHA-256 of the program it
describes, so that a sidecar left over from another export is refused rather than believed.

Detectors: the ExecuTorch runtime of the pip wheel runs no operator without a compiled kernel registered in it, so
NMS (the custom operator ``mmlightvit::multiclass_nms``) cannot be in a program. A one-stage detector (RTMDet,
SSDLite, RetinaNet) exports up to its NMS: the program gives its ranked candidates (``candidates (N, K, 5)``: box
and score, best first; ``candidate_labels (N, K)``: -1 on padding), and the metadata holds the NMS settings
(``nms``: IoU threshold, class-agnostic or not, class count, ``max_per_img``), which
:class:`~mmlightvit.deploy.runtime.ExecuTorchSession` applies with the NMS and selection of the PyTorch graph, so it
returns the same ``dets`` and ``labels`` as the other runtimes (an app does the same NMS in its own code). Two-stage
detectors (Mask / Cascade Mask R-CNN) run NMS between their stages and are not exported (:func:`detector_reason`).
DINO, whose post-processing is a top-k, exports whole (``image`` and ``image_size`` in, ``dets`` and ``labels``
out, as for ONNX; its deformable attention runs on the portable ``grid_sampler_2d`` kernel). Detectors export at a
fixed input size (:data:`DETECTOR_SIZE_REASON`).

Importing this module imports no ExecuTorch; the functions that need it import it.
"""
import copy
import hashlib
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmlightvit.deploy.onnx_export import ExportError, ExportTarget, exported_file_metadata, short_reason
from mmlightvit.deploy.runtime import DETECTOR_KINDS, ExportedModelError
from mmlightvit.utils.checkpoint import sha256_of
from mmlightvit.utils.files import replace_file_atomically

#: The file name ending of an ExecuTorch program, and of its metadata beside it.
PTE_SUFFIX = '.pte'
SIDECAR_SUFFIX = '.json'
#: What the sidecar's ``format`` says, so that another JSON file is not read as one.
SIDECAR_FORMAT = 'mmlightvit.executorch'
#: The bounds of the dynamic dimensions (height and width: multiples of the size divisor in between).
DEFAULT_MAX_BATCH = 4
DEFAULT_MAX_SIZE = 1024
MIN_SIZE = 64
#: A dimension traced at 1 is specialised to 1 by torch.export; the batch is traced at this size.
TRACE_BATCH = 2


def sidecar_path(pte_file: str) -> str:
    """``FILE.pte.json``: the metadata of ``pte_file``."""
    return str(pte_file) + SIDECAR_SUFFIX


#: The outputs of a one-stage detector's program, which ends before its NMS (``ranked_candidates``).
PROGRAM_CANDIDATE_OUTPUTS = ('candidates', 'candidate_labels')
#: Why detectors export at one size.
DETECTOR_SIZE_REASON = ('XNNPACK lowers a reshape with one dynamic dimension only, and DINO\'s encoder reshapes over '
                        'the batch and the level sizes together; the one-stage heads\' anchor grids (mmdet\'s '
                        'prior generators, torch.meshgrid) fail to lower with symbolic sizes ("meshgrid() missing '
                        '... indexing")')


def detector_reason() -> str:
    """Why a two-stage detector is not exported to ExecuTorch here (the error and the docs say it)."""
    return ('this detector runs NMS between its two stages (the custom operator mmlightvit::multiclass_nms) and '
            'RoIAlign, which the ExecuTorch runtime of the pip wheel cannot run: it has no kernel for a custom '
            'operator, and one cannot be added without building the runtime from source. Export the detector\'s '
            'backbone (--mode backbone), or the whole detector to ONNX (one-stage detectors and DINO export whole '
            'to ExecuTorch)')


def _dynamic_shapes(target: ExportTarget, max_batch: int, max_size: int):
    """torch.export dims for the image input: batch 1..max_batch, height and width MIN_SIZE..max_size (multiples
    of the size divisor when it is above 1); a detector's ``image_size`` input shares the batch."""
    Dim = torch.export.Dim
    batch = Dim('batch', min=1, max=max_batch)
    if target.size_divisor > 1:
        d = target.size_divisor
        height = d * Dim('height_blocks', min=max(1, -(-MIN_SIZE // d)), max=max_size // d)
        width = d * Dim('width_blocks', min=max(1, -(-MIN_SIZE // d)), max=max_size // d)
    else:
        height = Dim('height', min=MIN_SIZE, max=max_size)
        width = Dim('width', min=MIN_SIZE, max=max_size)
    return ({0: batch, 2: height, 3: width}, {0: batch})[:len(target.input_names)]


class ChannelAffine(nn.Module):
    """An eval-mode ``BatchNorm1d`` as what it computes, ``x * scale + shift`` per channel (dimension 1)."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        self.register_buffer('scale', scale)
        self.register_buffer('shift', norm.bias.detach() - norm.running_mean * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1, ) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def replace_batch_norm_1d(model: nn.Module) -> int:
    """Swap every affine ``BatchNorm1d`` (classifier heads: BN before a linear layer) for :class:`ChannelAffine`;
    returns how many. ``prepare_pt2e`` folds a BatchNorm into the convolution before it; one it cannot fold makes
    ``convert_pt2e`` try its QAT conv + BN patterns, which it exports one by one (over a minute of CPU time)."""
    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm1d) and child.affine and child.track_running_stats:
                setattr(parent, name, ChannelAffine(child))
                replaced += 1
    return replaced


def untie_shared_modules(model: nn.Module) -> int:
    """Give every place that holds a submodule held elsewhere too its own copy; returns how many were copied.

    ExecuTorch's lowering folds each BatchNorm into the convolution before it by rewriting that convolution's
    weights, so a convolution shared by several branches with a BatchNorm each (RTMDet's head: one convolution per
    depth for every level, a BatchNorm per level) runs every branch with the weights of one: the program computed
    other detections than PyTorch on real images. Copies compute the same and fold separately."""
    seen, copied = set(), 0
    for _, parent in list(model.named_modules(remove_duplicate=False)):
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in seen:
                parent._modules[name] = copy.deepcopy(child)
                copied += 1
            seen.add(id(child))
    return copied


def quantize_int8(module: nn.Module, example: tuple, dynamic_shapes, calibration: Sequence[tuple],
                  module_names: Optional[Sequence[str]] = None):
    """``module`` quantized to INT8 for XNNPACK (PT2E: XNNPACKQuantizer, symmetric, weights per channel),
    its activation ranges observed on ``calibration`` (tuples of the module's inputs); ``module_names``: only
    these submodules (None: all of it). Rewrites ``module``'s BatchNorm1d layers in place: pass a copy."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    module = module.eval()
    replace_batch_norm_1d(module)
    captured = torch.export.export(module, example, dynamic_shapes=dynamic_shapes).module()
    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = (XNNPACKQuantizer() if module_names is None else _submodule_quantizer(module_names)).set_global(config)
    observed = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for inputs in calibration:
            observed(*inputs)
    return drop_contiguous(convert_pt2e(observed))


def drop_contiguous(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph_module`` without its ``.contiguous()`` calls on computed tensors. They change no value in an
    exported graph, and between a dequantize and a quantize node XNNPACK's lowering drops the copy and is left with
    a partition whose output is its input, which it refuses ("Output node ... is already in the inputs": every
    backbone's features are made contiguous for mmcv's RoIAlign, and SSDLite's EdgeNeXt outputs reach it so)."""
    for node in list(graph_module.graph.nodes):
        if node.target == torch.ops.aten.contiguous.default and node.args[0].op == 'call_function':
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)
    graph_module.recompile()
    return graph_module


def _submodule_quantizer(module_names: Sequence[str]):
    """An XNNPACKQuantizer (with a global config) whose annotations stay inside the named submodules and on float
    tensors. Its own module-name filter cannot be used: its convolution annotators ask the filter about the weight
    nodes too, which belong to no module, so no convolution was quantized, while its concatenation annotator ignores
    the filter and the dtype (a detector's post-processing concatenates its boxes with their scores, and labels):
    one INT8 scale for boxes (0 to the image size) and scores (0 to 1) together rounded every score to 0 or 1
    (RTMDet's box AP 0.394 -> 0.18). So the whole graph is annotated and the annotations outside the submodules or
    on integer tensors are removed; and the scalar-to-tensor transform, which runs over the whole graph and gives
    integer products (the anchor grids) a float factor, is skipped."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import get_module_name_filter
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    def is_float(node) -> bool:
        value = node.meta.get('val')
        return isinstance(value, torch.Tensor) and value.is_floating_point()

    class SubmoduleQuantizer(XNNPACKQuantizer):

        def transform_for_annotation(self, model):
            return model

        def annotate(self, model):
            model = super().annotate(model)
            inside = [get_module_name_filter(name) for name in module_names]
            for node in model.graph.nodes:
                inputs = [n for n in node.all_input_nodes if n.op != 'get_attr']
                keep = any(f(node) for f in inside) and is_float(node) and all(map(is_float, inputs))
                if Q_ANNOTATION_KEY in node.meta and not keep:
                    del node.meta[Q_ANNOTATION_KEY]
            return model

    return SubmoduleQuantizer()


def _int8_module_names(target: ExportTarget) -> Optional[List[str]]:
    """What INT8 quantizes of ``target``: a detector its network (the detector's submodules), not the
    post-processing around them (anchor grids, box decoding, top-k: index and coordinate arithmetic that the
    quantizer would otherwise observe as activations), as the ONNX INT8 form leaves it in float; the rest: all."""
    if target.kind not in DETECTOR_KINDS:
        return None
    return [f'detector.{name}' for name, _ in target.module.detector.named_children()]


def export_executorch(target: ExportTarget, out_file: str, shape: Sequence[int] = (224, 224),
                      dynamic: bool = True, max_batch: int = DEFAULT_MAX_BATCH, max_size: int = DEFAULT_MAX_SIZE,
                      calibration: Optional[Sequence[tuple]] = None,
                      calibration_note: str = '') -> Dict[str, str]:
    """Export ``target`` to the ExecuTorch program ``out_file`` (XNNPACK) and its sidecar metadata; returns the
    metadata.

    Args:
        shape: the traced ``(H, W)`` (padded to the size divisor); with ``dynamic=False`` the only size the program
            runs (batch 1).
        dynamic: batch ``1..max_batch``, height and width ``64..max_size`` (see the module docstring).
        calibration: INT8: the module's inputs to observe activation ranges on; None: float32.
        calibration_note: where the calibration inputs came from, for the metadata.

    Raises:
        ExportError: a two-stage detector, a detector with dynamic sizes, a bound that does not hold the traced
            size, or a failing export / lowering.
    """
    nms = target.module.nms_settings if target.kind in DETECTOR_KINDS else None
    if target.kind in DETECTOR_KINDS and target.module.uses_nms and nms is None:
        raise ExportError(f'{target.kind} ({target.backbone_type}): {detector_reason()}.')
    if target.kind in DETECTOR_KINDS and dynamic:
        raise ExportError(f'Detectors export to ExecuTorch at a fixed size only (--static): {DETECTOR_SIZE_REASON}.')
    if dynamic and target.program_fixed_size_reason:
        raise ExportError(f'{target.backbone_type} cannot be exported to ExecuTorch with dynamic height and width: '
                          f'{target.program_fixed_size_reason}. Export it at a fixed size instead (--static).')
    height, width = target.padded(*shape)
    if dynamic and not (max(height, width) <= max_size and min(height, width) >= MIN_SIZE
                        and TRACE_BATCH <= max_batch):
        raise ExportError(f'The traced size {height}x{width} must lie within {MIN_SIZE}..{max_size} (--max-size) '
                          f'and --max-batch must be at least {TRACE_BATCH}.')
    batch = TRACE_BATCH if dynamic else 1
    example = target.example_inputs(torch.randn(batch, 3, height, width))
    dynamic_shapes = _dynamic_shapes(target, max_batch, max_size) if dynamic else None
    with torch.no_grad():
        # as for ONNX: backbones that cache size-dependent tables find real tensors for the traced size
        target.module(*example)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    try:
        module = copy.deepcopy(target.module)
        untie_shared_modules(module)
        if nms is not None:  # the program ends before the NMS, which the session runs (see the module docstring)
            module.nms_in_graph = False
        if calibration is not None:
            module = quantize_int8(module, example, dynamic_shapes, calibration, _int8_module_names(target))
            # the out variants of the (de)quantize ops that XNNPACK does not take (DINO's, around its deformable
            # attention), without which to_executorch stops with "Missing out variants"
            import executorch.kernels.quantized  # noqa: F401
        program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
        buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    except Exception as err:  # torch.export / quantization / lowering errors
        raise ExportError(f'Exporting {target.kind} ({target.backbone_type}) to ExecuTorch failed: '
                          f'{type(err).__name__}: {short_reason(err, max_lines=4)}') from err
    metadata = exported_file_metadata(target, dynamic)
    metadata.update(backend='executorch (XNNPACK)', input_names=json.dumps(target.input_names),
                    output_names=json.dumps(target.output_names), precision='int8' if calibration else 'fp32')
    if nms is not None:
        metadata.update(program_output_names=json.dumps(list(PROGRAM_CANDIDATE_OUTPUTS)), nms=json.dumps(nms))
    if dynamic:
        metadata.update(max_batch=str(max_batch), min_size=str(MIN_SIZE), max_size=str(max_size))
    else:
        metadata['input_shape'] = json.dumps([1, 3, height, width])
    if calibration is not None:
        metadata['quantization'] = (f'PT2E static, XNNPACKQuantizer symmetric: weights int8 per output channel, '
                                    f'activations int8 per tensor; {len(calibration)} calibration inputs'
                                    f'{" (" + calibration_note + ")" if calibration_note else ""}')

    def write_program(path):
        with open(path, 'wb') as f:
            f.write(buffer)

    sidecar = dict(format=SIDECAR_FORMAT, pte_sha256=hashlib.sha256(buffer).hexdigest(), metadata=metadata)
    replace_file_atomically(out_file, write_program)
    replace_file_atomically(sidecar_path(out_file), lambda path: _write_json(path, sidecar))
    return metadata


def _write_json(path: str, value: dict) -> None:
    with open(path, 'w') as f:
        json.dump(value, f, indent=2)
        f.write('\n')


def read_pte_metadata(pte_file: str) -> Dict[str, str]:
    """The metadata of ``pte_file`` from its sidecar (what :func:`export_executorch` wrote), after checking that
    the file is an ExecuTorch program and that the sidecar describes this very file."""
    with open(pte_file, 'rb') as f:
        header = f.read(8)
    # the flatbuffer's file identifier, 'ET' and a two-digit schema version, follows the 4-byte root offset
    if len(header) < 8 or header[4:6] != b'ET':
        raise ExportedModelError(f'{pte_file!r} is not an ExecuTorch program (.pte): its header has no ExecuTorch '
                                 'file identifier.')
    sidecar = sidecar_path(pte_file)
    if not osp.isfile(sidecar):
        raise ExportedModelError(f'{pte_file!r} holds a model without mmlightvit metadata: {sidecar!r}, written '
                                 'beside it by tools/deploy/export_executorch.py, is missing.')
    try:
        with open(sidecar) as f:
            content = json.load(f)
    except (OSError, ValueError) as err:
        raise ExportedModelError(f'{sidecar!r} is not readable JSON ({err}).') from err
    if not isinstance(content, dict) or content.get('format') != SIDECAR_FORMAT:
        raise ExportedModelError(f'{sidecar!r} is no mmlightvit ExecuTorch metadata file (format '
                                 f'{SIDECAR_FORMAT!r} expected).')
    if content.get('pte_sha256') != sha256_of(pte_file):
        raise ExportedModelError(f'{sidecar!r} describes another program than {pte_file!r} (their SHA-256 differ): '
                                 'the .pte was replaced without its metadata. Export it again.')
    return {str(k): str(v) for k, v in content.get('metadata', {}).items()}


def input_bounds(metadata: Dict[str, str]) -> Tuple[Optional[List[int]], Optional[Tuple[int, int, int]]]:
    """``(fixed input shape or None, (max batch, min size, max size) or None)`` from the metadata."""
    if 'input_shape' in metadata:
        return json.loads(metadata['input_shape']), None
    return None, (int(metadata['max_batch']), int(metadata['min_size']), int(metadata['max_size']))
