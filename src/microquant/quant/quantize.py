"""Full-integer quantization of a lowered (TFLite-level, float) graph - TFLite int8 spec.

``quantize_graph(lowered, ranges)`` returns a new graph where

* **weights** of CONV_2D / FULLY_CONNECTED (axis 0) and DEPTHWISE_CONV_2D (axis 3) are
  int8, symmetric per channel: ``s_c = max|w_c| / 127``, ``q = round(w / s_c)`` in
  ``[-127, 127]``, zero point 0 (an all-zero channel gets ``s_c = 1``);
* **bias** is int32 with ``scale_c = s_in * s_c`` (float32 product, as TFLM computes
  it) and zero point 0; a zero bias is created when the node has none;
* **activations** are int8, per tensor, asymmetric: ``choose_qparams(lo, hi)`` over the
  calibrated range (always including 0), after the rules of :mod:`.constraints`
  (fixed SOFTMAX/LOGISTIC/TANH outputs, shared encodings, fused-activation clamps);
  a CONCATENATION input with fixed output parameters that the other inputs do not share
  keeps them and reaches the concat through an inserted QUANTIZE (int requantize,
  output ``<name>_requantized``) - as the TFLite converter does;
* **other float constants** (e.g. a broadcast operand of ADD/MUL) are int8 per tensor,
  asymmetric over their own min/max (or their group's range when they feed a
  shared-encoding op such as CONCATENATION).

Graph inputs/outputs are int8; with ``float_io=True`` they stay float32 and a QUANTIZE
(inputs) / DEQUANTIZE (outputs) node is inserted; the float tensors keep the original
names and the int8 ones are renamed ``<name>_int8``.

Two options select TFLite's other full-integer schemes (``microquant.quant.schemes``):

* ``activation_dtype="int16"`` - the 16x8 scheme: activations (and other float constants)
  int16 **symmetric** (zero point 0, ``s = max|r| / 32767``), SOFTMAX/LOGISTIC/TANH
  outputs ``1/32768``, weights int8 as above, bias **int64** (``_int16`` inputs/outputs
  with ``float_io``);
* ``weight_bits=4`` - weights symmetric per channel in ``[-7, 7]`` (``s_c = max|w_c| / 7``),
  still stored as int8 values in the graph (the w4a8 scheme packs them at export);
* ``weight_scale="mse"`` - per channel, the scale ``alpha * max|w_c| / qmax`` with the
  ``alpha`` in ``[0.3, 1]`` (step 0.01) that minimises the weight quantization error
  (clipping a few outliers pays off at 4 bits); the default ``"max"`` uses ``alpha = 1``.

Example (a one-node graph):
    >>> from microquant.ir import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["y"])
    >>> _ = g.add_tensor(Tensor("x", (1, 4)))
    >>> _ = g.add_tensor(Tensor("y", (1, 4)))
    >>> g.nodes.append(Node("RELU", ["x"], ["y"]))
    >>> q = quantize_graph(g, {"x": (-1.0, 1.0), "y": (0.0, 1.0)})
    >>> q.tensor("y").dtype, int(q.tensor("y").quant.zero_point[0])
    ('int8', -128)
"""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, QuantParams, Tensor
from microquant.quant.constraints import (
    FIXED_OUTPUT_QPARAMS,
    FIXED_OUTPUT_QPARAMS_INT16,
    clamp_range,
    group_encoding,
    requantize_inputs,
    shared_groups,
)
from microquant.quant.primitives import choose_qparams, quantize, round_half_away

# op -> output-channel axis of its weight (input 1); input 2 is the bias.
WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
QUANTIZABLE_OPS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "MUL",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "MEAN",
    "RESHAPE",
    "SOFTMAX",
    "LOGISTIC",
    "TANH",
    "RELU",
    "RELU6",
    "CONCATENATION",
    "PAD",
    "TRANSPOSE",
}
# Ops with an int16 (16x8) kernel in TFLite Micro (each checked against the interpreter in
# tests/test_ops_int16.py); quantizing anything else with int16 activations is refused.
INT16_OPS = set(QUANTIZABLE_OPS)
INT32_MAX = (1 << 31) - 1
BIAS64_MAX = 1 << 46  # 16x8 int64 bias: TFLite's int64 rescale assumes |acc| < 2**47
ACTIVATION_DTYPES = ("int8", "int16")


def quantize_graph(
    lowered: Graph,
    ranges: dict[str, tuple[float, float]],
    float_io: bool = False,
    activation_dtype: str = "int8",
    weight_bits: int = 8,
    weight_scale: str = "max",
    per_tensor_weights: tuple[str, ...] = (),
) -> Graph:
    """A new full-integer graph from the float TFLite-level ``lowered`` graph and calibrated
    activation ``ranges`` (keyed by lowered tensor name). See the module docstring.

    ``activation_dtype`` is ``"int8"`` (default, TFLite's int8 scheme) or ``"int16"`` (16x8);
    ``weight_bits`` is 8 (default) or 4 (values in ``[-7, 7]``, int8 storage);
    ``weight_scale`` is ``"max"`` (default) or ``"mse"``; ops named in
    ``per_tensor_weights`` (e.g. ``("FULLY_CONNECTED",)``) get one weight scale per tensor."""
    if activation_dtype not in ACTIVATION_DTYPES:
        raise MicroquantError(
            f"activation_dtype must be one of {', '.join(ACTIVATION_DTYPES)}, "
            f"got {activation_dtype!r}"
        )
    if weight_bits not in (4, 8):
        raise MicroquantError(f"weight_bits must be 8 or 4, got {weight_bits!r}")
    if weight_scale not in ("max", "mse"):
        raise MicroquantError(f"weight_scale must be 'max' or 'mse', got {weight_scale!r}")
    g = lowered.copy()
    for node in g.nodes:
        if node.op not in QUANTIZABLE_OPS:
            raise MicroquantError(f"cannot quantize op {node.op} (node {node.name or '?'})")
        if activation_dtype == "int16" and node.op not in INT16_OPS:
            raise MicroquantError(
                f"op {node.op} (node {node.name or '?'}) has no int16 kernel in TFLite Micro; "
                "it cannot be quantized with int16 activations"
            )
    act = activation_dtype
    symmetric = act == "int16"  # TFLite's 16x8 activations are symmetric
    weight_like = _weight_and_bias_names(g)
    other_consts = {
        i
        for n in g.nodes
        for i in n.inputs
        if i
        and i not in weight_like
        and g.tensors[i].is_const
        and np.asarray(g.tensors[i].data).dtype.kind == "f"
    }
    fixed_table = FIXED_OUTPUT_QPARAMS_INT16 if act == "int16" else FIXED_OUTPUT_QPARAMS
    fixed = {n.outputs[0]: fixed_table[n.op] for n in g.nodes if n.op in fixed_table}
    ranges = _insert_requantize(g, ranges, _float_activations(g) | other_consts, fixed, act)
    activations = _float_activations(g)
    effective = _effective_ranges(g, activations, ranges)
    uf = shared_groups(g, activations | other_consts)
    for members in uf.groups().values():
        if all(g.tensors[m].is_const for m in members):
            continue  # a lone constant: quantized over its own values below
        enc = group_encoding(g, members, effective, fixed)
        if enc[0] == "fixed":
            scale, zp = enc[1]
            qp = (np.float32(scale), np.int64(zp))
        else:
            qp = choose_qparams(enc[0], enc[1], act, symmetric)
        for m in members:
            _set_activation(g.tensors[m], qp[0], qp[1], act)
    for name in other_consts:
        t = g.tensors[name]
        if t.dtype != act:  # not tied to a group: its own min/max
            s, z = choose_qparams(float(np.min(t.data)), float(np.max(t.data)), act, symmetric)
            _set_activation(t, s, z, act)
    for node in list(g.nodes):
        if node.op in WEIGHT_AXIS:
            _quantize_weights(g, node, weight_bits, weight_scale == "mse",
                              node.op in per_tensor_weights)
    g.remove_unused()  # originals of constants copied per node above
    if float_io:
        _add_float_io(g)
    g.meta = dict(g.meta)
    g.meta["float_io"] = bool(float_io)
    return g


# -- activations -------------------------------------------------------------
def _float_activations(g: Graph) -> set[str]:
    names = set(g.inputs)
    for n in g.nodes:
        names.update(i for i in n.inputs if i)
        names.update(n.outputs)
    return {
        x
        for x in names
        if x in g.tensors and not g.tensors[x].is_const and g.tensors[x].dtype == "float32"
    }


def _insert_requantize(
    g: Graph,
    ranges: dict[str, tuple[float, float]],
    quantizable: set[str],
    fixed: dict[str, tuple[float, int]],
    dtype: str,
) -> dict[str, tuple[float, float]]:
    """Put a QUANTIZE (integer requantize at run time) in front of each concat input that
    :func:`~microquant.quant.constraints.requantize_inputs` picks, in place; returns the
    ranges extended to the new tensors (each inherits its source's calibrated range)."""
    points = requantize_inputs(g, quantizable, fixed, dtype)
    if not points:
        return ranges  # the common case: the graph is untouched
    ranges = dict(ranges)
    g.meta = dict(g.meta)
    src_map = g.meta.get("calib_source")
    if isinstance(src_map, dict):
        src_map = g.meta["calib_source"] = dict(src_map)
    before: dict[int, list[Node]] = {}
    made: dict[tuple[int, str], str] = {}  # one requantized copy per (concat, source)
    for k, j in points:
        node, src = g.nodes[k], g.nodes[k].inputs[j]
        if (k, src) not in made:
            name = g.unique_name(f"{src}_requantized")
            g.add_tensor(Tensor(name, g.tensors[src].shape, g.tensors[src].dtype))
            if src in ranges:
                ranges[name] = ranges[src]
            if isinstance(src_map, dict) and src in src_map:
                src_map[name] = src_map[src]  # same values as the source, up to rounding
            before.setdefault(k, []).append(
                Node("QUANTIZE", [src], [name], {}, name=f"requantize_{name}")
            )
            made[(k, src)] = name
        node.inputs[j] = made[(k, src)]
    g.nodes = [m for k, n in enumerate(g.nodes) for m in (*before.get(k, []), n)]
    return ranges


def _effective_ranges(
    g: Graph, activations: set[str], ranges: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """Calibrated ranges of activations, clamped by their producer's fused activation."""
    out: dict[str, tuple[float, float]] = {}
    producers = {o: n for n in g.nodes for o in n.outputs}
    for name in activations:
        if name not in ranges:
            continue
        lo, hi = (float(v) for v in ranges[name])
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise MicroquantError(f"invalid calibration range ({lo}, {hi}) for tensor {name!r}")
        node = producers.get(name)
        if node is not None:
            lo, hi = clamp_range(lo, hi, node.attrs.get("activation"))
        out[name] = (lo, hi)
    return out


def _set_activation(t: Tensor, scale: float, zero_point: int, dtype: str = "int8") -> None:
    if t.quant is not None and t.dtype == dtype:
        return  # already set (a const shared by two groups keeps its first encoding)
    t.quant = QuantParams([scale], [zero_point])
    if t.is_const:
        t.data = quantize(t.data, t.quant.scale, t.quant.zero_point, dtype)
    t.dtype = dtype


def _set_int8(t: Tensor, scale: float, zero_point: int) -> None:
    _set_activation(t, scale, zero_point, "int8")


# -- weights and bias ----------------------------------------------------------
def _weight_and_bias_names(g: Graph) -> set[str]:
    names = set()
    for n in g.nodes:
        if n.op in WEIGHT_AXIS:
            names.update(i for i in n.inputs[1:3] if i)
    return names


def _private_const(g: Graph, node: Node, index: int) -> Tensor:
    """Input ``index`` of ``node`` as a constant only this node reads (copied if shared)."""
    name = node.inputs[index]
    t = g.tensor(name)
    if not t.is_const:
        raise MicroquantError(f"{node.op} {node.name or ''}: input {name!r} must be a constant")
    if t.dtype != "float32":
        raise MicroquantError(f"{node.op}: constant {name!r} is {t.dtype}, expected float32")
    if sum(name in c.inputs for c in g.nodes) > 1:
        t = g.add_const(name, np.array(t.data, copy=True))
        node.inputs[index] = t.name
    return t


def _mse_alpha(wf: np.ndarray, axis: int, max_abs: np.ndarray, qmax: int) -> np.ndarray:
    """Per channel, the clip ratio in ``[0.3, 1]`` minimising ``sum (w - Q(w))**2``."""
    w = np.moveaxis(wf, axis, 0).reshape(wf.shape[axis], -1)
    best = np.ones(w.shape[0])
    best_err = np.full(w.shape[0], np.inf)
    for alpha in np.arange(100, 29, -1) / 100.0:
        s = np.where(max_abs > 0, alpha * max_abs / qmax, 1.0)[:, None]
        err = np.sum((w - np.clip(round_half_away(w / s), -qmax, qmax) * s) ** 2, axis=1)
        better = err < best_err
        best = np.where(better, alpha, best)
        best_err = np.where(better, err, best_err)
    return best


def _quantize_weights(
    g: Graph, node: Node, bits: int = 8, mse: bool = False, per_tensor: bool = False
) -> None:
    axis = WEIGHT_AXIS[node.op]
    x = g.tensor(node.inputs[0])
    if x.quant is None:
        raise MicroquantError(f"{node.op}: input {x.name!r} has no quantization parameters")
    w = _private_const(g, node, 1)
    wf = np.asarray(w.data, dtype=np.float64)
    n_out = wf.shape[axis]
    if len(node.inputs) < 3 or not node.inputs[2]:
        bias = g.add_const(f"{w.name}_bias", np.zeros(n_out, np.float32))
        node.inputs = [*node.inputs[:2], bias.name, *node.inputs[3:]]
    b = _private_const(g, node, 2)
    bf = np.asarray(b.data, dtype=np.float64).reshape(-1)
    if bf.size != n_out:
        raise MicroquantError(f"{node.op}: bias {b.name!r} has {bf.size} values, expected {n_out}")
    s_in = np.float32(x.quant.scale[0])
    wide_bias = x.dtype == "int16"  # 16x8: int64 bias
    qmax = (1 << (bits - 1)) - 1  # 127, or 7 for 4-bit weights

    # Per tensor: the whole weight is one "channel" (one scale, no axis).
    wc = wf.reshape(1, -1) if per_tensor else wf
    c_axis = 0 if per_tensor else axis
    reduce_axes = tuple(a for a in range(wc.ndim) if a != c_axis)
    max_abs = np.max(np.abs(wc), axis=reduce_axes)
    if mse:
        max_abs = max_abs * _mse_alpha(wc, c_axis, max_abs, qmax)
    w_scale = np.where(max_abs > 0, max_abs / qmax, 1.0)
    # Keep every quantized bias inside int32 (int64: inside TFLite's 2**47 accumulator
    # bound, with headroom); only matters for near-zero channels.
    bias_max = BIAS64_MAX if wide_bias else INT32_MAX
    b_abs = np.abs(bf).max(keepdims=True) if per_tensor else np.abs(bf)
    w_scale = np.maximum(w_scale, b_abs / (float(s_in) * bias_max))
    w_scale = w_scale.astype(np.float32)
    bshape = [1] * wf.ndim
    bshape[axis] = -1
    ws = w_scale.astype(np.float64)
    wq = np.clip(round_half_away(wf / (ws if per_tensor else ws.reshape(bshape))), -qmax, qmax)
    w.data = wq.astype(np.int8)
    w.dtype = "int8"
    n_scales = w_scale.size
    w.quant = QuantParams(w_scale, np.zeros(n_scales, np.int64), None if per_tensor else axis)

    b_scale = (s_in * w_scale).astype(np.float32)  # float32 product, as TFLM computes it
    bq = round_half_away(bf / b_scale.astype(np.float64))
    b_dtype = "int64" if wide_bias else "int32"
    info = np.iinfo(b_dtype)
    lo, hi = (info.min, info.max) if b_dtype == "int32" else (-(1 << 62), 1 << 62)  # castable
    b.data = np.clip(bq, lo, hi).astype(b_dtype).reshape(b.shape)
    b.dtype = b_dtype
    b.quant = QuantParams(b_scale, np.zeros(n_scales, np.int64), None if per_tensor else 0)


# -- float I/O -------------------------------------------------------------------
def _rename_activation(g: Graph, old: str, new: str) -> None:
    t = g.tensors.pop(old)
    t.name = new
    g.tensors[new] = t
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        n.outputs = [new if o == old else o for o in n.outputs]
    src = g.meta.get("calib_source")
    if isinstance(src, dict) and old in src:
        src[new] = src[old]


def _add_float_io(g: Graph) -> None:
    """QUANTIZE after each graph input, DEQUANTIZE before each output (names kept float)."""
    g.meta = dict(g.meta)
    if isinstance(g.meta.get("calib_source"), dict):
        g.meta["calib_source"] = dict(g.meta["calib_source"])
    def edge(name: str, op: str) -> Node | None:
        t = g.tensors[name]
        if t.dtype not in ACTIVATION_DTYPES or (name in g.outputs and name in g.inputs):
            return None
        inner = g.unique_name(f"{name}_{t.dtype}")
        _rename_activation(g, name, inner)
        g.add_tensor(Tensor(name, t.shape, "float32"))
        io = ([name], [inner]) if op == "QUANTIZE" else ([inner], [name])
        return Node(op, *io, {}, name=f"{op.lower()}_{name}")

    front = [n for n in (edge(name, "QUANTIZE") for name in g.inputs) if n]
    back = [n for n in (edge(name, "DEQUANTIZE") for name in g.outputs) if n]
    g.nodes = front + g.nodes + back
