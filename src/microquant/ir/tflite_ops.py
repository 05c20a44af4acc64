"""The op table shared by the ``.tflite`` writer and reader.

For every op of ARCHITECTURE.md's TFLite-level contract it says which ``BuiltinOptions``
table carries the attributes, how our attrs map to that table's fields and back, and
which operator version to declare. Versions are the ones the TFLite converter writes
(LiteRT's builtin resolver rejects versions it does not know; TFLM ignores them).

Example:
    >>> kind, opts = attrs_to_options("SOFTMAX", {"beta": 1.0})
    >>> options_to_attrs("SOFTMAX", opts)
    {'beta': 1.0}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from microquant.errors import MicroquantError

# numpy dtype name <-> TensorType
DTYPE_TO_TFL: dict[str, int] = {
    "float32": fb.TensorType.FLOAT32,
    "float16": fb.TensorType.FLOAT16,
    "float64": fb.TensorType.FLOAT64,
    "int8": fb.TensorType.INT8,
    "uint8": fb.TensorType.UINT8,
    "int16": fb.TensorType.INT16,
    "uint16": fb.TensorType.UINT16,
    "int32": fb.TensorType.INT32,
    "uint32": fb.TensorType.UINT32,
    "int64": fb.TensorType.INT64,
    "uint64": fb.TensorType.UINT64,
    "bool": fb.TensorType.BOOL,
    "complex64": fb.TensorType.COMPLEX64,
    "complex128": fb.TensorType.COMPLEX128,
}
TFL_TO_DTYPE: dict[int, str] = {v: k for k, v in DTYPE_TO_TFL.items()}

# Packed 4-bit constants. The graph keeps their values as int8 (in [-8, 7]) and lists the
# tensor names under ``graph.meta[INT4_META]``; the writer stores them as TensorType.INT4,
# two values per byte, and the reader unpacks them back to int8 (and lists them again).
INT4_META = "int4_tensors"
TFL_INT4 = fb.TensorType.INT4


def pack_int4(values: np.ndarray) -> bytes:
    """Pack int8 values in ``[-8, 7]`` two per byte, row-major: element ``2i`` in the low
    nibble of byte ``i``, element ``2i+1`` in the high nibble (an odd tail fills a low
    nibble) - the layout TFLite's ``UnpackDenseInt4IntoInt8`` reads.

    >>> pack_int4(np.array([1, -2, 7], np.int8)).hex()
    'e107'
    """
    v = np.asarray(values).reshape(-1).astype(np.int64)
    if v.size and (v.min() < -8 or v.max() > 7):
        raise MicroquantError("int4 tensor values must lie in [-8, 7]")
    nib = (v & 0xF).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(raw: np.ndarray | bytes, count: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: ``count`` sign-extended int8 values."""
    b = np.frombuffer(bytes(raw), np.uint8).astype(np.int16)
    if b.size != (count + 1) // 2:
        raise MicroquantError(
            f"int4 tensor has {b.size} bytes, {count} values need {(count + 1) // 2}"
        )
    out = np.empty(b.size * 2, np.int16)
    out[0::2] = b & 0xF
    out[1::2] = b >> 4
    out = np.where(out > 7, out - 16, out)
    return out[:count].astype(np.int8)

BUILTIN_CODES: dict[str, int] = {
    k: v for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")
}
BUILTIN_NAMES: dict[int, str] = {v: k for k, v in BUILTIN_CODES.items()}

_PADDING = {"SAME": fb.Padding.SAME, "VALID": fb.Padding.VALID}
_PADDING_NAMES = {v: k for k, v in _PADDING.items()}
_ACT = {
    "NONE": fb.ActivationFunctionType.NONE,
    "RELU": fb.ActivationFunctionType.RELU,
    "RELU_N1_TO_1": fb.ActivationFunctionType.RELU_N1_TO_1,
    "RELU6": fb.ActivationFunctionType.RELU6,
}
_ACT_NAMES = {v: k for k, v in _ACT.items()}


def _err(op: str, msg: str) -> MicroquantError:
    return MicroquantError(f"{op}: {msg}")


def _padding(op: str, a: dict[str, Any]) -> int:
    p = a.get("padding")
    if p not in _PADDING:
        raise _err(op, f"padding must be SAME or VALID, got {p!r}")
    return _PADDING[p]


def _act(op: str, a: dict[str, Any]) -> int:
    act = a.get("activation") or "NONE"
    if act not in _ACT:
        raise _err(op, f"unsupported fused activation {act!r}")
    return _ACT[act]


def _act_name(op: str, code: int) -> str:
    if code not in _ACT_NAMES:
        raise _err(op, f"unsupported fused activation code {code}")
    return _ACT_NAMES[code]


def _int(op: str, a: dict[str, Any], key: str, default: int | None = None) -> int:
    v = a.get(key, default)
    if v is None:
        raise _err(op, f"missing attribute {key!r}")
    return int(v)


# -- attrs -> options ----------------------------------------------------------------
def _conv_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.Conv2DOptionsT()
    o.padding = _padding(op, a)
    o.strideH, o.strideW = _int(op, a, "stride_h", 1), _int(op, a, "stride_w", 1)
    o.dilationHFactor = _int(op, a, "dilation_h", 1)
    o.dilationWFactor = _int(op, a, "dilation_w", 1)
    o.fusedActivationFunction = _act(op, a)
    return o


def _dw_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.DepthwiseConv2DOptionsT()
    o.padding = _padding(op, a)
    o.strideH, o.strideW = _int(op, a, "stride_h", 1), _int(op, a, "stride_w", 1)
    o.dilationHFactor = _int(op, a, "dilation_h", 1)
    o.dilationWFactor = _int(op, a, "dilation_w", 1)
    o.depthMultiplier = _int(op, a, "depth_multiplier", 1)
    o.fusedActivationFunction = _act(op, a)
    return o


def _fc_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.FullyConnectedOptionsT()
    o.fusedActivationFunction = _act(op, a)
    o.keepNumDims = bool(a.get("keep_num_dims", False))
    return o


def _pool_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.Pool2DOptionsT()
    o.padding = _padding(op, a)
    o.strideH, o.strideW = _int(op, a, "stride_h", 1), _int(op, a, "stride_w", 1)
    o.filterHeight, o.filterWidth = _int(op, a, "filter_h"), _int(op, a, "filter_w")
    o.fusedActivationFunction = _act(op, a)
    return o


def _act_only(cls: type) -> Callable[[str, dict[str, Any]], Any]:
    def make(op: str, a: dict[str, Any]) -> Any:
        o = cls()
        o.fusedActivationFunction = _act(op, a)
        return o

    return make


def _reducer_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.ReducerOptionsT()
    o.keepDims = bool(a.get("keep_dims", False))
    return o


def _softmax_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.SoftmaxOptionsT()
    o.beta = float(a.get("beta", 1.0))
    return o


def _concat_opts(op: str, a: dict[str, Any]) -> Any:
    o = fb.ConcatenationOptionsT()
    o.axis = _int(op, a, "axis")
    o.fusedActivationFunction = _act(op, a)
    return o


def _empty(cls: type) -> Callable[[str, dict[str, Any]], Any]:
    return lambda op, a: cls()


# -- options -> attrs ----------------------------------------------------------------
def _conv_attrs(op: str, o: Any) -> dict[str, Any]:
    a = {
        "stride_h": int(o.strideH),
        "stride_w": int(o.strideW),
        "dilation_h": int(o.dilationHFactor),
        "dilation_w": int(o.dilationWFactor),
        "padding": _PADDING_NAMES.get(o.padding, "VALID"),
        "activation": _act_name(op, o.fusedActivationFunction),
    }
    if isinstance(o, fb.DepthwiseConv2DOptionsT):
        a["depth_multiplier"] = int(o.depthMultiplier)
    return a


def _pool_attrs(op: str, o: Any) -> dict[str, Any]:
    return {
        "filter_h": int(o.filterHeight),
        "filter_w": int(o.filterWidth),
        "stride_h": int(o.strideH),
        "stride_w": int(o.strideW),
        "padding": _PADDING_NAMES.get(o.padding, "VALID"),
        "activation": _act_name(op, o.fusedActivationFunction),
    }


class OpSpec:
    """How one op is encoded: options union type, both conversions, int8 version."""

    def __init__(
        self,
        kind: int,
        to_options: Callable[[str, dict[str, Any]], Any] | None,
        to_attrs: Callable[[str, Any], dict[str, Any]],
        int8_version: int = 2,
    ) -> None:
        self.kind = kind
        self.to_options = to_options
        self.to_attrs = to_attrs
        self.int8_version = int8_version


_BO = fb.BuiltinOptions
_NO_ATTRS: Callable[[str, Any], dict[str, Any]] = lambda op, o: {}  # noqa: E731

OPS: dict[str, OpSpec] = {
    "CONV_2D": OpSpec(_BO.Conv2DOptions, _conv_opts, _conv_attrs, 3),
    "DEPTHWISE_CONV_2D": OpSpec(_BO.DepthwiseConv2DOptions, _dw_opts, _conv_attrs, 3),
    "FULLY_CONNECTED": OpSpec(
        _BO.FullyConnectedOptions,
        _fc_opts,
        lambda op, o: {
            "activation": _act_name(op, o.fusedActivationFunction),
            "keep_num_dims": bool(o.keepNumDims),
        },
        4,
    ),
    "ADD": OpSpec(
        _BO.AddOptions,
        _act_only(fb.AddOptionsT),
        lambda op, o: {"activation": _act_name(op, o.fusedActivationFunction)},
    ),
    "MUL": OpSpec(
        _BO.MulOptions,
        _act_only(fb.MulOptionsT),
        lambda op, o: {"activation": _act_name(op, o.fusedActivationFunction)},
    ),
    "AVERAGE_POOL_2D": OpSpec(_BO.Pool2DOptions, _pool_opts, _pool_attrs),
    "MAX_POOL_2D": OpSpec(_BO.Pool2DOptions, _pool_opts, _pool_attrs),
    "MEAN": OpSpec(
        _BO.ReducerOptions, _reducer_opts, lambda op, o: {"keep_dims": bool(o.keepDims)}
    ),
    # The converter writes RESHAPE without options: the shape comes from input 1.
    "RESHAPE": OpSpec(_BO.NONE, None, _NO_ATTRS, 1),
    "SOFTMAX": OpSpec(_BO.SoftmaxOptions, _softmax_opts, lambda op, o: {"beta": float(o.beta)}),
    "LOGISTIC": OpSpec(_BO.NONE, None, _NO_ATTRS),
    "TANH": OpSpec(_BO.NONE, None, _NO_ATTRS),
    "RELU": OpSpec(_BO.NONE, None, _NO_ATTRS),
    "RELU6": OpSpec(_BO.NONE, None, _NO_ATTRS),
    "CONCATENATION": OpSpec(
        _BO.ConcatenationOptions,
        _concat_opts,
        lambda op, o: {
            "axis": int(o.axis),
            "activation": _act_name(op, o.fusedActivationFunction),
        },
    ),
    "PAD": OpSpec(_BO.PadOptions, _empty(fb.PadOptionsT), _NO_ATTRS),
    "TRANSPOSE": OpSpec(_BO.TransposeOptions, _empty(fb.TransposeOptionsT), _NO_ATTRS),
    "QUANTIZE": OpSpec(_BO.NONE, None, _NO_ATTRS, 1),
    "DEQUANTIZE": OpSpec(_BO.NONE, None, _NO_ATTRS),
}

# Key under which the reader keeps ``(options union type, *OptionsT, op version)`` of ops
# outside OPS, so the writer puts them back unchanged (our runtime reports them unsupported).
RAW_OPTIONS = "_tflite_options"


def attrs_to_options(op: str, attrs: dict[str, Any]) -> tuple[int, Any]:
    """``(BuiltinOptions union type, *OptionsT or None)`` for a node."""
    spec = OPS.get(op)
    if spec is None:
        if op not in BUILTIN_CODES:
            raise MicroquantError(f"cannot write op {op!r}: not a TFLite builtin operator")
        kind, options, _ = attrs.get(RAW_OPTIONS, (_BO.NONE, None, 1))
        return kind, options
    if spec.to_options is None:
        return _BO.NONE, None
    return spec.kind, spec.to_options(op, attrs)


def options_to_attrs(op: str, options: Any) -> dict[str, Any]:
    """Our attrs from a read ``*OptionsT`` (``None`` when the file has no options)."""
    spec = OPS[op]
    if options is None:
        options = _default_options(spec)
        if options is None:
            return {}
    return spec.to_attrs(op, options)


def _default_options(spec: OpSpec) -> Any:
    """An options table with schema defaults (a file may omit an all-default table)."""
    names = {v: k for k, v in vars(_BO).items() if not k.startswith("_")}
    cls = getattr(fb, names.get(spec.kind, "NONE") + "T", None)
    return cls() if cls is not None and spec.kind != _BO.NONE else None


def op_version(op: str, input_dtype: str | None, attrs: dict[str, Any]) -> int:
    """Operator version the converter would declare for this op and input type."""
    spec = OPS.get(op)
    if spec is None and RAW_OPTIONS in attrs:
        return int(attrs[RAW_OPTIONS][2])
    if op == "FULLY_CONNECTED" and attrs.get("keep_num_dims"):
        return 5
    if spec is None or input_dtype not in ("int8", "int16"):
        return 1
    if op == "QUANTIZE":
        return 2 if input_dtype == "int8" else 1  # int8 -> int8 requantize
    return spec.int8_version


def generic_attrs(options: Any) -> dict[str, Any]:
    """Best-effort snake_case attrs of an options table of an op outside our table."""
    out: dict[str, Any] = {}
    for k, v in vars(options).items():
        snake = "".join("_" + c.lower() if c.isupper() else c for c in k)
        out[snake] = v.tolist() if isinstance(v, np.ndarray) else v
    return out
