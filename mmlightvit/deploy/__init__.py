"""Deployment: ONNX export of backbones and whole models, checked against onnxruntime (``onnx_export``).

Importing this package imports nothing heavy; ``mmlightvit.deploy.onnx_export`` needs onnx and onnxruntime.
"""
