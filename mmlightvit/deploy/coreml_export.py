"""Core ML conversion (coremltools 9) of what :func:`~mmlightvit.deploy.onnx_export.build_export_target` builds:
a re-parameterised backbone, a classifier or a segmentor, as an ML Program ``.mlpackage``.

The program is converted from ``torch.export`` (the same traced graph the ONNX exporter starts from) with
``ct.convert(..., convert_to='mlprogram', minimum_deployment_target=iOS16)`` at a fixed input size, as Core ML
latency is measured per size (RepViT's protocol: iPhone 12, iOS 16, batch 1, 224 x 224). Options:

* ``precision``: ``fp32``, or ``fp16`` (every computing op in float16; what the Neural Engine runs). Inputs and
  outputs stay float32 either way (labels int32); Core ML casts at the edges.
* ``int8_weights``: weights stored as 8-bit integers with a per-channel scale
  (``coremltools.optimize.coreml.linear_quantize_weights``), dequantised at load time: a smaller file, the same
  computation precision.
* ``enumerated_shapes`` / ``size_range``: the package also accepts other input sizes (``ct.EnumeratedShapes``, a
  list of sizes compiled ahead; or ``ct.RangeDim``, any height and width in a range). Only for targets without a
  ``program_fixed_size_reason``: FasterViT and TransNeXt build their size-dependent tables with symbolic sizes from
  ops coremltools 9.0 has no converter for (``aten.__and__``, ``aten.__or__``, ``sym_max``) and convert at one size
  per file (their backbones' ``fixed_size_program``). With coremltools 9.0 RepViT backbones and
  classifiers convert so; EdgeNeXt (a 2-D padding computed from the size) and the segmentors (a nearest upsample
  to a size computed at run time) do not.

The image input is the preprocessed tensor, as in the ONNX export; the package's user-defined metadata carries the
same ``mmlightvit.*`` entries (mean, std, channel order, kind, ...), plus the precision and the input sizes.

Whole detectors do not convert: coremltools 9.0's ``torch.export`` front end has no converter for ops their
post-processing needs (``aten.__and__``, ``aten.where.ScalarOther``, ``torchvision::roi_align``, the project's
``mmlightvit::multiclass_nms``); with converters added for those, it computes integer index arithmetic
(``div(rounding_mode='floor')``) in float and rejects the result as a gather index. :func:`unconvertible_ops`
names the ops of any graph that coremltools cannot convert, before the conversion starts.

Nothing here runs a converted model: Core ML runs on Apple platforms only (coremltools' Linux wheel converts and
saves; ``MLModel.predict`` needs macOS). Numerical parity with PyTorch and latency are measured on a Mac / iPhone
(tools/README.md, "Core ML on an iPhone").
"""
import os
import os.path as osp
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from mmlightvit.deploy.onnx_export import ExportError, ExportTarget, short_reason
from mmlightvit.deploy.runtime import DETECTOR_KINDS
from mmlightvit.utils.files import OutputPathError, check_output, replace_folder_atomically

PRECISIONS = ('fp32', 'fp16')
#: RepViT's latency protocol runs iOS 16; ML Programs with int8 weights need iOS 16 too.
DEPLOYMENT_TARGET = 'iOS16'
PACKAGE_SUFFIX = '.mlpackage'
METADATA_PREFIX = 'mmlightvit.'


@dataclass
class FeatureSummary:
    """One input or output of a saved package."""
    name: str
    shape: Tuple[int, ...]
    dtype: str
    accepted: str = ''  # flexible inputs: the enumerated sizes or the ranges

    def __str__(self) -> str:
        text = f'{self.name} {self.dtype} ({"x".join(map(str, self.shape)) or "flexible"})'
        return text + (f', accepts {self.accepted}' if self.accepted else '')


@dataclass
class CoreMLSummary:
    """What a saved ``.mlpackage`` holds, read back from its specification."""
    path: str
    inputs: List[FeatureSummary]
    outputs: List[FeatureSummary]
    op_counts: Dict[str, int]
    metadata: Dict[str, str]  # the mmlightvit.* entries, without the prefix
    size_bytes: int
    specification_version: int
    export_seconds: float = 0.0  # torch.export
    convert_seconds: float = 0.0  # coremltools (and weight quantisation)
    float32_ops: List[str] = field(default_factory=list)  # computing ops that run in float32

    def format(self) -> str:
        ops = ', '.join(f'{name} {count}' for name, count in sorted(self.op_counts.items(), key=lambda kv: -kv[1]))
        lines = [f'{self.path}: {self.size_bytes / 2**20:.2f} MiB on disk, Core ML specification '
                 f'{self.specification_version}, compute precision {self.metadata.get("compute_precision", "?")}'
                 + (', int8 weights' if self.metadata.get('weights') == 'int8' else ''),
                 '  inputs:  ' + '; '.join(map(str, self.inputs)),
                 '  outputs: ' + '; '.join(map(str, self.outputs)),
                 f'  {sum(self.op_counts.values())} MIL ops: {ops}']
        if self.metadata.get('compute_precision') == 'fp16':
            lines.append('  float32 computing ops: ' + (', '.join(self.float32_ops) or 'none'))
        if self.export_seconds or self.convert_seconds:
            lines.append(f'  torch.export {self.export_seconds:.1f} s, conversion {self.convert_seconds:.1f} s')
        return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Checks before any work


def check_package_output(path: str, inputs: Sequence[str] = (), overwrite: bool = False) -> Optional[str]:
    """:func:`~mmlightvit.utils.files.check_output` for a ``.mlpackage`` (a folder): never an input, never an
    existing file, and an existing folder only with ``overwrite`` and only when it is a Core ML package (a user's
    other folder is never replaced). Returns the note to print when a package will be replaced."""
    if not str(path).endswith(PACKAGE_SUFFIX):
        raise OutputPathError(f'--out {path!r}: an ML Program is saved as a folder ending in {PACKAGE_SUFFIX}.')
    if osp.isfile(path) or osp.islink(path):
        raise OutputPathError(f'--out {path!r} is an existing file; choose a new {PACKAGE_SUFFIX} path.')
    if osp.isdir(path) and os.listdir(path) and not osp.isfile(osp.join(path, 'Manifest.json')):
        raise OutputPathError(f'--out {path!r} is an existing folder that is not a Core ML package; it is never '
                              'replaced. Choose another path.')
    # An existing package is checked as the folder it is; a new path as a file would be (its parent writable, no
    # folder created before the conversion succeeds).
    note = check_output(path, '--out', inputs=inputs, overwrite=overwrite, folder=osp.isdir(path))
    return note and f'--out: replacing the existing package {osp.abspath(path)}.'


def parse_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ExportError(f'Unknown precision {precision!r}; choose one of {", ".join(PRECISIONS)}.')
    return precision


def _register_size_arithmetic() -> None:
    """Converters for Python's ``//`` and ``%`` on sizes, which a graph with flexible input sizes computes at run
    time (RepViT's and the segmentors' ``(size - 1) // stride + 1``, EdgeNeXt's padding ``-size % stride``).

    coremltools 9.0 has no converter for ``%`` and converts ``//`` to float32 (as for ``torch.floor_divide`` on
    tensors), so a size derived from it reaches ops that need int32 (an upsample's output size) as a float and the
    conversion fails. On Python integers both stay integers. Registered when a conversion runs (not on import);
    the override only changes these two Python operators."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs, promote_input_dtypes
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def floordiv(context, node):
        x, y = promote_input_dtypes(_get_inputs(context, node, expected=2))
        context.add(mb.floor_div(x=x, y=y, name=node.name))

    def mod(context, node):  # Python's sign convention (that of the divisor): x - (x // y) * y
        x, y = promote_input_dtypes(_get_inputs(context, node, expected=2))
        context.add(mb.sub(x=x, y=mb.mul(x=mb.floor_div(x=x, y=y), y=y), name=node.name))

    register_torch_op(floordiv, torch_alias=['floordiv'], override=True)
    register_torch_op(mod, torch_alias=['mod'], override=True)


def _op_kind(node) -> str:
    """The name coremltools looks a torch.export node up by (its converter registry's key, which its front end
    tests as is: ``aten.__and__`` is not found although ``get_func`` would map it to ``and``)."""
    from coremltools.converters.mil.frontend.torch.utils import sanitize_op_kind
    try:
        kind = node.target.name()
    except AttributeError:
        kind = node.target.__name__ if callable(node.target) else str(node.target)
    return sanitize_op_kind(kind)


def unconvertible_ops(program: torch.export.ExportedProgram) -> List[str]:
    """The ops of ``program`` that coremltools has no converter for (as torch names them: ``aten.X.overload``,
    ``operator.X`` for Python's operators on sizes), sorted."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY
    _register_size_arithmetic()
    missing = {str(node.target) if hasattr(node.target, 'name') else f'operator.{node.target.__name__}'
               for node in program.graph.nodes
               if node.op == 'call_function' and _op_kind(node) not in _TORCH_OPS_REGISTRY.name_to_func_mapping}
    return sorted(missing)


# ----------------------------------------------------------------------------------------------------------------
# Conversion


def _flexible_input_shape(target: ExportTarget, shape: Tuple[int, int], enumerated_shapes, size_range):
    """The coremltools input shape, the torch.export dynamic shapes and the accepted sizes (as text) for the
    requested sizes."""
    import coremltools as ct
    if enumerated_shapes and size_range:
        raise ExportError('Give enumerated shapes or a size range, not both.')
    if not (enumerated_shapes or size_range):
        return (1, 3, *shape), None, f'{shape[0]}x{shape[1]}'
    if target.program_fixed_size_reason:
        raise ExportError(f'{target.backbone_type} converts at one input size per file: '
                          f'{target.program_fixed_size_reason}. Convert each size in a run of its own.')
    dim = torch.export.Dim.DYNAMIC
    dynamic_shapes = ({2: dim, 3: dim}, )
    if size_range:
        low, high = size_range
        if not 0 < low <= min(shape) <= max(shape) <= high:
            raise ExportError(f'The size range {low}..{high} must hold the --shape {shape[0]}x{shape[1]}.')
        image_shape = ct.Shape((1, 3, ct.RangeDim(low, high, shape[0]), ct.RangeDim(low, high, shape[1])))
        return image_shape, dynamic_shapes, f'{low}..{high} x {low}..{high}'
    sizes = [tuple(s) for s in enumerated_shapes]
    sizes = [shape] + [s for s in dict.fromkeys(sizes) if s != shape]  # the traced size first, no repeats
    image_shape = ct.EnumeratedShapes([(1, 3, *s) for s in sizes], default=(1, 3, *shape))
    return image_shape, dynamic_shapes, ','.join(f'{h}x{w}' for h, w in sizes)


def channel_order(metadata: Dict[str, str]) -> str:
    """The channel order of the image input: mmcv loads images as BGR; the preprocessor may flip them to RGB."""
    flipped = any(metadata.get(f'preprocess.{key}') == 'True' for key in ('bgr_to_rgb', 'to_rgb', 'rgb_to_bgr'))
    return 'RGB' if flipped else 'BGR'


def _trace(target: ExportTarget, example: tuple, dynamic_shapes) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(target.module, example, dynamic_shapes=dynamic_shapes).run_decompositions({})
    except Exception as err:  # guards on the size (a Python `if` on it), untraceable code
        raise ExportError(f'torch.export of {target.kind} ({target.backbone_type}) failed: '
                          f'{type(err).__name__}: {short_reason(err)}') from err


def convert_coreml(target: ExportTarget, out_file: str, shape: Sequence[int] = (224, 224), precision: str = 'fp32',
                   int8_weights: bool = False, enumerated_shapes: Optional[Sequence[Sequence[int]]] = None,
                   size_range: Optional[Tuple[int, int]] = None) -> CoreMLSummary:
    """Convert ``target`` (batch 1, ``shape`` = height, width) to the ML Program ``out_file`` (``.mlpackage``,
    replaced in one rename; check it first with :func:`check_package_output`) and return its summary.

    Raises:
        ExportError: a graph with ops coremltools cannot convert (named; every detector), a fixed-size backbone
            asked for flexible sizes, a conversion failure.
    """
    precision = parse_precision(precision)
    import coremltools as ct
    import numpy as np
    height, width = target.padded(*shape)
    image_shape, dynamic_shapes, sizes = _flexible_input_shape(target, (height, width), enumerated_shapes, size_range)
    example = target.example_inputs(torch.randn(1, 3, height, width))
    with torch.no_grad():
        # A forward at the traced size first: FasterViT and TransNeXt cache size-dependent tables. Its outputs
        # say which are float (kept float32 at the package's edge) and which integer (labels: int32).
        expected = target.module(*example)
    if dynamic_shapes and len(example) > 1:
        dynamic_shapes = (*dynamic_shapes, None)
    start = time.perf_counter()
    program = _trace(target, example, dynamic_shapes)
    export_seconds = time.perf_counter() - start
    missing = unconvertible_ops(program)  # (which registers the converters of Python's size arithmetic first)
    if missing:
        hint = (' Detectors\' post-processing (NMS, RoIAlign) does not convert; --mode backbone converts the '
                'backbone.' if target.kind in DETECTOR_KINDS else '')
        raise ExportError(f'coremltools {ct.__version__} has no converter for {", ".join(missing)} in the '
                          f'{target.kind} ({target.backbone_type}) graph: it does not convert to Core ML.{hint}')
    inputs = [ct.TensorType(name=target.input_names[0], shape=image_shape, dtype=np.float32)]
    inputs += [ct.TensorType(name=name, shape=tuple(t.shape), dtype=np.int32)
               for name, t in zip(target.input_names[1:], example[1:])]
    outputs = [ct.TensorType(name=name, dtype=np.float32 if t.is_floating_point() else None)
               for name, t in zip(target.output_names, expected)]
    start = time.perf_counter()
    try:
        model = ct.convert(
            program, convert_to='mlprogram', minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
            compute_precision=ct.precision.FLOAT16 if precision == 'fp16' else ct.precision.FLOAT32,
            inputs=inputs, outputs=outputs)
        if int8_weights:
            from coremltools.optimize.coreml import (OpLinearQuantizerConfig, OptimizationConfig,
                                                     linear_quantize_weights)
            config = OptimizationConfig(OpLinearQuantizerConfig(mode='linear_symmetric', dtype='int8'))
            model = linear_quantize_weights(model, config)
    except Exception as err:  # a converter's assertion or validation error deep inside coremltools
        raise ExportError(f'coremltools {ct.__version__} could not convert {target.kind} ({target.backbone_type}): '
                          f'{type(err).__name__}: {str(err)[:800]}') from err
    convert_seconds = time.perf_counter() - start
    metadata = dict(target.metadata, kind=target.kind, size_divisor=str(target.size_divisor),
                    dynamic_size=str(dynamic_shapes is not None), input_sizes=sizes, compute_precision=precision,
                    weights='int8' if int8_weights else 'float')
    metadata['preprocess.channel_order'] = channel_order(target.metadata)
    model.user_defined_metadata.update({METADATA_PREFIX + k: v for k, v in metadata.items()})
    model.short_description = (f'{target.backbone_type} {target.kind} ({metadata.get("config", "")}); input: the '
                               'preprocessed image (mmlightvit.preprocess.* metadata)')
    _save(model, out_file)
    return read_package(out_file, export_seconds, convert_seconds)


def _save(model, out_file: str) -> None:
    """Save into a temporary folder beside ``out_file``, then move the package there in one rename (an existing
    package, which :func:`check_package_output` allowed to replace, is moved into the temporary folder first and
    removed with it)."""
    def write(tmp: str) -> None:
        model.save(osp.join(tmp, 'new' + PACKAGE_SUFFIX))

    def publish(tmp: str, path: str) -> None:
        if osp.isdir(path):
            os.replace(path, osp.join(tmp, 'old' + PACKAGE_SUFFIX))
        os.replace(osp.join(tmp, 'new' + PACKAGE_SUFFIX), path)

    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    replace_folder_atomically(out_file, write, publish)


# ----------------------------------------------------------------------------------------------------------------
# Reading a saved package (works on Linux: it reads the specification, it does not load the model)


def _feature(description) -> FeatureSummary:
    from coremltools.proto import FeatureTypes_pb2
    array = description.type.multiArrayType
    dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
    accepted = ''
    if array.HasField('enumeratedShapes'):
        accepted = ', '.join('x'.join(map(str, s.shape[2:])) for s in array.enumeratedShapes.shapes)
    elif array.HasField('shapeRange'):
        accepted = ' x '.join(f'{r.lowerBound}..{r.upperBound}' for r in array.shapeRange.sizeRanges[2:])
    return FeatureSummary(description.name, tuple(array.shape), dtype, accepted)


def _operations(block):
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _operations(inner)


def _is_float32_compute(op) -> bool:
    from coremltools.proto import MIL_pb2
    if op.type in ('const', 'cast') or op.type.startswith('constexpr_'):
        return False
    return any(o.type.tensorType.dataType == MIL_pb2.FLOAT32 for o in op.outputs if o.type.HasField('tensorType'))


def read_package(path: str, export_seconds: float = 0.0, convert_seconds: float = 0.0) -> CoreMLSummary:
    """The inputs, outputs, MIL op counts, metadata and size of the saved package ``path``."""
    import coremltools as ct
    spec = ct.utils.load_spec(path)
    counts, float32_ops = Counter(), Counter()
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in _operations(block):
                counts[op.type] += 1
                if _is_float32_compute(op):
                    float32_ops[op.type] += 1
    user = spec.description.metadata.userDefined
    metadata = {k[len(METADATA_PREFIX):]: v for k, v in user.items() if k.startswith(METADATA_PREFIX)}
    size = sum(osp.getsize(osp.join(folder, name)) for folder, _, names in os.walk(path) for name in names)
    return CoreMLSummary(path, [_feature(d) for d in spec.description.input],
                         [_feature(d) for d in spec.description.output], dict(counts), metadata, size,
                         spec.specificationVersion, export_seconds, convert_seconds,
                         [f'{name} x{count}' for name, count in sorted(float32_ops.items())])
