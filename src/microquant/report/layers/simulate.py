"""Diagnostic simulations: one layer in float with fake quantization, to tell causes apart.

Each simulation runs the layer's float kernel on the float graph's input values, with
``dequantize(quantize(x))`` ("fake quantization") applied where the mode says:

* ``weights`` - the int8 graph's weights (dequantized), float activations;
* ``weights_per_channel`` - symmetric per-output-channel int8 weights, float activations;
* ``act8`` - float weights, input and output activations through the int8 graph's params;
* ``int16`` - per-channel int8 weights, symmetric int16 activations over the int8 range
  widened to the largest observed value (a 16x8 model calibrated without clipping).

Layers without constant weights only get ``act8`` and ``int16``.

    >>> fake_quant(np.array([0.26, -1.0]), 0.5, 0, "int8").tolist()
    [0.5, -1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microquant.ir.graph import Graph, Node, Tensor
from microquant.quant.primitives import QMAX, QMIN, dequantize, quantize
from microquant.quant.quantize import WEIGHT_AXIS
from microquant.report.layers.pairing import is_weighted
from microquant.report.layers.values import real

SIM_MODES = ("weights", "weights_per_channel", "act8", "int16")
ACT_MODES = ("act8", "int16")


def fake_quant(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """``dequantize(quantize(x))`` with per-tensor ``scale`` / ``zero_point``."""
    q = quantize(np.asarray(x, np.float32), np.float32(scale), np.int64(zero_point), dtype)
    return dequantize(q, np.float32(scale), np.int64(zero_point))


def int16_qparams(t: Tensor, observed: float = 0.0) -> tuple[float, int]:
    """Symmetric int16 parameters covering the int8 tensor's representable range and the
    largest |value| ``observed`` (with 16 bits there is no reason to clip)."""
    s, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    bound = max(abs(s * (QMIN["int8"] - zp)), abs(s * (QMAX["int8"] - zp)), observed)
    return (bound / QMAX["int16"] if bound > 0 else 1.0), 0


def per_channel_fake(w: np.ndarray, axis: int) -> np.ndarray:
    """``w`` through symmetric int8 per channel along ``axis`` (scale = max |w| / 127)."""
    w = np.asarray(w, np.float64)
    red = tuple(a for a in range(w.ndim) if a != axis)
    max_abs = np.max(np.abs(w), axis=red, keepdims=True)
    scale = np.where(max_abs > 0, max_abs / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


class LayerSimulator:
    """Runs :data:`SIM_MODES` for the layers of ``pairs`` (float / int8 node per layer);
    ``observed`` is the max |value| per float activation over the data (for ``int16``)."""

    def __init__(
        self,
        lowered: Graph,
        quantized: Graph,
        pairs: list[tuple[Node, Node]],
        observed: dict[str, float],
    ) -> None:
        self.lowered, self.quantized, self.pairs = lowered, quantized, pairs
        self.observed = observed
        self.pc_weights: dict[int, np.ndarray] = {
            i: per_channel_fake(lowered.tensor(ln.inputs[1]).data, WEIGHT_AXIS[ln.op])
            for i, (ln, _) in enumerate(pairs)
            if is_weighted(lowered, ln)
        }

    def modes(self, i: int) -> tuple[str, ...]:
        """The simulations that apply to layer ``i``."""
        return SIM_MODES if is_weighted(self.lowered, self.pairs[i][0]) else ACT_MODES

    def run(self, i: int, mode: str, fvals: dict) -> np.ndarray:
        """Layer ``i``'s output in ``mode``, given every float value ``fvals`` of a sample."""
        ln, qn = self.pairs[i]
        low, q = self.lowered, self.quantized
        weighted = is_weighted(low, ln)
        ins: list[np.ndarray | None] = []
        for k, (lname, qname) in enumerate(zip(ln.inputs, qn.inputs, strict=False)):
            lt = low.tensors.get(lname) if lname else None
            qt = q.tensors.get(qname) if qname else None
            if lt is None:
                ins.append(None)
            elif not lt.is_const:
                x = fvals[lname]
                if mode in ACT_MODES and qt is not None and qt.quant is not None:
                    x = self._fake_act(mode, qt, lname, x)
                ins.append(x)
            elif weighted and k == 1 and mode in ("weights_per_channel", "int16"):
                ins.append(self.pc_weights[i])
            elif weighted and k in (1, 2) and mode != "weights":
                ins.append(lt.data)  # float weights / bias
            elif np.asarray(lt.data).dtype.kind == "f" and qt is not None and qt.quant is not None:
                ins.append(real(qt, qt.data))  # the int8 graph's constant, dequantized
            else:
                ins.append(lt.data)
        y = np.asarray(kernel(ln.op).run_float(ln, low, ins)[0], np.float32)
        qt = q.tensor(qn.outputs[0])
        if mode in ACT_MODES and qt.quant is not None:
            y = self._fake_act(mode, qt, ln.outputs[0], y)
        return y

    def _fake_act(self, mode: str, qt: Tensor, name: str, x: np.ndarray) -> np.ndarray:
        """``x`` through int8 (the graph's parameters) or int16 (symmetric, no clipping)."""
        if mode == "act8":
            return fake_quant(x, qt.quant.scale[0], qt.quant.zero_point[0], "int8")
        s, z = int16_qparams(qt, self.observed.get(name, 0.0))
        return fake_quant(x, s, z, "int16")


_KERNELS: dict[str, Any] = {}


def kernel(op: str) -> Any:
    """The (cached) reference kernel of ``op``, for its ``run_float``."""
    from microquant.runtime.kernel import get_kernel

    if op not in _KERNELS:
        _KERNELS[op] = get_kernel(op)
    return _KERNELS[op]
