"""Deployment of a trained model.

Modules:
  metadata    ExportInfo: classes, palette and input/output conventions of an exported model
              (TensorFlow-free: it also serves a machine that only has onnxruntime).
"""
