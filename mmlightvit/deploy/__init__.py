"""Deployment: ONNX export of backbones and whole models, checked against onnxruntime (``onnx_export``), detectors'
post-processing in tensor form (``detection``, ``ops``), ExecuTorch export for XNNPACK in float32 and INT8
(``executorch_export``), exported models in the config's pipeline on onnxruntime, OpenVINO or ExecuTorch
(``runtime``), the ONNX INT8 form (``quantize``), Core ML packages for Apple devices (``coreml_export``) and
TensorRT engines for NVIDIA GPUs (``tensorrt``).

Importing this package imports nothing heavy; its modules need onnx, onnxruntime (and OpenVINO, ExecuTorch,
coremltools or TensorRT for those), each imported where it is used.
"""
