"""Graph passes: ONNX-level normalization and lowering to the TFLite-level NHWC graph.

Every pass is a module with ``run(graph) -> (graph, modified)``. :func:`run_passes`
repeats a list of passes until none of them changes the graph.

Example:
    >>> from microquant.ir.onnx_io import graph_from_model
    >>> import onnx.parser
    >>> m = onnx.parser.parse_model('''
    ...   <ir_version: 8, opset_import: ["" : 17]>
    ...   g (float[1, 4] x) => (float[1, 4] y) { t = Identity(x)  y = Relu(t) }''')
    >>> lower(normalize(graph_from_model(m))).ops()
    ['RELU']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.passes import (
    cleanup,
    fold_batchnorm,
    fold_constants,
    fuse_activations,
    fuse_matmul_add,
    lower_ops,
)

Pass = Callable[[Graph], tuple[Graph, bool]]

NORMALIZE_PASSES: tuple[Pass, ...] = (
    fold_constants.run,
    cleanup.remove_identity,
    fuse_matmul_add.run,  # before BatchNorm folding so MatMul+BN folds into a Gemm
    fold_batchnorm.run,
)
LOWERED_PASSES: tuple[Pass, ...] = (fuse_activations.run, cleanup.run)


def run_passes(graph: Graph, passes: Sequence[Pass], max_rounds: int = 50) -> Graph:
    """Apply ``passes`` in order, repeatedly, until a whole round modifies nothing."""
    for _ in range(max_rounds):
        modified = False
        for p in passes:
            graph, changed = p(graph)
            modified |= changed
        if not modified:
            return graph
    raise MicroquantError(f"passes did not converge after {max_rounds} rounds")


def normalize(graph: Graph) -> Graph:
    """ONNX-level clean-up: constants folded, BatchNorm folded, MatMul+Add -> Gemm (a copy)."""
    graph = graph.copy()
    graph.remove_unused()  # dead branches of the exported model
    return run_passes(graph, NORMALIZE_PASSES)


def lower(graph: Graph) -> Graph:
    """Normalized ONNX-level graph -> TFLite-level NHWC float graph (a new graph).

    The result carries ``meta["calib_source"]``: lowered activation -> ONNX tensor name.
    """
    lowered = lower_ops.lower_graph(graph)
    lowered = run_passes(lowered, LOWERED_PASSES)
    fuse_activations.check_no_pending(lowered)
    return lowered


__all__ = ["normalize", "lower", "run_passes"]
