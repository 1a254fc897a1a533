"""Deployment: ONNX export of backbones and whole models, checked against onnxruntime (``onnx_export``), detectors'
post-processing in tensor form (``detection``, ``ops``), exported models in the config's pipeline on onnxruntime or
OpenVINO (``runtime``), their INT8 form (``quantize``), and Core ML packages for Apple devices (``coreml_export``).

Importing this package imports nothing heavy; its modules need onnx, onnxruntime (and OpenVINO for that backend;
coremltools for ``coreml_export``, imported when a conversion runs).
"""
