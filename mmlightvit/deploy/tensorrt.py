"""TensorRT engines built from the exported ONNX files, for NVIDIA GPUs.

The precision of an engine is the precision of its graph: the network is built strongly typed (the only kind
TensorRT 11 builds; a flag on TensorRT 10), so the float32 export gives a float32 engine, the float16 export
(``export_onnx(..., half=True)``) a float16 one, and the INT8 file quantized for TensorRT
(``quantize_onnx(..., symmetric=True)``: signed INT8 with zero points of 0, which TensorRT's explicit quantization
requires) an INT8 one. No builder precision flags, no INT8 calibrator: TensorRT 11 removed both.

:class:`TensorRTSession` has onnxruntime's session interface (``get_inputs``, ``run``) for numpy feeds and
``run_tensors`` for CUDA tensors, which keeps host copies out of timed runs. Its outputs must have shapes that
follow from the input shapes: a detector's NMS output, whose length depends on the data, is not supported here.
"""
from types import SimpleNamespace
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

#: (smallest, typical, largest) shape of one input, for the engine's optimisation profile.
ShapeRange = Tuple[Sequence[int], Sequence[int], Sequence[int]]


class TensorRTError(RuntimeError):
    """TensorRT is missing, or cannot parse, build or run a model; the message says which and why."""


def import_tensorrt():
    """The ``tensorrt`` module, or a clear error saying what is needed."""
    try:
        import tensorrt
    except ImportError as err:
        raise TensorRTError(
            'TensorRT is not installed: it needs an NVIDIA GPU and `pip install tensorrt` (the wheel matching the '
            f'CUDA of torch {torch.__version__}); ({err})') from err
    if not torch.cuda.is_available():
        raise TensorRTError('TensorRT needs a CUDA device; torch sees none.')
    return tensorrt


def _torch_dtype(trt, dtype) -> torch.dtype:
    names = {'FLOAT': torch.float32, 'HALF': torch.float16, 'BF16': torch.bfloat16, 'INT8': torch.int8,
             'INT32': torch.int32, 'INT64': torch.int64, 'BOOL': torch.bool, 'UINT8': torch.uint8}
    for name, torch_dtype in names.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_dtype
    raise TensorRTError(f'No torch dtype for the TensorRT tensor type {dtype}.')


def build_engine(onnx_file: str, shapes: Dict[str, ShapeRange], workspace_mb: int = 4096) -> bytes:
    """The serialised TensorRT engine of ``onnx_file`` for the input shapes ``shapes`` ({input name: range})."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_file):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f'TensorRT cannot parse {onnx_file!r}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        if name not in shapes:
            raise TensorRTError(f'{onnx_file!r} has the input {name!r}; shapes were given for {sorted(shapes)}.')
        profile.set_shape(name, *(tuple(shape) for shape in shapes[name]))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f'TensorRT could not build an engine from {onnx_file!r} (its messages are above).')
    return bytes(serialized)


class TensorRTSession:
    """A TensorRT engine of an ONNX file on the current CUDA device, with onnxruntime's session interface."""

    def __init__(self, onnx_file: str, shapes: Dict[str, ShapeRange], workspace_mb: int = 4096):
        trt = import_tensorrt()
        self._trt = trt
        engine_bytes = build_engine(onnx_file, shapes, workspace_mb)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]

    def get_inputs(self):
        return [SimpleNamespace(name=name) for name in self.input_names]

    def run_tensors(self, feed: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """Run on CUDA tensors (others are copied to the device); the outputs stay on the device."""
        held = []  # the inputs in the engine's dtype, alive until the run ends
        for name in self.input_names:
            dtype = _torch_dtype(self._trt, self.engine.get_tensor_dtype(name))
            value = torch.as_tensor(feed[name]).to('cuda', dtype).contiguous()
            self.context.set_input_shape(name, tuple(value.shape))
            self.context.set_tensor_address(name, value.data_ptr())
            held.append(value)
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(size < 0 for size in shape):
                raise TensorRTError(f'The output {name!r} has a data-dependent shape {shape} (NMS); this runner '
                                    'takes models whose output shapes follow from the input shapes.')
            output = torch.empty(shape, dtype=_torch_dtype(self._trt, self.engine.get_tensor_dtype(name)),
                                 device='cuda')
            self.context.set_tensor_address(name, output.data_ptr())
            outputs.append(output)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise TensorRTError('TensorRT failed to run the engine (its messages are above).')
        stream.synchronize()
        return outputs

    def run(self, output_names, feed: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return [output.cpu().numpy() for output in self.run_tensors(
            {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in feed.items()})]
