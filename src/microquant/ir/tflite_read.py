"""Read ``.tflite`` flatbuffer bytes into a TFLite-level :class:`~microquant.ir.graph.Graph`.

The inverse of :func:`microquant.ir.tflite_write.write_tflite`, and able to read the TFLite
converter's files (e.g. MLCommons' reference int8 models):

* subgraph 0 only; tensors keep their names (made unique, ``t<i>`` when empty);
* a tensor is a constant when its buffer holds data (or, for zero-size tensors, when
  nothing produces it);
* quantization -> :class:`QuantParams` (``axis`` is kept when per-channel or non-zero);
* ops of ARCHITECTURE.md's table get our attrs; other builtin ops keep their builtin
  name, snake_case attrs and the raw options (so writing them back is lossless);
* a RESHAPE without a shape input gets one (from its options or its output shape);
* CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED always get 3 inputs (``""``: no bias);
* packed INT4 constants are unpacked to int8 values and listed in
  ``graph.meta["int4_tensors"]`` (so writing the graph back packs them again).

Anything that is not a readable ``.tflite`` raises :class:`MicroquantError`.

Example:
    >>> read_tflite(b"not a model")
    Traceback (most recent call last):
    ...
    microquant.errors.MicroquantError: not a .tflite model: 11 bytes without the TFL3 identifier
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, QuantParams, Tensor
from microquant.ir.tflite_ops import (
    BUILTIN_NAMES,
    INT4_META,
    OPS,
    RAW_OPTIONS,
    TFL_INT4,
    TFL_TO_DTYPE,
    generic_attrs,
    options_to_attrs,
    unpack_int4,
)

_BIASED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def parse_model(data: bytes) -> Any:
    """Unpack ``data`` into the schema's object API (``ModelT``), checking it is sane."""
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise MicroquantError(f"not a .tflite model: {len(data)} bytes without the TFL3 identifier")
    try:
        model = fb.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # any parse failure of untrusted bytes is a user error
        raise MicroquantError(f"corrupt .tflite model ({type(e).__name__}: {e})") from None
    if not model.subgraphs:
        raise MicroquantError("corrupt .tflite model: it has no subgraph")
    sg = model.subgraphs[0]
    n_tensors = len(sg.tensors or [])
    n_buffers = len(model.buffers or [])
    n_codes = len(model.operatorCodes or [])
    for t in sg.tensors or []:
        if not 0 <= t.buffer < max(n_buffers, 1):
            raise MicroquantError(f"corrupt .tflite model: buffer index {t.buffer} out of range")
    idx = [*_ints(sg.inputs), *_ints(sg.outputs)]
    for op in sg.operators or []:
        if not 0 <= op.opcodeIndex < n_codes:
            raise MicroquantError(f"corrupt .tflite model: opcode index {op.opcodeIndex}")
        idx += [i for i in _ints(op.inputs) if i != -1] + _ints(op.outputs)
    if any(not 0 <= i < n_tensors for i in idx):
        raise MicroquantError("corrupt .tflite model: tensor index out of range")
    return model


def io_counts(data: bytes) -> tuple[int, int]:
    """``(number of inputs, number of outputs)`` of subgraph 0; validates ``data``."""
    sg = parse_model(data).subgraphs[0]
    return len(_ints(sg.inputs)), len(_ints(sg.outputs))


def _ints(v: Any) -> list[int]:
    return [] if v is None else [int(i) for i in v]


def _op_name(code: Any) -> str:
    c = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if c == fb.BuiltinOperator.CUSTOM:
        custom = (code.customCode or b"").decode("utf-8", "replace")
        raise MicroquantError(f"unsupported custom operator {custom!r} in .tflite model")
    if c not in BUILTIN_NAMES:
        raise MicroquantError(f"unknown TFLite builtin operator code {c} in .tflite model")
    return BUILTIN_NAMES[c]


def _quant(t: Any) -> QuantParams | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale = np.asarray(q.scale, dtype=np.float32)
    zp = np.zeros(scale.size, np.int64) if q.zeroPoint is None else np.asarray(q.zeroPoint)
    qd = int(q.quantizedDimension)
    return QuantParams(scale, zp, qd if scale.size > 1 or qd != 0 else None)


def _const(t: Any, buf: Any, data: bytes, dtype: str, shape: tuple[int, ...]) -> Any:
    raw: Any = None
    if buf.data is not None and len(buf.data) > 0:
        raw = np.asarray(buf.data, dtype=np.uint8)
    elif buf.offset > 1:  # large models keep buffers after the flatbuffer
        raw = np.frombuffer(data, np.uint8, count=int(buf.size), offset=int(buf.offset))
    if raw is None:
        return None
    dt = np.dtype(dtype).newbyteorder("<")
    n = int(np.prod(shape, dtype=np.int64))
    if raw.size != n * dt.itemsize:
        raise MicroquantError(
            f"corrupt .tflite model: tensor {t.name!r} has {raw.size} bytes of data, "
            f"shape {shape} {dtype} needs {n * dt.itemsize}"
        )
    return raw.view(dt).astype(dtype).reshape(shape)


def _int4_const(t: Any, name: str, model: Any, data: bytes) -> Tensor:
    """A packed INT4 constant as an int8 tensor (values in [-8, 7])."""
    shape = tuple(_ints(t.shape))
    n = int(np.prod(shape, dtype=np.int64))
    raw = _const(t, model.buffers[t.buffer], data, "uint8", ((n + 1) // 2,))
    if raw is None:
        raise MicroquantError(f"tensor {name!r} is INT4 but has no constant data")
    return Tensor(name, shape, "int8", unpack_int4(raw, n).reshape(shape), _quant(t))


def read_tflite(data: bytes) -> Graph:
    """Parse ``.tflite`` bytes (subgraph 0) into a TFLite-level graph."""
    data = bytes(data)
    model = parse_model(data)
    sg = model.subgraphs[0]
    ops = sg.operators or []
    op_names = [_op_name(c) for c in model.operatorCodes or []]

    produced = {int(o) for op in ops for o in _ints(op.outputs)}
    inputs, outputs = _ints(sg.inputs), _ints(sg.outputs)
    used = set(inputs) | set(outputs) | produced
    used |= {i for op in ops for i in _ints(op.inputs) if i != -1}

    graph = Graph(name=(sg.name or b"main").decode("utf-8", "replace"))
    names: dict[int, str] = {}
    for i, t in enumerate(sg.tensors or []):
        if i not in used:
            continue
        base = (t.name or b"").decode("utf-8", "replace") or f"t{i}"
        name = graph.unique_name(base)
        names[i] = name
        if t.type == TFL_INT4:
            graph.add_tensor(_int4_const(t, name, model, data))
            graph.meta.setdefault(INT4_META, []).append(name)
            continue
        if t.type not in TFL_TO_DTYPE:
            type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
            raise MicroquantError(
                f"tensor {name!r} has TFLite type {type_names.get(t.type, t.type)}, "
                "which microquant does not support"
            )
        dtype = TFL_TO_DTYPE[t.type]
        shape = tuple(_ints(t.shape))
        value = _const(t, model.buffers[t.buffer], data, dtype, shape) if model.buffers else None
        if value is None and t.buffer != 0 and i not in produced and i not in inputs:
            if int(np.prod(shape, dtype=np.int64)) == 0:
                value = np.zeros(shape, dtype)
        graph.add_tensor(Tensor(name, shape, dtype, value, _quant(t)))

    for k, op in enumerate(ops):
        name = op_names[op.opcodeIndex]
        ins = [names[i] if i != -1 else "" for i in _ints(op.inputs)]
        outs = [names[o] for o in _ints(op.outputs)]
        if name in OPS:
            attrs = options_to_attrs(name, op.builtinOptions)
        else:
            attrs = generic_attrs(op.builtinOptions) if op.builtinOptions is not None else {}
            version = int(model.operatorCodes[op.opcodeIndex].version)
            attrs[RAW_OPTIONS] = (op.builtinOptionsType, op.builtinOptions, version)
        if name in _BIASED and len(ins) == 2:
            ins.append("")  # contract: an absent bias is an explicit ""
        if name == "RESHAPE" and len([i for i in ins if i]) < 2:
            new_shape = getattr(op.builtinOptions, "newShape", None)
            target = (
                _ints(new_shape) if new_shape is not None else list(graph.tensor(outs[0]).shape)
            )
            ins = [ins[0], graph.add_const(f"{outs[0]}_shape", np.asarray(target, np.int32)).name]
        graph.nodes.append(Node(name, ins, outs, attrs, name=outs[0] if outs else f"op{k}"))

    graph.inputs = [names[i] for i in inputs]
    graph.outputs = [names[i] for i in outputs]
    return graph
