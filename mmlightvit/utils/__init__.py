from .checkpoint import (CheckpointError, check_state_dict, convert_released_state, extract_state_dict,
                         format_mismatches, install_safe_checkpoint_loading, load_backbone_checkpoint,
                         load_checkpoint_file, read_checkpoint, state_dict_mismatches)

__all__ = [
    'CheckpointError', 'check_state_dict', 'convert_released_state', 'extract_state_dict', 'format_mismatches',
    'install_safe_checkpoint_loading', 'load_backbone_checkpoint', 'load_checkpoint_file', 'read_checkpoint',
    'state_dict_mismatches'
]
