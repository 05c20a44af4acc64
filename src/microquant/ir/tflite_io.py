"""``.tflite`` flatbuffer I/O for TFLite-level graphs.

``write_tflite(graph) -> bytes`` lives in :mod:`microquant.ir.tflite_write`,
``read_tflite(data) -> Graph`` in :mod:`microquant.ir.tflite_read`; the op/attr mapping
they share in :mod:`microquant.ir.tflite_ops`.

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph()
    >>> for n in ("x", "y"):
    ...     _ = g.add_tensor(Tensor(n, (1, 4)))
    >>> g.nodes.append(Node("RELU", ["x"], ["y"]))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> read_tflite(write_tflite(g)).ops()
    ['RELU']
"""

from microquant.ir.tflite_read import read_tflite
from microquant.ir.tflite_write import write_tflite

__all__ = ["read_tflite", "write_tflite"]
