"""Write a TFLite-level :class:`~microquant.ir.graph.Graph` as ``.tflite`` flatbuffer bytes.

Layout of what we write (schema: ``ai_edge_litert.schema_py_generated``):

* one subgraph; tensors ordered by first use (graph inputs, then node order);
* buffer 0 is the empty sentinel and every activation points at it; each distinct
  constant payload gets one buffer (identical payloads share it), 16-byte aligned
  like the converter's output so int32/float data is naturally aligned;
* quantization only on tensors with :class:`QuantParams` (no min/max, no
  shape_signature, no metadata or signature defs: nothing the runtimes do not read);
* operator codes carry both ``builtin_code`` and ``deprecated_builtin_code``;
* int8 constants listed in ``graph.meta["int4_tensors"]`` are written as packed INT4.

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph()
    >>> for n in ("x", "y"):
    ...     _ = g.add_tensor(Tensor(n, (1, 4)))
    >>> g.nodes.append(Node("RELU", ["x"], ["y"]))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> write_tflite(g)[4:8]
    b'TFL3'
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as fb
from flatbuffers import Builder

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Tensor
from microquant.ir.tflite_ops import (
    BUILTIN_CODES,
    DTYPE_TO_TFL,
    INT4_META,
    TFL_INT4,
    attrs_to_options,
    op_version,
    pack_int4,
)

SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16
DESCRIPTION = "microquant"


class _AlignedBufferT(fb.BufferT):
    """A buffer whose payload is written as raw bytes with 16-byte alignment."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    def Pack(self, builder: Builder) -> int:  # noqa: N802  (flatbuffers object-API name)
        data = None
        if self.payload:
            n = len(self.payload)
            builder.StartVector(1, n, BUFFER_ALIGNMENT)
            builder.head -= n
            builder.Bytes[builder.head : builder.head + n] = self.payload
            data = builder.EndVector()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        return fb.BufferEnd(builder)


def _tensor_order(graph: Graph) -> list[str]:
    order: dict[str, None] = {}
    for name in graph.inputs:
        order[name] = None
    for node in graph.nodes:
        for name in (*node.inputs, *node.outputs):
            if name:
                order[name] = None
    for name in graph.outputs:
        order[name] = None
    for name in order:
        graph.tensor(name)  # raises a clear error for dangling references
    return list(order)


class _SharedQuantizationT(fb.QuantizationParametersT):
    """Quantization parameters whose scale / zero-point vectors are written once per
    distinct content and shared by offset (a FlatBuffer allows any number of tables to
    point at one vector). Per-channel models repeat the same all-zero ``int64`` zero-point
    vector for every weight and bias tensor - on the MLPerf Tiny autoencoder that is
    ~29 KB of identical bytes."""

    def __init__(self, cache: dict[tuple[str, bytes], int]) -> None:
        super().__init__()
        self.cache = cache

    def _vector(self, builder: Builder, arr: np.ndarray) -> int:
        key = (arr.dtype.str, arr.tobytes())
        if key not in self.cache:
            self.cache[key] = builder.CreateNumpyVector(arr)
        return self.cache[key]

    def Pack(self, builder: Builder) -> int:  # noqa: N802  (flatbuffers object-API name)
        scale = self._vector(builder, self.scale)
        zero_point = self._vector(builder, self.zeroPoint)
        fb.QuantizationParametersStart(builder)
        fb.QuantizationParametersAddScale(builder, scale)
        fb.QuantizationParametersAddZeroPoint(builder, zero_point)
        fb.QuantizationParametersAddQuantizedDimension(builder, self.quantizedDimension)
        return fb.QuantizationParametersEnd(builder)


def _quantization(
    t: Tensor, cache: dict[tuple[str, bytes], int]
) -> fb.QuantizationParametersT | None:
    if t.quant is None:
        return None
    q = _SharedQuantizationT(cache)
    q.scale = np.ascontiguousarray(t.quant.scale, dtype="<f4")
    q.zeroPoint = np.ascontiguousarray(t.quant.zero_point, dtype="<i8")
    q.quantizedDimension = int(t.quant.axis or 0)
    return q


def _payload(t: Tensor) -> bytes:
    data = np.asarray(t.data)
    if str(data.dtype) != t.dtype:
        raise MicroquantError(
            f"tensor {t.name!r}: constant data is {data.dtype} but the tensor says {t.dtype}"
        )
    if data.size != t.size:
        raise MicroquantError(
            f"tensor {t.name!r}: constant has {data.size} values, shape {t.shape} needs {t.size}"
        )
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes()


def write_tflite(graph: Graph) -> bytes:
    """Serialize a TFLite-level graph (float or quantized) to ``.tflite`` bytes.

    Node ops must be TFLite builtin names with attrs as in ARCHITECTURE.md's op table;
    ``""`` inputs become the optional-input marker ``-1``, trailing ones are dropped.
    Raises :class:`MicroquantError` for graphs that cannot be written.
    """
    names = _tensor_order(graph)
    index = {n: i for i, n in enumerate(names)}

    buffers: list[fb.BufferT] = [_AlignedBufferT(b"")]
    buffer_of_payload: dict[bytes, int] = {}
    tensors: list[fb.TensorT] = []
    vector_cache: dict[tuple[str, bytes], int] = {}
    const_bytes = 0
    int4 = set(graph.meta.get(INT4_META, ()))
    for name in names:
        t = graph.tensor(name)
        tt = fb.TensorT()
        tt.name = name
        tt.shape = np.asarray(t.shape, dtype=np.int32)
        if t.dtype not in DTYPE_TO_TFL:
            raise MicroquantError(f"tensor {name!r}: dtype {t.dtype} has no TFLite type")
        tt.type = DTYPE_TO_TFL[t.dtype]
        tt.quantization = _quantization(t, vector_cache)
        packed = name in int4 and t.is_const
        if packed:
            if t.dtype != "int8":
                raise MicroquantError(f"tensor {name!r}: only int8 constants can be packed as int4")
            tt.type = TFL_INT4
        if t.is_const:
            payload = pack_int4(t.data) if packed else _payload(t)
            # An empty constant gets its own (empty) buffer so it stays distinct from
            # activations, which all use buffer 0.
            if payload not in buffer_of_payload or not payload:
                buffer_of_payload[payload] = len(buffers)
                buffers.append(_AlignedBufferT(payload))
                const_bytes += len(payload)
            tt.buffer = buffer_of_payload[payload]
        tensors.append(tt)

    codes: list[fb.OperatorCodeT] = []
    code_index: dict[tuple[str, int], int] = {}
    operators: list[fb.OperatorT] = []
    for node in graph.nodes:
        kind, options = attrs_to_options(node.op, node.attrs)
        first = next((i for i in node.inputs if i), None)
        in_dtype = graph.tensor(first).dtype if first else None
        key = (node.op, op_version(node.op, in_dtype, node.attrs))
        if key not in code_index:
            oc = fb.OperatorCodeT()
            oc.builtinCode = BUILTIN_CODES[node.op]
            # Old readers only see the int8 field; codes >= 127 use the placeholder 127.
            oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
            oc.version = key[1]
            code_index[key] = len(codes)
            codes.append(oc)
        op = fb.OperatorT()
        op.opcodeIndex = code_index[key]
        ins = list(node.inputs)
        while ins and not ins[-1]:  # LiteRT's CONV_2D counts inputs to detect a bias
            ins.pop()
        op.inputs = np.asarray([index[i] if i else -1 for i in ins], dtype=np.int32)
        op.outputs = np.asarray([index[o] for o in node.outputs], dtype=np.int32)
        op.builtinOptionsType = kind
        op.builtinOptions = options
        operators.append(op)

    sg = fb.SubGraphT()
    sg.tensors = tensors
    sg.inputs = np.asarray([index[n] for n in graph.inputs], dtype=np.int32)
    sg.outputs = np.asarray([index[n] for n in graph.outputs], dtype=np.int32)
    sg.operators = operators
    sg.name = graph.name or "main"

    model = fb.ModelT()
    model.version = SCHEMA_VERSION
    model.operatorCodes = codes
    model.subgraphs = [sg]
    model.description = DESCRIPTION
    model.buffers = buffers

    builder = Builder(const_bytes + 16 * BUFFER_ALIGNMENT * len(buffers) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
