"""microquant: float ONNX -> integer-only int8 models that TensorFlow Lite Micro runs bit-exactly."""

__version__ = "0.1.0"
