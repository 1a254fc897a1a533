from .checkpoint import (CheckpointError, check_state_dict, extract_state_dict, install_safe_checkpoint_loading,
                         load_backbone_checkpoint, load_checkpoint_file)

__all__ = [
    'CheckpointError', 'check_state_dict', 'extract_state_dict', 'install_safe_checkpoint_loading',
    'load_backbone_checkpoint', 'load_checkpoint_file'
]
