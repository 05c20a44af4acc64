"""Per-op C emission: turn one quantized node into const parameter objects + one kernel call.

Every constant comes from the Python reference kernel's ``prepare()`` (the same
multipliers, shifts, offsets and clamp bounds the bit-exact oracle uses); the only extra
work done here is folding the input zero point into the bias of CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED (exact integer algebra, see ``mq_kernels.h``).

Each emitter returns the kernel call (a C statement) and registers its const objects with
the :class:`Emitter`, which also knows how to name a tensor's bytes (``A + offset`` for
arena tensors, a flash array for constants read as data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.export.c.sizes import const_data_bytes
from microquant.ir.graph import Graph, Node
from microquant.runtime.fixedpoint import wrap_i32
from microquant.runtime.kernel import get_kernel

MAX_DIMS = 6
ADD_TABLE_MIN_COUNT = 512  # ADD outputs from which the 2 x 256 int32 rescale tables pay off
ADD_TABLE_BYTES = 2 * 256 * 4
_PER_LINE = 24


def c_array(ctype: str, name: str, values: np.ndarray) -> str:
    """``static const <ctype> name[] = {...};`` with a fixed number of values per line."""
    flat = [str(int(v)) for v in np.ravel(values)]
    if not flat:
        flat = ["0"]  # C forbids empty initializers; a zero-length tensor is never read
    lines = [", ".join(flat[i : i + _PER_LINE]) for i in range(0, len(flat), _PER_LINE)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};\n"


def c_int(v: int) -> str:
    """An int32 literal (INT32_MIN cannot be written as a plain negative literal)."""
    v = int(v)
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)


def c_struct(ctype: str, name: str, fields: dict[str, Any]) -> str:
    return f"static const {ctype} {name} = {_init(fields)};\n"


def _init(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        if isinstance(v, dict):
            parts.append(f".{k} = {_init(v)}")
        elif isinstance(v, list | tuple):
            parts.append(f".{k} = {{{', '.join(c_int(x) for x in v) or '0'}}}")
        elif isinstance(v, str):
            parts.append(f".{k} = {v}")
        else:
            parts.append(f".{k} = {c_int(v)}")
    return "{" + ", ".join(parts) + "}"


def _as_i32(values: np.ndarray) -> np.ndarray:
    return wrap_i32(np.asarray(values, dtype=np.int64)).astype(np.int32)


class Emitter:
    """Collects const definitions for one model and hands out unique C names."""

    def __init__(self, graph: Graph, prefix: str, offsets: dict[str, int]) -> None:
        self.graph = graph
        self.prefix = prefix
        self.offsets = offsets
        self.defs: list[str] = []
        self.scratch_bytes = 0
        self._count = 0
        self._const_data: dict[str, str] = {}

    @property
    def const_bytes(self) -> int:
        """Flash bytes of the const objects so far (:func:`.sizes.const_data_bytes`: arrays
        word-rounded, structs at their ARM ``sizeof``, fixed arrays inside included)."""
        return const_data_bytes("".join(self.defs))

    def name(self, kind: str) -> str:
        self._count += 1
        return f"{self.prefix}_{kind}{self._count}"

    def array(self, ctype: str, kind: str, values: np.ndarray) -> str:
        name = self.name(kind)
        self.defs.append(c_array(ctype, name, values))
        return name

    def struct(self, ctype: str, kind: str, fields: dict[str, Any]) -> str:
        name = self.name(kind)
        self.defs.append(c_struct(ctype, name, fields))
        return name

    def ptr(self, tensor: str) -> str:
        """C expression for a tensor's bytes (arena slice, or a flash copy of a constant)."""
        t = self.graph.tensor(tensor)
        if t.is_const:
            if t.dtype != "int8":
                raise MicroquantError(
                    f"constant {tensor!r} is {t.dtype}; the C export reads int8 data only"
                )
            if tensor not in self._const_data:
                self._const_data[tensor] = self.array("int8_t", "data", t.data.astype(np.int8))
            return self._const_data[tensor]
        return f"A + {self.offsets[tensor]}"


# -- helpers -----------------------------------------------------------------------------


def _window(p: Any, node: Node, graph: Graph) -> dict[str, int]:
    x = graph.tensor(node.inputs[0]).shape
    y = graph.tensor(node.outputs[0]).shape
    w = p.window
    return {
        "batches": x[0], "in_h": w.in_h, "in_w": w.in_w, "in_c": x[3],
        "out_h": w.out_h, "out_w": w.out_w, "out_c": y[3],
        "kh": w.kh, "kw": w.kw, "sh": w.sh, "sw": w.sw, "dh": w.dh, "dw": w.dw,
        "pad_top": w.pad_top, "pad_left": w.pad_left,
    }


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _check_rank(node: Node, rank: int) -> None:
    if rank > MAX_DIMS:
        raise MicroquantError(f"{node.op} {node.name!r}: rank {rank} > {MAX_DIMS} not supported")


def _walk(dims: list[int], strides: list[int]) -> dict[str, Any]:
    return {"rank": len(dims), "dims": list(dims) or [1], "strides": list(strides) or [0]}


def _size(graph: Graph, name: str) -> int:
    return graph.tensor(name).size


# -- emitters ------------------------------------------------------------------------------


def _conv(e: Emitter, node: Node, p: Any) -> str:
    g = e.graph
    w = g.const(node.inputs[1]).astype(np.int64)
    co = w.shape[0]
    depth = int(np.prod(w.shape[1:]))
    bias = p.bias - p.in_zp * w.reshape(co, depth).sum(axis=1)
    e.scratch_bytes = max(e.scratch_bytes, depth)
    fields = {
        "win": _window(p, node, g), "groups": p.groups, "in_zp": p.in_zp, "out_zp": p.out_zp,
        "act_min": p.act_min, "act_max": p.act_max,
        "weights": e.array("int8_t", "w", w.astype(np.int8)),
        "bias": e.array("int32_t", "b", _as_i32(bias)),
        "mult": e.array("int32_t", "m", _as_i32(p.mult)),
        "shift": e.array("int32_t", "s", _as_i32(p.shift)),
    }
    name = e.struct("mq_conv_params", "conv", fields)
    return f"mq_conv2d(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])}, S);"


def _depthwise(e: Emitter, node: Node, p: Any) -> str:
    g = e.graph
    w = g.const(node.inputs[1]).astype(np.int64)
    co = w.shape[3]
    taps = w.reshape(-1, co)
    fields = {
        "win": _window(p, node, g), "depth_multiplier": p.depth_multiplier,
        "in_zp": p.in_zp, "out_zp": p.out_zp, "act_min": p.act_min, "act_max": p.act_max,
        "weights": e.array("int8_t", "w", w.astype(np.int8)),
        "bias": e.array("int32_t", "b", _as_i32(p.bias)),
        "bias_full": e.array("int32_t", "bf", _as_i32(p.bias - p.in_zp * taps.sum(axis=0))),
        "mult": e.array("int32_t", "m", _as_i32(p.mult)),
        "shift": e.array("int32_t", "s", _as_i32(p.shift)),
    }
    name = e.struct("mq_depthwise_params", "dw", fields)
    return f"mq_depthwise_conv2d(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _fully_connected(e: Emitter, node: Node, p: Any) -> str:
    g = e.graph
    w = g.const(node.inputs[1]).astype(np.int64)
    units, depth = w.shape
    wq = g.tensor(node.inputs[1]).quant
    w_zp = 0 if p.mult.size > 1 or wq is None else int(wq.zero_point[0])
    bias = p.bias - p.in_zp * (w - w_zp).sum(axis=1)
    fields = {
        "batches": _size(g, node.inputs[0]) // depth, "depth": depth, "units": units,
        "w_zp": w_zp, "out_zp": p.out_zp, "act_min": p.act_min, "act_max": p.act_max,
        "n_mult": int(p.mult.size),
        "weights": e.array("int8_t", "w", w.astype(np.int8)),
        "bias": e.array("int32_t", "b", _as_i32(bias)),
        "mult": e.array("int32_t", "m", _as_i32(p.mult)),
        "shift": e.array("int32_t", "s", _as_i32(p.shift)),
    }
    name = e.struct("mq_fc_params", "fc", fields)
    return f"mq_fully_connected(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _pool(fn: str) -> Callable[[Emitter, Node, Any], str]:
    def emit(e: Emitter, node: Node, p: Any) -> str:
        fields = {"win": _window(p, node, e.graph), "act_min": p.act_min, "act_max": p.act_max}
        name = e.struct("mq_pool_params", "pool", fields)
        return f"{fn}(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"

    return emit


def _broadcast(e: Emitter, node: Node) -> dict[str, Any]:
    g = e.graph
    out = g.tensor(node.outputs[0]).shape
    _check_rank(node, len(out))
    a = g.tensor(node.inputs[0]).shape
    b = g.tensor(node.inputs[1]).shape
    flat = int(tuple(a) == tuple(out) and tuple(b) == tuple(out))

    def strides(shape: tuple[int, ...]) -> list[int]:
        padded = (1,) * (len(out) - len(shape)) + tuple(shape)
        dims = zip(padded, out, _strides(padded), strict=True)
        return [0 if d == 1 and o != 1 else s for d, o, s in dims]

    rank = len(out)
    return {
        "flat": flat, "count": int(np.prod(out, dtype=np.int64)), "rank": rank,
        "dims": list(out) or [1], "a_strides": strides(a) or [0], "b_strides": strides(b) or [0],
    }


def _add(e: Emitter, node: Node, p: Any) -> str:
    fields = {
        "bc": _broadcast(e, node),
        "in1_offset": p.input1_offset, "in2_offset": p.input2_offset,
        "out_offset": p.output_offset,
        "in1_mult": p.input1_multiplier, "in1_shift": p.input1_shift,
        "in2_mult": p.input2_multiplier, "in2_shift": p.input2_shift,
        "out_mult": p.output_multiplier, "out_shift": p.output_shift,
        "left_shift": p.left_shift, "act_min": p.act_min, "act_max": p.act_max,
    }
    name = e.struct("mq_add_params", "add", fields)
    a, b, y = (e.ptr(n) for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    scratch = "(void *)0"
    if fields["bc"]["count"] >= ADD_TABLE_MIN_COUNT:  # tables pay off: see mq_add
        e.scratch_bytes = max(e.scratch_bytes, ADD_TABLE_BYTES)
        scratch = "S"
    return f"mq_add(&{name}, {a}, {b}, {y}, {scratch});"


def _mul(e: Emitter, node: Node, p: Any) -> str:
    fields = {
        "bc": _broadcast(e, node),
        "in1_offset": p.input1_offset, "in2_offset": p.input2_offset,
        "out_offset": p.output_offset, "out_mult": p.output_multiplier,
        "out_shift": p.output_shift, "act_min": p.act_min, "act_max": p.act_max,
    }
    name = e.struct("mq_mul_params", "mul", fields)
    a, b, y = (e.ptr(n) for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    return f"mq_mul(&{name}, {a}, {b}, {y});"


def _relu(e: Emitter, node: Node, p: Any) -> str:
    fields = {
        "count": _size(e.graph, node.inputs[0]), "in_zp": p.in_zp, "out_zp": p.out_zp,
        "mult": p.mult, "shift": p.shift, "act_min": p.act_min, "act_max": p.act_max,
    }
    name = e.struct("mq_requant_params", "rq", fields)
    return f"mq_requantize(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _quantize(e: Emitter, node: Node, p: Any) -> str:
    g = e.graph
    if g.tensor(node.inputs[0]).dtype != "int8" or p.dtype != "int8":
        raise MicroquantError(
            f"QUANTIZE {node.name!r}: only int8 -> int8 requantization is integer-only; "
            "export a graph with int8 inputs/outputs (float_io=False)"
        )
    fields = {
        "count": _size(g, node.inputs[0]), "in_zp": p.in_zp, "out_zp": p.out_zp,
        "mult": p.mult, "shift": p.shift, "act_min": p.qmin, "act_max": p.qmax,
    }
    name = e.struct("mq_requant_params", "rq", fields)
    return f"mq_requantize(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _relu6(e: Emitter, node: Node, p: Any) -> str:
    fields = {"count": _size(e.graph, node.inputs[0]), "lo": p.zero, "hi": p.six}
    name = e.struct("mq_clamp_params", "clamp", fields)
    return f"mq_clamp(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _sigmoid(fn: str) -> Callable[[Emitter, Node, Any], str]:
    def emit(e: Emitter, node: Node, p: Any) -> str:
        fields = {
            "count": _size(e.graph, node.inputs[0]), "in_zp": p.input_zero_point,
            "mult": p.input_multiplier, "shift": p.input_left_shift,
            "radius": p.input_range_radius,
        }
        name = e.struct("mq_sigmoid_params", "sig", fields)
        return f"{fn}(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"

    return emit


def _softmax(e: Emitter, node: Node, p: Any) -> str:
    shape = e.graph.tensor(node.inputs[0]).shape
    depth = shape[-1] if shape else 1
    fields = {
        "rows": _size(e.graph, node.inputs[0]) // max(depth, 1), "depth": depth,
        "mult": p.input_multiplier, "left_shift": p.input_left_shift, "diff_min": p.diff_min,
    }
    name = e.struct("mq_softmax_params", "sm", fields)
    return f"mq_softmax(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _mean(e: Emitter, node: Node, p: Any) -> str:
    shape = e.graph.tensor(node.inputs[0]).shape
    _check_rank(node, len(shape))
    st = _strides(shape)
    kept = [a for a in range(len(shape)) if a not in p.axes]
    fields = {
        "outer": _walk([shape[a] for a in kept], [st[a] for a in kept]),
        "inner": _walk([shape[a] for a in p.axes], [st[a] for a in p.axes]),
        "count": p.count, "in_zp": p.input_zp, "out_zp": p.output_zp,
        "mult": p.multiplier, "shift": p.shift,
    }
    name = e.struct("mq_mean_params", "mean", fields)
    return f"mq_mean(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _transpose(e: Emitter, node: Node, perm: tuple[int, ...]) -> str:
    shape = e.graph.tensor(node.inputs[0]).shape
    _check_rank(node, len(shape))
    st = _strides(shape)
    fields = {"walk": _walk([shape[a] for a in perm], [st[a] for a in perm])}
    name = e.struct("mq_transpose_params", "tr", fields)
    return f"mq_transpose(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _pad(e: Emitter, node: Node, p: Any) -> str:
    g = e.graph
    shape = g.tensor(node.inputs[0]).shape
    out = g.tensor(node.outputs[0]).shape
    _check_rank(node, len(shape))
    ost = _strides(out)
    base = sum(before * s for (before, _), s in zip(p.pads, ost, strict=True))
    row_len = shape[-1] if shape else 1
    fields = {
        "out_count": int(np.prod(out, dtype=np.int64)), "value": p.value, "base": base,
        "row_len": row_len, "rows": _walk(list(shape[:-1]), ost[:-1]),
    }
    if int(np.prod(shape, dtype=np.int64)) == 0:
        fields["rows"] = _walk([0], [0])
    name = e.struct("mq_pad_params", "pad", fields)
    return f"mq_pad(&{name}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


def _concat(e: Emitter, node: Node, axis: int) -> str:
    g = e.graph
    out = g.tensor(node.outputs[0]).shape
    inner = [int(np.prod(g.tensor(n).shape[axis:], dtype=np.int64)) for n in node.inputs]
    inner_name = e.array("int32_t", "ci", np.array(inner, dtype=np.int32))
    fields = {
        "n_inputs": len(node.inputs), "outer": int(np.prod(out[:axis], dtype=np.int64)),
        "inner": inner_name,
    }
    name = e.struct("mq_concat_params", "cat", fields)
    ptrs = ", ".join(f"({e.ptr(n)})" for n in node.inputs)
    return (
        f"{{ const int8_t *const ins[{len(node.inputs)}] = {{{ptrs}}}; "
        f"mq_concatenation(&{name}, ins, {e.ptr(node.outputs[0])}); }}"
    )


def _reshape(e: Emitter, node: Node, _p: Any) -> str:
    n = _size(e.graph, node.inputs[0])
    return f"mq_copy({n}, {e.ptr(node.inputs[0])}, {e.ptr(node.outputs[0])});"


EMITTERS: dict[str, Callable[[Emitter, Node, Any], str]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool("mq_average_pool2d"),
    "MAX_POOL_2D": _pool("mq_max_pool2d"),
    "ADD": _add,
    "MUL": _mul,
    "MEAN": _mean,
    "RESHAPE": _reshape,
    "PAD": _pad,
    "CONCATENATION": _concat,
    "TRANSPOSE": _transpose,
    "SOFTMAX": _softmax,
    "LOGISTIC": _sigmoid("mq_logistic"),
    "TANH": _sigmoid("mq_tanh"),
    "RELU": _relu,
    "RELU6": _relu6,
    "QUANTIZE": _quantize,
}

SUPPORTED_OPS = tuple(sorted(EMITTERS))


def emit_node(e: Emitter, node: Node) -> str:
    """The C statement running ``node`` (its const objects go to ``e.defs``)."""
    if node.op not in EMITTERS:
        raise MicroquantError(
            f"the C export has no kernel for op {node.op} ({node.name or 'unnamed'}); "
            f"supported: {', '.join(SUPPORTED_OPS)}"
        )
    g = e.graph
    for name in node.inputs + node.outputs:
        if name and not g.tensor(name).is_const and g.tensor(name).dtype != "int8":
            raise MicroquantError(
                f"{node.op} {node.name!r}: tensor {name!r} is {g.tensor(name).dtype}; the C "
                "export runs int8 activations only (int8 or w4a8 scheme)"
            )
    params = get_kernel(node.op).prepare(node, g)
    return EMITTERS[node.op](e, node, params)
