"""Latency, throughput and memory of backbones and whole models (the core of ``tools/analysis/benchmark.py``).

A *target* is either ``FAMILY:ARCH`` (an mmlightvit backbone, e.g. ``RepViT:m1.1``) or an mmdet / mmseg config
(its whole model in predict mode, or its backbone alone). Each target is timed in several *forms* on the same
input in one process: ``eager`` (as trained), ``fused`` (re-parameterised, where the model has something to
fold), ``compiled`` (``torch.compile`` of the fastest eager form; for whole models only the backbone is compiled,
mmdet's post-processing does not trace), the deployment forms of a backbone (``channels-last``, ``oneDNN``: a
frozen TorchScript graph with oneDNN fusions, ``onnxruntime``) and ``reference`` (the same network from timm /
``fastervit``, with the same weights; ``reference fused`` is timm's own re-parameterised model). For TransNeXt,
its attention code paths (``reference``, ``efficient``, ``flash``; :data:`ATTENTION_PATHS`) can be the forms
instead. A form runs in inference (eval mode, no autograd) or as a training step (train mode, forward and backward
of the summed outputs). Forms run back to back in alternating order after warm-up, so all of them see the same
background load, and the medians are compared: these machines are noisy, ratios measured in one run are what to
trust. Peak memory: on CUDA the allocator's peak; on the CPU the resident-set peak of a form's first run in a
process of its own (:func:`first_run_peak_mb`).
"""
import copy
import math
import statistics
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmlightvit.models.layers import fuse_model
from mmlightvit.utils.autocast import autocast_children

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


@dataclass
class Form:
    """One way of running a target: ``run(inputs)`` is what gets timed."""
    name: str
    module: nn.Module
    run: Callable[[Any], Any]
    compile_seconds: Optional[float] = None
    whole_model: bool = False  # a detector / segmentor in predict mode (else a backbone)
    train: bool = False  # a training step: train mode, forward and backward of the summed outputs (backbones)
    own_precision: bool = False  # run by another runtime in the precision of its graph: timed once, as fp32


@dataclass
class Measurement:
    target: str
    form: str
    shape: Tuple[int, int]
    batch: int
    dtype: str
    device: str
    median_ms: float
    peak_memory_mb: Optional[float]  # above what was held before the run (see ``_peak_memory_mb``)
    max_rel_diff: Optional[float]  # against the first form's output (eager), relative to its largest value
    compile_seconds: Optional[float] = None
    macs_per_image: Optional[int] = None  # the project's MAC count of the target at this shape (eager form)

    @property
    def images_per_second(self) -> float:
        return self.batch * 1000. / self.median_ms

    @property
    def gflops_per_second(self) -> Optional[float]:
        """Achieved rate in the project's FLOP convention (one multiply-add = one FLOP, i.e. GMAC/s)."""
        if self.macs_per_image is None:
            return None
        return self.macs_per_image * self.batch / (self.median_ms * 1e6)


def has_fusable_modules(model: nn.Module) -> bool:
    return any(callable(getattr(m, 'fuse', None)) for m in model.modules())


def _first_tensor(output: Any) -> Optional[torch.Tensor]:
    """The tensor to compare forms by: a backbone's deepest feature map, a segmentor's logits, a detector's boxes."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)) and output:
        return _first_tensor(output[-1]) if all(isinstance(o, torch.Tensor) for o in output) else \
            _first_tensor(output[0])
    for name in ('pred_instances', 'seg_logits'):  # mmdet / mmseg data samples
        field = getattr(output, name, None)
        if field is not None:
            return field.bboxes if name == 'pred_instances' else field.data
    return None


def relative_difference(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[float]:
    if a is None or b is None or a.shape != b.shape:
        return None
    if a.numel() == 0:  # e.g. a detector with random weights that keeps no boxes
        return 0.0
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def _synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def autocast_context(form: Form, device: str, dtype: str):
    """fp32 runs as is; fp16 / bf16 run under autocast (weights stay fp32, as AMP inference does). A detector on
    the CPU autocasts its backbone and neck only: mmcv's CPU kernels (NMS, RoIAlign) take float32 alone."""
    if dtype == 'fp32':
        return nullcontext()
    if device == 'cpu' and dtype == 'fp16':
        raise ValueError('fp16 autocast is for CUDA; on the CPU use --dtype bf16 (or fp32).')
    children = None
    if device == 'cpu' and form.whole_model and not hasattr(form.module, 'decode_head'):  # a detector
        children = [name for name in ('backbone', 'neck') if hasattr(form.module, name)]
    return autocast_children(form.module, children, device, DTYPES[dtype])


def _tensors(output: Any) -> List[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    return [t for item in output for t in _tensors(item)] if isinstance(output, (list, tuple)) else []


def _run(form: Form, inputs: Any, device: str, dtype: str) -> Any:
    with torch.set_grad_enabled(form.train), autocast_context(form, device, dtype):
        output = form.run(inputs)
        if form.train:
            form.module.zero_grad(set_to_none=True)
            sum(t.float().mean() for t in _tensors(output)).backward()
            output = [t.detach() for t in _tensors(output)]
    return output


def time_forms(forms: Sequence[Form], inputs: Any, device: str, dtype: str, repeat: int, warmup: int,
               target: str, shape: Tuple[int, int], batch: int,
               macs_per_image: Optional[int] = None, settle: int = 0) -> List[Measurement]:
    """Median latency of each form over ``repeat`` interleaved rounds, after ``warmup`` untimed runs of each.
    ``macs_per_image`` (the target's count at ``shape``) gives each measurement its achieved rate. ``settle``:
    untimed runs of a form right before each of its timed runs, so that it does not pay for the previous form's
    threads still holding the cores (PyTorch's OpenMP threads spin for a while after each operation; a form run
    by another runtime, such as onnxruntime, then finds the cores busy). Under autocast (``dtype`` fp16 / bf16)
    the forms with their ``own_precision`` are left out."""
    forms = [form for form in forms if dtype == 'fp32' or not form.own_precision]
    outputs = {}
    for form in forms:
        start = time.perf_counter()
        output = _run(form, inputs, device, dtype)  # for a compiled form, the first call compiles
        _synchronize(device)
        if form.name.startswith('compiled') and form.compile_seconds is None:
            form.compile_seconds = time.perf_counter() - start
        # A copy: predict mode writes into the data samples it is given, which every form shares.
        first = _first_tensor(output)
        outputs[form.name] = None if first is None else first.detach().clone()
    for _ in range(warmup):
        for form in forms:
            _run(form, inputs, device, dtype)
    times: Dict[str, List[float]] = {form.name: [] for form in forms}
    for round_index in range(repeat):
        # Alternate the order so no form always runs right after the same other one (caches, clocks).
        order = forms if round_index % 2 == 0 else list(reversed(forms))
        for form in order:
            for _ in range(settle):
                _run(form, inputs, device, dtype)
            _synchronize(device)
            start = time.perf_counter()
            _run(form, inputs, device, dtype)
            _synchronize(device)
            times[form.name].append((time.perf_counter() - start) * 1000)
    peaks = {form.name: _peak_memory_mb(form, inputs, device, dtype) if device == 'cuda' else None for form in forms}

    eager_output = outputs[forms[0].name]
    return [
        Measurement(target, form.name, shape, batch, dtype, device, statistics.median(times[form.name]),
                    peaks[form.name],
                    None if form is forms[0] else relative_difference(eager_output, outputs[form.name]),
                    form.compile_seconds, macs_per_image) for form in forms
    ]


def _peak_memory_mb(form: Form, inputs: Any, device: str, dtype: str) -> Optional[float]:
    """CUDA: the allocator's peak during one run (after warm-up) above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated()
    _run(form, inputs, device, dtype)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - held) / 2**20


def _status_kb(field: str) -> Optional[int]:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return None


def first_run_peak_mb(form: Form, inputs: Any, device: str, dtype: str) -> float:
    """Peak memory of the first run of ``form`` above what the process held just before it. CUDA: the
    allocator's peak. CPU: the resident-set peak (``VmHWM``, reset through ``/proc/self/clear_refs``; Linux only),
    tensors plus allocator overhead, a coarse but honest number. Only meaningful in a process that ran nothing
    before (freed pages that the allocator keeps would hide the next run's needs): the tool runs each form in a
    process of its own. The first run includes whatever the form builds and caches (e.g. TransNeXt's tables)."""
    if device == 'cuda':
        return _peak_memory_mb(form, inputs, device, dtype)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak resident set to the current one
    except OSError:
        return math.nan
    held = _status_kb('VmRSS')
    _run(form, inputs, device, dtype)
    return (_status_kb('VmHWM') - held) / 1024


def compiled_form(form: Form, whole_model: bool, **compile_kwargs) -> Form:
    """``torch.compile`` of a form (a copy: the eager form keeps running eagerly). For whole models only the
    backbone is compiled, because the heads' post-processing (NMS, per-image loops) breaks graphs anyway."""
    module = copy.deepcopy(form.module)
    if whole_model:
        module.backbone = torch.compile(module.backbone, **compile_kwargs)
        run = _predict_runner(module)
    else:
        compiled = torch.compile(module, **compile_kwargs)
        run = compiled
    return Form(f'compiled ({form.name})', module, run, whole_model=whole_model)


def _predict_runner(model: nn.Module) -> Callable[[Any], Any]:
    def run(batch):
        inputs, data_samples = batch
        return model(inputs, data_samples, mode='predict')

    return run


# ----------------------------------------------------------------------------------------------------------------
# Targets


def parse_arch_target(target: str) -> Optional[Tuple[str, str]]:
    """``'RepViT:m1.1'`` -> ``('RepViT', 'm1.1')``; a config path -> ``None``."""
    if target.endswith('.py') or ':' not in target:
        return None
    family, _, arch = target.partition(':')
    return family, arch


def backbone_forms(backbone: nn.Module, fuse: bool = True) -> List[Form]:
    backbone = backbone.eval()
    forms = [Form('eager', backbone, backbone)]
    if fuse and has_fusable_modules(backbone):
        fused = fuse_model(copy.deepcopy(backbone)).eval()
        forms.append(Form('fused', fused, fused))
    return forms


#: TransNeXt's attention code paths, as benchmark forms: name -> (``attn_impl``, ``fast_inference``). ``flash``
#: is the default inference form (tables cached per input size, the CPU flash-attention kernel); ``efficient``
#: rebuilds the position bias every forward (the training path); ``reference`` is the unfold formulation of the
#: official code.
ATTENTION_PATHS = {'reference': ('reference', False), 'efficient': ('efficient', False), 'flash': ('efficient', True)}
#: Former names of attention paths -> their names now; accepted with a DeprecationWarning for one more release.
DEPRECATED_ATTENTION_PATHS = {'fused': 'flash'}


def attention_path(name: str, stacklevel: int = 2) -> str:
    """The name of attention path ``name`` in :data:`ATTENTION_PATHS`: ``name`` itself, or for a former name the
    current one, with a DeprecationWarning (``stacklevel``: ``warnings.warn``'s, 2 names the caller)."""
    if name in DEPRECATED_ATTENTION_PATHS:
        new = DEPRECATED_ATTENTION_PATHS[name]
        warnings.warn(f'The TransNeXt attention path {name!r} is now called {new!r}; {name!r} is deprecated and '
                      f'will be removed in the next release: use {new!r}.', DeprecationWarning, stacklevel=stacklevel)
        return new
    if name not in ATTENTION_PATHS:
        raise ValueError(f'Unknown attention path {name!r}; choose from {sorted(ATTENTION_PATHS)}.')
    return name


def attention_path_forms(backbone: nn.Module, paths: Sequence[str]) -> List[Form]:
    """One form per attention path of a TransNeXt backbone (copies with the same weights), named ``attn=PATH``
    (a former path name gives the form of its current name, see :func:`attention_path`)."""
    if not hasattr(backbone, 'set_attn_impl'):
        raise ValueError(f'{type(backbone).__name__} has no attention paths to choose (TransNeXt has).')
    forms = []
    for path in paths:
        path = attention_path(path, stacklevel=3)
        impl, fast = ATTENTION_PATHS[path]
        module = copy.deepcopy(backbone).set_attn_impl(impl).eval()
        module.fast_inference = fast
        forms.append(Form(f'attn={path}', module, module))
    return forms


def as_training_steps(forms: Sequence[Form]) -> List[Form]:
    """The forms as training steps (train mode; forward and backward of the summed outputs)."""
    for form in forms:
        form.module.train()
        form.train = True
    return list(forms)


def reference_forms(family: str, arch: str, backbone: nn.Module, fuse: bool = True) -> List[Form]:
    """The reference implementation with our backbone's weights loaded into ours from it (so outputs compare),
    and, for a re-parameterisable family, the reference's own re-parameterised model (timm's
    ``reparameterize_model``): our fused form is compared with that, like with like."""
    from mmlightvit.analysis.reference_models import REFERENCE_MODELS, build_reference, import_timm
    reference = build_reference(family, arch).eval()
    backbone.load_state_dict(backbone.convert_checkpoint(reference.state_dict()), strict=True)
    package = REFERENCE_MODELS[family][0]
    forms = [Form(f'reference ({package})', reference, reference.forward_features)]
    if fuse and package == 'timm' and has_fusable_modules(reference):
        import_timm()
        from timm.utils.model import reparameterize_model
        fused = reparameterize_model(copy.deepcopy(reference)).eval()
        forms.append(Form(f'reference fused ({package})', fused, fused.forward_features))
    return forms


def channels_last_form(form: Form) -> Form:
    """The backbone form with NHWC weights and input (oneDNN's preferred layout for convolutions on CPUs)."""
    module = copy.deepcopy(form.module).to(memory_format=torch.channels_last)

    def run(x):
        return module(x.contiguous(memory_format=torch.channels_last))

    return Form(f'channels-last ({form.name})', module, run)


def onednn_form(form: Form, example: torch.Tensor) -> Form:
    """A frozen TorchScript graph of the backbone form, with oneDNN's inference fusions
    (``torch.jit.optimize_for_inference``: conv + add / activation fused, weights pre-packed). Traced at the
    example's size; it runs other sizes as long as the network has no size-dependent Python branches."""
    from mmlightvit.deploy.onnx_export import BackboneFeatures
    module = copy.deepcopy(form.module).eval()
    with torch.no_grad():
        traced = torch.jit.trace(BackboneFeatures(module).eval(), example, check_trace=False)
        optimized = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return Form(f'oneDNN ({form.name})', module, optimized)


def _backbone_export_target(form: Form, shape: Tuple[int, int], backbone_type: str):
    """The export target of a backbone form (a copy of its module) and its size-dynamic flag."""
    from mmlightvit.deploy.onnx_export import BackboneFeatures, ExportTarget
    module = copy.deepcopy(form.module).cpu().float().eval()
    wrapped = BackboneFeatures(module).eval()
    with torch.no_grad():
        num_outputs = len(wrapped(torch.zeros(1, 3, *shape)))
    return ExportTarget(module=wrapped, kind='backbone', output_names=[f'feat{i}' for i in range(num_outputs)],
                        backbone_type=backbone_type, fixed_size_reason=getattr(module, 'fixed_size_export', None),
                        min_trace_size=getattr(module, 'dynamic_export_min_size', 1),
                        fixed_size_program=getattr(module, 'fixed_size_program', None))


def runtime_forms(form: Form, shape: Tuple[int, int], backbone_type: str, work_dir: str,
                  backends: Sequence[str] = ('onnxruntime', 'openvino', 'executorch'),
                  max_batch: int = 1) -> List[Form]:
    """The backbone form exported once per file type (dynamic batch and size where the family allows) and run by
    each CPU runtime in ``backends`` with PyTorch's thread count, in float32 and in INT8: ``onnxruntime``,
    ``onnxruntime int8``, ``openvino``, ``openvino bf16`` (CPUs with AVX512_BF16 or AMX), ``openvino int8`` (one
    ONNX file and its QDQ form), ``executorch``,
    ``executorch int8`` (two ExecuTorch programs lowered to XNNPACK, the second quantized through PT2E; batches up
    to ``max_batch``). The numpy conversion is part of each timed run. The INT8 forms are calibrated on a few random
    inputs, which times them faithfully; their accuracy on real images is what ``tools/deploy/quantize_onnx.py``
    and ``tools/deploy/export_executorch.py --int8`` measure. A form whose runtime cannot load its file (XNNPACK
    does not compile FasterViT's INT8 padding) is left out, with the reason printed."""
    from mmlightvit.deploy.onnx_export import export_onnx
    from mmlightvit.deploy.runtime import ExportedModelError, runtime_session
    target = _backbone_export_target(form, shape, backbone_type)
    calibration = [torch.rand(1, 3, *shape) for _ in range(4)]
    stem = f'{work_dir}/{backbone_type}_{form.name}'
    files = {}
    if {'onnxruntime', 'openvino'} & set(backends):
        from mmlightvit.deploy.quantize import quantize_onnx
        onnx_file = export_onnx(target, f'{stem}.onnx', shape=shape, dynamic=target.dynamic_size)
        quantize_onnx(onnx_file, f'{stem}_int8.onnx', [{target.input_names[0]: x.numpy()} for x in calibration])
        files['onnxruntime'] = [('', onnx_file), (' int8', f'{stem}_int8.onnx')]
        files['openvino'] = [('', onnx_file), (' bf16', onnx_file), (' int8', f'{stem}_int8.onnx')]
    if 'executorch' in backends:
        from mmlightvit.deploy.executorch_export import MIN_SIZE, TRACE_BATCH, export_executorch
        # a fixed-size program where the family needs one, or where the size is below the dynamic bounds
        dynamic = target.program_fixed_size_reason is None and min(shape) >= MIN_SIZE
        bounds = dict(max_batch=max(max_batch, TRACE_BATCH), max_size=max(*shape, MIN_SIZE))
        for precision, path, inputs in (('', f'{stem}.pte', None), (' int8', f'{stem}_int8.pte', calibration)):
            export_executorch(target, path, shape, dynamic=dynamic, calibration=inputs and [(x, ) for x in inputs],
                              **bounds)
        files['executorch'] = [('', f'{stem}.pte'), (' int8', f'{stem}_int8.pte')]

    def runner(session):
        input_name = session.get_inputs()[0].name
        return lambda x: tuple(torch.from_numpy(out) for out in session.run(None, {input_name: x.cpu().numpy()}))

    forms = []
    for backend in backends:
        for precision, path in files[backend]:
            name = f'{backend}{precision} ({form.name})'
            try:
                session = runtime_session(path, backend, threads=torch.get_num_threads(), bf16=precision == ' bf16')
            except ExportedModelError as err:  # a runtime that cannot compile the file, a CPU without BF16: the
                # other forms still run
                print(f'{name}: not timed, {err}')
                continue
            forms.append(Form(name, target.module.backbone, runner(session), own_precision=True))
    return forms


def tensorrt_forms(form: Form, shape: Tuple[int, int], batches: Sequence[int], backbone_type: str,
                   work_dir: str) -> List[Form]:
    """The backbone form as TensorRT engines (CUDA): ``tensorrt`` (float32), ``tensorrt fp16`` and ``tensorrt int8``
    (the symmetric QDQ file, calibrated on a few random inputs, which times it faithfully), each built for
    ``batches`` at ``shape`` and fed CUDA tensors. Raises :class:`~mmlightvit.deploy.tensorrt.TensorRTError` where
    TensorRT or a GPU is missing."""
    from mmlightvit.deploy.onnx_export import export_onnx
    from mmlightvit.deploy.quantize import quantize_onnx
    from mmlightvit.deploy.tensorrt import TensorRTSession, import_tensorrt
    import_tensorrt()  # before any export: say early that it cannot run here
    target = _backbone_export_target(form, shape, backbone_type)
    low, high = min(batches), max(batches)
    if not target.dynamic_size and low != high:
        raise ValueError(f'{backbone_type} exports at fixed sizes ({target.fixed_size_reason}): time its TensorRT '
                         'forms one batch size at a time.')
    stem = f'{work_dir}/{backbone_type}_{form.name}'
    files = {'': export_onnx(target, f'{stem}.onnx', shape=shape, batch=high, dynamic=target.dynamic_size)}
    calibration = [{target.input_names[0]: torch.rand(1, 3, *shape).numpy()} for _ in range(4)]
    files[' int8'] = f'{stem}_int8.onnx'
    quantize_onnx(files[''], files[' int8'], calibration, symmetric=True)
    files[' fp16'] = export_onnx(_backbone_export_target(form, shape, backbone_type), f'{stem}_fp16.onnx',
                                 shape=shape, batch=high, dynamic=target.dynamic_size, half=True)
    profile = {target.input_names[0]: ((low, 3, *shape), (high, 3, *shape), (high, 3, *shape))}
    forms = []
    for precision, path in files.items():
        session = TensorRTSession(path, profile)
        forms.append(Form(f'tensorrt{precision} ({form.name})', form.module,
                          lambda x, session=session: tuple(session.run_tensors({session.input_names[0]: x})),
                          own_precision=True))
    return forms


def model_forms(model: nn.Module, fuse: bool = True) -> List[Form]:
    model = model.eval()
    forms = [Form('eager', model, _predict_runner(model), whole_model=True)]
    if fuse and has_fusable_modules(model):
        fused = fuse_model(copy.deepcopy(model)).eval()
        forms.append(Form('fused', fused, _predict_runner(fused), whole_model=True))
    return forms


def move(forms: Sequence[Form], device: str) -> None:
    for form in forms:
        form.module.to(device)


def batch_to(batch: Any, device: str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    inputs, data_samples = batch
    return inputs.to(device), [sample.to(device) for sample in data_samples]


# ----------------------------------------------------------------------------------------------------------------
# Reporting


def markdown_table(measurements: Sequence[Measurement]) -> str:
    header = ['target', 'form', 'input (H x W)', 'batch', 'dtype', 'device', 'latency (ms)', 'images/s',
              'first / form', 'peak memory (MB)', 'max rel. diff', 'compile (s)', 'GMACs / image', 'GMAC/s']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    first = {}  # the first form of each run (eager, or the first attention path) is the baseline
    for m in measurements:
        key = (m.target, m.shape, m.batch, m.dtype, m.device)
        ratio = first.setdefault(key, m.median_ms) / m.median_ms
        cells = [m.target, m.form, f'{m.shape[0]} x {m.shape[1]}', m.batch, m.dtype, m.device, f'{m.median_ms:.2f}',
                 f'{m.images_per_second:.1f}', f'{ratio:.2f}',
                 '-' if m.peak_memory_mb is None or math.isnan(m.peak_memory_mb) else f'{m.peak_memory_mb:.0f}',
                 '-' if m.max_rel_diff is None else f'{m.max_rel_diff:.1e}',
                 '-' if m.compile_seconds is None else f'{m.compile_seconds:.0f}',
                 '-' if m.macs_per_image is None else f'{m.macs_per_image / 1e9:.2f}',
                 '-' if m.gflops_per_second is None else f'{m.gflops_per_second:.1f}']
        lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
    return '\n'.join(lines)


def reference_ratios(measurements: Sequence[Measurement]) -> List[str]:
    """One line per pair of like forms: ours (eager) against the reference (eager), and every deployable form of
    ours (fused, channels-last, oneDNN, onnxruntime, compiled) against the reference's re-parameterised model
    where it has one (else against the reference)."""
    groups: Dict[tuple, List[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.target, m.shape, m.batch, m.dtype, m.device), []).append(m)
    lines = []
    for (target, shape, batch, dtype, device), group in groups.items():
        references = {('fused' if 'fused' in m.form else 'eager'): m for m in group if m.form.startswith('reference')}
        if not references:
            continue
        for m in group:
            if m.form.startswith('reference'):
                continue
            ref = references['eager'] if m.form == 'eager' else references.get('fused', references['eager'])
            lines.append(f'{target} {shape[0]}x{shape[1]} batch {batch} {dtype} {device}: {ref.form} / ours '
                         f'({m.form}) latency = {ref.median_ms / m.median_ms:.2f}x (> 1: ours is faster)')
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Where a whole model's predict time goes


# What a predict call spends outside the timed stages (each run's total minus its stages).
REST = 'rest (data samples, result packing)'
# (label, attribute path on the model, method): each is timed where the model has it. Labels starting with
# 'of which' are parts of the stage above them.
PREDICT_STAGES = [
    ('backbone', 'backbone', 'forward'),
    ('neck', 'neck', 'forward'),
    ('RPN (head + proposals)', 'rpn_head', 'predict'),
    ('RoI box head (+ NMS)', 'roi_head', 'predict_bbox'),
    ('RoI mask head', 'roi_head', 'predict_mask'),
    ('of which mask pasting to the image', 'roi_head.mask_head', 'predict_by_feat'),
    ('dense head', 'bbox_head', 'predict'),
    ('of which post-processing (decode + NMS)', 'bbox_head', 'predict_by_feat'),
    ('decode head', 'decode_head', 'predict'),
]


def _attribute(model: nn.Module, path: str):
    for name in path.split('.'):
        model = getattr(model, name, None)
        if model is None:
            return None
    return model


@torch.no_grad()
def profile_predict(model: nn.Module, inputs: Any, device: str, repeat: int, warmup: int) -> Dict[str, float]:
    """Median milliseconds of each stage of ``model``'s predict (see ``PREDICT_STAGES``) and of the whole call
    (``'total'``), over ``repeat`` calls after ``warmup``. The stages are timed by wrapping those methods of this
    model object for the duration of the call (the classes are not touched)."""
    runs: List[Dict[str, float]] = []
    current: Dict[str, float] = {}
    wrapped = []

    def timed(label, method):
        def run(*args, **kwargs):
            _synchronize(device)
            start = time.perf_counter()
            result = method(*args, **kwargs)
            _synchronize(device)
            current[label] = current.get(label, 0.) + (time.perf_counter() - start) * 1000
            return result
        return run

    for label, path, method_name in PREDICT_STAGES:
        owner = _attribute(model, path)
        if owner is not None and hasattr(owner, method_name):
            wrapped.append((owner, method_name, vars(owner).get(method_name)))
            setattr(owner, method_name, timed(label, getattr(owner, method_name)))
    predict = _predict_runner(model)
    try:
        for index in range(warmup + repeat):
            current.clear()
            _synchronize(device)
            start = time.perf_counter()
            predict(inputs)
            _synchronize(device)
            current['total'] = (time.perf_counter() - start) * 1000
            current[REST] = current['total'] - sum(ms for label, ms in current.items()
                                                   if label != 'total' and not label.startswith('of which'))
            if index >= warmup:
                runs.append(dict(current))
    finally:
        for owner, method_name, own in reversed(wrapped):
            if own is None:
                delattr(owner, method_name)
            else:
                setattr(owner, method_name, own)
    labels = [label for label, *_ in PREDICT_STAGES if any(label in run for run in runs)]
    return {label: statistics.median(run.get(label, 0.) for run in runs) for label in labels + [REST, 'total']}


def profile_table(target: str, shape: Tuple[int, int], batch: int, stages: Dict[str, float]) -> str:
    total = stages['total']
    rows = [(label, ms) for label, ms in stages.items() if label != 'total']
    lines = [f'{target}, {shape[0]} x {shape[1]}, batch {batch}, eager predict: where the time goes (median)', '',
             '| stage | ms | share |', '| --- | --- | --- |']
    lines += [f'| {label} | {ms:.1f} | {ms / total:.0%} |' for label, ms in rows]
    lines.append(f'| total | {total:.1f} | 100% |')
    return '\n'.join(lines)
