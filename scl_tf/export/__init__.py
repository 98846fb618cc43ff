"""Deployment of a trained model: SavedModel and ONNX export, ONNX Runtime inference, benchmarks.

Modules (the TensorFlow-free ones run on a machine that only has onnxruntime):
  metadata    ExportInfo: classes, palette and input/output conventions of an exported model.
  serving     (TensorFlow) the serving module and its SavedModel signatures.
  convert     (TensorFlow, tf2onnx) a serving signature -> ONNX model.
  onnx_model  (onnx) graph clean-up, float16 conversion and metadata of an ONNX model.
  parity      ONNX Runtime against TensorFlow on the same random and real images.
  runtime     (onnxruntime) execution providers, metadata of sessions, IOBinding.
  quantize    (onnx, onnxruntime) int8 ONNX: static QDQ quantization, what stays float32.
  calibration the frames an int8 model is calibrated on (NumPy and Pillow).
  agreement   an int8 / fp16 model's labels against float32's, and the bar it must pass.
  tflite      (TensorFlow) .tflite fp32 / fp16 / int8 with scl_tf metadata; LiteRT runs it.
  bench       latency statistics of calls timed side by side, JSON records.
  images      reading frames and writing pictures.
"""
