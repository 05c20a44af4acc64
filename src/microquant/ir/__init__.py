"""Graph IR: :class:`Graph`, :class:`Node`, :class:`Tensor`, :class:`QuantParams`."""

from microquant.ir.graph import Graph, Node, QuantParams, Tensor

__all__ = ["Graph", "Node", "QuantParams", "Tensor"]
