"""Integer-only reference runtime (the oracle) - see :mod:`microquant.runtime.evaluator`."""

from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import Kernel, get_kernel, supported_ops

__all__ = ["Evaluator", "Kernel", "get_kernel", "supported_ops"]
