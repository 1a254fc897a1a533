"""Whether a forward runs eagerly or is being traced into a graph (torch.export / ONNX, torch.compile, TorchScript
tracing), for the backbones that cache size-dependent tables per input size.

Eagerly, such tables are built once per size and kept (Python dicts keyed by the size). While tracing, the sizes
may be symbolic (``torch.SymInt``): a dict lookup or an ``if`` on them would fix the traced size in the graph, so
the tables are computed in the graph from the runtime size instead (the same numbers).

Depends on torch only.
"""
import torch


def is_tracing() -> bool:
    """True while torch.export (the ONNX exporter), torch.compile or TorchScript tracing records the forward."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def is_symbolic(*sizes) -> bool:
    """Whether any of ``sizes`` is a symbolic size (a ``torch.SymInt`` of a traced graph with dynamic shapes)."""
    return any(isinstance(size, torch.SymInt) for size in sizes)


def is_exporting() -> bool:
    """True while torch.export (the ONNX exporter) or TorchScript tracing records the forward (not torch.compile)."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing()


def averaging_matrix(size, out_size, like: torch.Tensor) -> torch.Tensor:
    """``(out_size, size)``: row ``i`` averages positions ``floor(i * size / out_size)`` to
    ``ceil((i + 1) * size / out_size) - 1``, the window of adaptive average pooling; both sizes may be symbolic.
    ``rows @ x @ columns.T`` is then the adaptive average pooling of ``x`` (within float rounding) in a graph that
    holds for every size (PyTorch's own decomposition fixes the windows of the traced size)."""
    index = torch.arange(out_size, device=like.device)
    start = torch.div(index * size, out_size, rounding_mode='floor')
    end = torch.div((index + 1) * size + out_size - 1, out_size, rounding_mode='floor')
    position = torch.arange(size, device=like.device)
    inside = ((position >= start[:, None]) & (position < end[:, None])).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def size_max(a, b):
    """``max(a, b)`` of two sizes, each a plain int, a symbolic size (torch.export) or a 0-d tensor (TorchScript
    tracing records sizes as tensors)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))
    return torch.sym_max(a, b)


def traced_value(size) -> int:
    """The value a size has at the traced input (a symbolic size's example value; a plain int as it is)."""
    return size.node.hint if isinstance(size, torch.SymInt) else int(size)
