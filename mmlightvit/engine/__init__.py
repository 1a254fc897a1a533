"""Runner glue: CPU distributed runs, hooks, and what the tools share. Imports mmengine (and mmdet/mmseg lazily)."""
from .amp import BFloat16TestHook, CPUBFloat16OptimWrapper
from .checkpointing import AtomicCheckpointHook, FuseModelHook, StrictLoadHook, find_resume_checkpoint
from .dist import CPUDistributedDataParallel, finish_distributed, setup_cpu_distributed
from .process import end_children_with_this_process
from .reproducibility import RNGStateHook, SeededInfiniteSampler, SeededSampler
from .setup import (ConfigError, DatasetNotFoundError, align_evaluator_annotations, build_runner,
                    check_dataset_paths, check_feature_channels, enable_amp, load_config, prepare_run)

__all__ = [
    'BFloat16TestHook', 'CPUBFloat16OptimWrapper', 'AtomicCheckpointHook', 'StrictLoadHook', 'find_resume_checkpoint',
    'SeededSampler', 'SeededInfiniteSampler', 'CPUDistributedDataParallel', 'finish_distributed',
    'setup_cpu_distributed', 'FuseModelHook', 'RNGStateHook', 'end_children_with_this_process', 'ConfigError',
    'DatasetNotFoundError', 'align_evaluator_annotations', 'build_runner', 'check_dataset_paths',
    'check_feature_channels', 'enable_amp', 'load_config', 'prepare_run'
]
