from .dist import CPUDistributedDataParallel, setup_cpu_distributed
from .setup import DatasetNotFoundError, build_runner, check_dataset_paths, enable_amp, load_config

__all__ = [
    'CPUDistributedDataParallel', 'setup_cpu_distributed', 'DatasetNotFoundError', 'build_runner',
    'check_dataset_paths', 'enable_amp', 'load_config'
]
