"""Post-training static INT8 quantization of an exported model with onnxruntime (QDQ format).

The calibration images are the config's training images passed through its *test* pipeline and data preprocessor
(test-time resize, no augmentation), so that the activation ranges are the ones the model sees when it is tested.
The convolutions and matrix products are quantized (weights INT8 per output channel, activations UINT8, the
x86 recommendation of onnxruntime's quantizer); everything after them that decides what is detected (top-k, NMS,
RoIAlign, softmax) stays in float. The quantized file keeps the exported model's metadata, so
``tools/test.py CONFIG model_int8.onnx`` evaluates it in the same pipeline as the float model.

On x86 CPUs without VNNI instructions, 8-bit products summed in 16 bits can saturate; weights then use 7 bits
(``reduce_range``), which onnxruntime's guidance recommends there. ``reduce_range='auto'`` decides from the CPU flags.
"""
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

#: The ops quantized: they carry the compute; the rest of the graph stays float.
QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')


def cpu_model_and_flags() -> Tuple[str, List[str]]:
    """This CPU's model name and feature flags, from /proc/cpuinfo (empty where it cannot be read)."""
    name, flags = '', []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and not name:
                    name = value.strip()
                elif key.strip() == 'flags':
                    flags = value.split()
                    break
    except OSError:
        pass
    return name, flags


def cpu_has_vnni() -> bool:
    """Whether this CPU has 8-bit dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""
    flags = cpu_model_and_flags()[1]
    return 'avx512_vnni' in flags or 'avx_vnni' in flags


def _innermost_dataset(dataset_cfg):
    """The dataset a wrapper (RepeatDataset, ClassBalancedDataset, ...) holds; ConcatDataset: its first part."""
    while 'dataset' in dataset_cfg or 'datasets' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset'] if 'dataset' in dataset_cfg else dataset_cfg['datasets'][0]
    return dataset_cfg


def calibration_feeds(cfg, count: int, input_names: List[str], split: str = 'train') -> List[Dict[str, np.ndarray]]:
    """``count`` inputs of the exported graph (one image each), made from images of ``split`` spread over the whole
    set, through the test pipeline and the model's data preprocessor."""
    import copy

    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS, MODELS, init_default_scope

    from mmlightvit.deploy.runtime import data_preprocessor_config
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = copy.deepcopy(_innermost_dataset(cfg[f'{split}_dataloader']['dataset']))
    dataset_cfg['pipeline'] = copy.deepcopy(_innermost_dataset(cfg.test_dataloader.dataset)['pipeline'])
    dataset = DATASETS.build(dataset_cfg)
    if len(dataset) == 0:
        raise ValueError(f'The {split} set of the config is empty: no images to calibrate with.')
    preprocessor = MODELS.build(data_preprocessor_config(cfg))
    feeds = []
    for index in np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int):
        data = preprocessor(pseudo_collate([dataset[int(index)]]), False)
        feed = {input_names[0]: data['inputs'].float().numpy()}
        if len(input_names) > 1:  # the detectors' unpadded image size
            feed[input_names[1]] = np.asarray([data['data_samples'][0].metainfo['img_shape'][:2]], dtype=np.int64)
        feeds.append(feed)
    return feeds


class _FeedReader:
    """onnxruntime's CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: Iterable[Dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._feeds, None)


def batched_weight_products(graph) -> List[str]:
    """The MatMul nodes of an ONNX ``graph`` whose weight (a constant second input) has more than two dimensions, as
    TransNeXt's per-head learnable tokens ``(heads, head_dim, tokens)``. onnxruntime's quantizer gives such a weight
    one scale per channel of its second dimension, which onnxruntime's QLinearMatMul refuses when it runs ("weight
    zero point must be a scalar, 1D tensor of size 1, or last to second dimension is 1"); they stay float."""
    weights = {i.name: len(i.dims) for i in graph.initializer}
    weights.update({n.output[0]: len(a.t.dims) for n in graph.node if n.op_type == 'Constant'
                    for a in n.attribute if a.name == 'value'})
    return [n.name for n in graph.node if n.op_type == 'MatMul' and weights.get(n.input[1], 0) > 2]


def quantize_onnx(onnx_file: str, out_file: str, feeds: List[Dict[str, np.ndarray]], per_channel: bool = True,
                  reduce_range='auto', symmetric: bool = False) -> dict:
    """Write the INT8 form of ``onnx_file`` to ``out_file``, calibrated on ``feeds``; returns what was chosen.
    ``symmetric``: activations signed INT8 with zero point 0 (and full 8-bit weights), the form TensorRT's explicit
    quantization takes; otherwise the CPU form above."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    reduce = False if symmetric else (not cpu_has_vnni()) if reduce_range == 'auto' else bool(reduce_range)
    activation = QuantType.QInt8 if symmetric else QuantType.QUInt8
    source = onnx.load(onnx_file, load_external_data=False)
    quantize_static(onnx_file, out_file, _FeedReader(feeds), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel, reduce_range=reduce,
                    nodes_to_exclude=batched_weight_products(source.graph) if per_channel else [],
                    activation_type=activation, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={'ActivationSymmetric': symmetric, 'WeightSymmetric': True},
                    use_external_data_format=os.path.getsize(onnx_file) > (1 << 30))
    # the exported model's metadata (kind, preprocessing, classes) carries over, with the precision added
    quantized = onnx.load(out_file)
    props = {p.key: p.value for p in source.metadata_props}
    props.update({'mmlightvit.precision': 'int8', 'mmlightvit.quantization':
                  f'onnxruntime QDQ static, {len(feeds)} calibration images, ops {",".join(QUANTIZED_OPS)}, '
                  f'weights int8 {"per channel" if per_channel else "per tensor"}'
                  f'{" (7-bit range)" if reduce else ""}, '
                  f'activations {"int8 symmetric" if symmetric else "uint8"} (min-max)'})
    del quantized.metadata_props[:]
    for key, value in props.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, out_file)
    return dict(calibration_images=len(feeds), per_channel=per_channel, reduce_range=reduce, symmetric=symmetric)
