from .activation import build_activation
from .backbone import NUM_STAGES, STAGE_STRIDES, LightBackbone, Stage, apply_blocks, count_blocks
from .conv_bn import ConvBN, conv_like, fold_bn
from .drop_path import DropPath, drop_path, drop_path_rates
from .init import init_trunc_normal
from .layer_scale import apply_layer_scale, layer_scale_parameter
from .norm import LayerNorm2d, build_norm2d
from .reparam import fuse_model
from .tracing import averaging_matrix, is_exporting, is_symbolic, is_tracing, size_max, traced_value

__all__ = [
    'NUM_STAGES', 'STAGE_STRIDES', 'LightBackbone', 'Stage', 'apply_blocks', 'count_blocks', 'DropPath', 'drop_path',
    'drop_path_rates', 'init_trunc_normal', 'layer_scale_parameter', 'apply_layer_scale', 'LayerNorm2d', 'build_norm2d',
    'build_activation', 'ConvBN', 'conv_like', 'fold_bn', 'fuse_model', 'is_symbolic', 'is_tracing',
    'is_exporting', 'averaging_matrix', 'size_max', 'traced_value'
]
