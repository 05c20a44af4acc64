"""microquant: float ONNX -> integer-only models that TensorFlow Lite Micro runs bit-exactly."""

__version__ = "0.1.0"
