"""Per-layer SQNRs accumulated over samples: isolated, cumulative and simulated.

For layer ``i`` with float output ``f`` (the float lowered graph's value):

* **isolated** - only this layer quantized: its activation inputs are the float values
  quantized with the int8 graph's parameters, the integer kernel runs (a float node of a
  mixed graph runs ``run_float``), the output is dequantized. Everything before it is
  float, so this is the layer's own error.
* **cumulative** - every layer up to and including this one quantized (the int8 graph's
  own tensor), i.e. the error a deployed model carries at this point.
* **simulated** - the :mod:`~microquant.report.layers.simulate` modes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.report.layers.simulate import LayerSimulator
from microquant.report.layers.sqnr import SqnrAccumulator
from microquant.report.layers.values import quantize_to, real
from microquant.runtime.evaluator import Evaluator


def isolated_output(
    i: int, pairs: list[tuple[Node, Node]], quantized: Graph, fvals: dict, qev: Evaluator
) -> np.ndarray:
    """Layer ``i``'s raw output (the int8 output tensor's dtype and shape) with its
    activation inputs taken from the float values ``fvals`` and quantized."""
    ln, qn = pairs[i]
    q = quantized
    ins = []
    for lname, qname in zip(ln.inputs, qn.inputs, strict=False):
        t = q.tensors.get(qname) if qname else None
        if t is None:
            ins.append(None)
        elif t.is_const:
            ins.append(t.data)
        else:
            x = fvals[lname]
            ins.append(x if t.dtype == "float32" else quantize_to(x, t))
    if len(qn.inputs) > len(ln.inputs):  # a bias quantize_graph added
        ins += [q.tensor(n).data if n else None for n in qn.inputs[len(ln.inputs) :]]
    if qev.float_nodes[i]:
        out = qev.kernels[i].run_float(qn, q, ins)[0]
    else:
        out = qev.kernels[i].run(qev.params[i], ins)[0]
    qt = q.tensor(qn.outputs[0])
    return np.asarray(out).reshape(qt.shape).astype(qt.dtype, copy=False)


class LayerMeasurements:
    """Accumulates every layer's SQNRs over samples (:meth:`update` once per sample)."""

    def __init__(
        self,
        lowered: Graph,
        quantized: Graph,
        pairs: list[tuple[Node, Node]],
        observed: dict[str, float],
    ) -> None:
        self.quantized, self.pairs = quantized, pairs
        self.simulator = LayerSimulator(lowered, quantized, pairs, observed)
        self.iso = [SqnrAccumulator() for _ in pairs]
        self.cum = [SqnrAccumulator() for _ in pairs]
        self.sim = [
            {m: SqnrAccumulator() for m in self.simulator.modes(i)} for i in range(len(pairs))
        ]

    def update(self, fvals: dict, qvals: dict, qev: Evaluator) -> None:
        """One sample: ``fvals`` / ``qvals`` are every value of the float / int8 graph
        (``run_all``), ``qev`` the int8 graph's evaluator (its prepared kernels)."""
        q = self.quantized
        for i, (ln, qn) in enumerate(self.pairs):
            ref = fvals[ln.outputs[0]]
            qt = q.tensor(qn.outputs[0])
            self.cum[i].add(ref, real(qt, qvals[qn.outputs[0]]))
            self.iso[i].add(ref, real(qt, isolated_output(i, self.pairs, q, fvals, qev)))
            for mode, acc in self.sim[i].items():
                acc.add(ref, self.simulator.run(i, mode, fvals))

    def fields(self, i: int) -> dict[str, Any]:
        """Layer ``i``'s report fields: ``sqnr_isolated_db``, ``sqnr_cumulative_db`` and
        ``sim_sqnr_db`` (``{mode: dB}``)."""
        return {
            "sqnr_isolated_db": self.iso[i].db(),
            "sqnr_cumulative_db": self.cum[i].db(),
            "sim_sqnr_db": {m: p.db() for m, p in self.sim[i].items()},
        }
