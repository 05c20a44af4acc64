"""Runtimes that execute ``.tflite`` bytes: TFLite Micro (:mod:`.tflm`), LiteRT (:mod:`.litert`)."""
