"""Exporters that turn ``.tflite`` bytes into deployable artifacts (:mod:`.c_array`)."""
