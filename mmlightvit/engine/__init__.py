"""Runner glue: CPU distributed runs, hooks, and what the tools share. Imports mmengine (and mmdet/mmseg lazily)."""
from .amp import CPUBFloat16OptimWrapper
from .dist import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import FuseModelHook, RNGStateHook
from .setup import DatasetNotFoundError, build_runner, check_dataset_paths, enable_amp, load_config

__all__ = [
    'CPUBFloat16OptimWrapper', 'CPUDistributedDataParallel', 'setup_cpu_distributed', 'RNGStateHook',
    'FuseModelHook', 'DatasetNotFoundError', 'build_runner', 'check_dataset_paths', 'enable_amp', 'load_config'
]
