"""Deployment of a trained model: SavedModel and ONNX export, ONNX Runtime inference, benchmarks.

Modules (the TensorFlow-free ones run on a machine that only has onnxruntime):
  metadata    ExportInfo: classes, palette and input/output conventions of an exported model.
  serving     (TensorFlow) the serving module and its SavedModel signatures.
  convert     (TensorFlow, tf2onnx) a serving signature -> ONNX model.
  onnx_model  (onnx) graph clean-up, float16 conversion and metadata of an ONNX model.
  parity      ONNX Runtime against TensorFlow on the same random and real images.
  runtime     (onnxruntime) sessions, execution providers, IOBinding.
  bench       latency statistics of calls timed side by side, JSON records.
  images      reading frames and writing pictures.
"""
