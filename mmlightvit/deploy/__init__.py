"""Deployment: ONNX export of backbones and whole models, checked against onnxruntime (``onnx_export``), detectors'
post-processing in tensor form (``detection``, ``ops``), ExecuTorch export for XNNPACK in float32 and INT8
(``executorch_export``), exported models in the config's pipeline on onnxruntime, OpenVINO or ExecuTorch
(``runtime``) and the ONNX INT8 form (``quantize``).

Importing this package imports nothing heavy; its modules need onnx, onnxruntime (and OpenVINO or ExecuTorch for
those backends), each imported where it is used.
"""
