"""Fuse stand-alone RELU / RELU6 / RELU_N1_TO_1 into the producing op (TFLite level).

A producer that has a fused-activation slot (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
ADD, MUL, AVERAGE_POOL_2D, MAX_POOL_2D) with ``activation == "NONE"`` and whose output is
read only by the activation takes it over and writes the activation's output tensor.

Lowering emits ``Clip(-1, 1)`` as the internal op ``_RELU_N1_TO_1``: TFLite has it only as
a fused activation, so one left unfused is an error (:func:`check_no_pending`).
"""

from __future__ import annotations

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.passes._util import single_consumer

ACTIVATIONS = {"RELU": "RELU", "RELU6": "RELU6", "_RELU_N1_TO_1": "RELU_N1_TO_1"}
FUSABLE_PRODUCERS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "MUL",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
}


def run(graph: Graph) -> tuple[Graph, bool]:
    """Fuse every fusable activation into its producer."""
    modified = False
    for act in [n for n in graph.nodes if n.op in ACTIVATIONS]:
        x = act.inputs[0]
        prod = graph.producer(x)
        if (
            prod is None
            or prod.op not in FUSABLE_PRODUCERS
            or prod.attrs.get("activation", "NONE") != "NONE"
            or single_consumer(graph, x) is not act
        ):
            continue
        prod.attrs["activation"] = ACTIVATIONS[act.op]
        prod.outputs = [act.outputs[0]]
        graph.nodes.remove(act)
        graph.tensors.pop(x, None)
        graph.meta.get("calib_source", {}).pop(x, None)
        modified = True
    return graph, modified


def check_no_pending(graph: Graph) -> None:
    for n in graph.nodes:
        if n.op == "_RELU_N1_TO_1":
            raise MicroquantError(
                f"Clip(-1, 1) at {n.name!r} cannot be fused into its producer "
                "(TFLite has no stand-alone RELU_N1_TO_1)"
            )
