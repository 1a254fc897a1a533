from .checkpoint import (CheckpointError, extract_state_dict, install_safe_checkpoint_loading, load_checkpoint_file,
                         read_checkpoint)

__all__ = [
    'CheckpointError', 'extract_state_dict', 'install_safe_checkpoint_loading', 'load_checkpoint_file',
    'read_checkpoint'
]
