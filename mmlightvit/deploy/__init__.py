"""Deployment: ONNX export of backbones and whole models, checked against onnxruntime (``onnx_export``), detectors'
post-processing in tensor form (``detection``, ``ops``), exported models in the config's pipeline on onnxruntime or
OpenVINO (``runtime``) and their INT8 form (``quantize``).

Importing this package imports nothing heavy; its modules need onnx, onnxruntime (and OpenVINO for that backend).
"""
