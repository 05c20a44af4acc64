"""ONNX <-> :class:`~microquant.ir.graph.Graph` (the only module that touches ONNX protos).

``load_onnx`` produces an *ONNX-level* graph: ``Node.op`` is the ONNX op type, attributes
are plain Python values (ints, floats, strings, lists, NumPy arrays for tensors),
initializers and ``Constant`` nodes become constant tensors. Symbolic batch dimensions
are pinned to 1 and ONNX shape inference gives every tensor a static shape.

``to_onnx`` goes back (float, ONNX level) so calibration can run ONNX Runtime on the
normalized graph with any intermediate tensor exposed as an output.

Example:
    >>> import onnx.parser
    >>> m = onnx.parser.parse_model('''
    ...   <ir_version: 8, opset_import: ["" : 17]>
    ...   g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }''')
    >>> g = graph_from_model(m)
    >>> g.ops(), g.tensor("y").shape
    (['Relu'], (1, 4))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor

MIN_OPSET = 13

# ONNX ops the importer accepts. The second group only appears in constant sub-graphs
# (shape arithmetic) and must be folded away by ``passes.normalize``.
SUPPORTED_ONNX_OPS = (
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
)
CONSTANT_ONLY_OPS = (
    "Cast",
    "Constant",
    "ConstantOfShape",
    "Gather",
    "Range",
    "Shape",
    "Slice",
)


def load_onnx(path: str | Path) -> Graph:
    """Read an ONNX file into an ONNX-level :class:`Graph` with static shapes."""
    p = Path(path)
    if not p.is_file():
        raise MicroquantError(f"model file not found: {p}")
    if p.stat().st_size == 0:
        raise MicroquantError(f"model file is empty: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf raises several types for garbage input
        raise MicroquantError(f"{p} is not a valid ONNX model ({type(e).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise MicroquantError(f"{p} is not a valid ONNX model (no graph)")
    g = graph_from_model(model)
    g.name = model.graph.name or p.stem
    return g


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise MicroquantError("model imports no default ONNX opset")


def _attr_value(a: onnx.AttributeProto) -> Any:
    if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        raise MicroquantError(
            f"attribute {a.name!r} holds a sub-graph; control flow is unsupported"
        )
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list):
        return [
            x.decode("utf-8")
            if isinstance(x, bytes)
            else numpy_helper.to_array(x)
            if isinstance(x, onnx.TensorProto)
            else x
            for x in v
        ]
    return v


def _pin_batch(model: onnx.ModelProto) -> None:
    """Symbolic/unknown leading dims -> 1; other symbolic dims are an error."""
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if k == 0:
                d.Clear()
                d.dim_value = 1
            else:
                raise MicroquantError(
                    f"input {vi.name!r} has a symbolic dimension {k} ({d.dim_param or '?'}); "
                    "only the batch dimension may be dynamic"
                )
    # Declared output/intermediate shapes may still carry the symbolic batch: let
    # inference recompute them.
    for vi in model.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]


def _check_defined(model: onnx.ModelProto) -> None:
    """Every node input exists before it is read (ONNX requires topological order)."""
    known = {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    known.add("")
    for i, n in enumerate(model.graph.node):
        for name in n.input:
            if name not in known:
                raise MicroquantError(
                    f"node {n.name or f'{n.op_type}_{i}'!r} reads {name!r}, which is neither "
                    "a graph input, an initializer nor the output of an earlier node"
                )
        known.update(n.output)
    for o in model.graph.output:
        if o.name not in known:
            raise MicroquantError(f"graph output {o.name!r} is produced by no node")


def graph_from_model(model: onnx.ModelProto) -> Graph:
    """Convert an in-memory ``ModelProto`` (see :func:`load_onnx`)."""
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise MicroquantError(
            f"model uses ONNX opset {opset}; opset {MIN_OPSET} or newer is required "
            "(re-export it or convert with onnx.version_converter)"
        )
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's
    for n in model.graph.node:
        known = n.op_type in SUPPORTED_ONNX_OPS + CONSTANT_ONLY_OPS
        if n.domain not in ("", "ai.onnx") or not known:
            op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
            raise MicroquantError(
                f"unsupported ONNX op {op} (node {n.name or n.output[0]!r}); supported: "
                + ", ".join(SUPPORTED_ONNX_OPS)
            )
    _check_defined(model)
    _pin_batch(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MicroquantError(f"ONNX shape inference failed: {msg}") from None

    g = Graph(name=model.graph.name or "graph")
    g.meta["opset"] = opset
    for init in model.graph.initializer:
        data = numpy_helper.to_array(init)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise MicroquantError(f"initializer {init.name!r} contains NaN or Inf")
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        g.add_tensor(Tensor(init.name, data.shape, str(data.dtype), np.array(data)))

    infos = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.output)}
    infos.update({vi.name: vi for vi in model.graph.input})

    def add_activation(name: str, where: str) -> None:
        if name in g.tensors or not name:
            return
        vi = infos.get(name)
        tt = vi.type.tensor_type if vi is not None else None
        if (
            tt is None
            or not tt.HasField("shape")
            or any(not d.HasField("dim_value") for d in tt.shape.dim)
        ):
            raise MicroquantError(f"cannot infer a static shape for tensor {name!r} ({where})")
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        g.add_tensor(Tensor(name, tuple(d.dim_value for d in tt.shape.dim), str(dtype)))

    for vi in model.graph.input:
        if vi.name not in g.tensors:  # old exporters list initializers as inputs too
            add_activation(vi.name, "graph input")
            g.inputs.append(vi.name)

    for i, n in enumerate(model.graph.node):
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        name = n.name or f"{n.op_type}_{i}"
        if n.op_type == "Constant":
            value = _constant_value(attrs, name)
            g.add_tensor(Tensor(n.output[0], value.shape, str(value.dtype), value))
            continue
        for out in n.output:
            add_activation(out, f"output of node {name!r}")
        g.nodes.append(Node(n.op_type, list(n.input), list(n.output), attrs, name))
    for o in model.graph.output:
        if o.name not in g.tensors:
            raise MicroquantError(f"graph output {o.name!r} is produced by no node")
        g.outputs.append(o.name)
    return g


def _constant_value(attrs: dict[str, Any], name: str) -> np.ndarray:
    if "value" in attrs:
        v = np.asarray(attrs["value"])
    elif "value_float" in attrs:
        v = np.array(attrs["value_float"], np.float32)
    elif "value_floats" in attrs:
        v = np.array(attrs["value_floats"], np.float32)
    elif "value_int" in attrs:
        v = np.array(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        v = np.array(attrs["value_ints"], np.int64)
    else:
        raise MicroquantError(f"Constant node {name!r} has an unsupported value kind")
    if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
        raise MicroquantError(f"constant {name!r} contains NaN or Inf")
    return v.astype(np.float32) if v.dtype == np.float64 else v


def _make_attr(key: str, value: Any) -> onnx.AttributeProto:
    if isinstance(value, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(value))
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(key, [numpy_helper.from_array(v) for v in value])
    if isinstance(value, np.integer):
        value = int(value)
    elif isinstance(value, np.floating):
        value = float(value)
    return helper.make_attribute(key, value)


def _value_info(t: Tensor) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), list(t.shape)
    )


def to_onnx(graph: Graph, outputs: list[str] | None = None) -> onnx.ModelProto:
    """An ONNX-level graph as a ``ModelProto`` (float, same names).

    ``outputs`` (default: the graph outputs) lists the tensors to expose as model outputs;
    any activation may be named, e.g. every tensor for calibration.
    """
    opset = int(graph.meta.get("opset", 17))
    used = set(graph.outputs) | set(outputs or [])
    for n in graph.nodes:
        used.update(n.inputs)
    nodes = []
    for n in graph.nodes:
        node = helper.make_node(n.op, n.inputs, n.outputs, name=n.name or None)
        node.attribute.extend(_make_attr(k, v) for k, v in n.attrs.items())
        nodes.append(node)
    inits = [
        numpy_helper.from_array(np.asarray(t.data), t.name)
        for t in graph.tensors.values()
        if t.is_const and t.name in used
    ]
    out_names = list(outputs) if outputs is not None else list(graph.outputs)
    inputs = [_value_info(graph.tensor(i)) for i in graph.inputs]
    outs = [_value_info(graph.tensor(o)) for o in out_names]
    value_info = [
        _value_info(t)
        for t in graph.tensors.values()
        if not t.is_const and t.name not in graph.inputs and t.name not in out_names
    ]
    g = helper.make_graph(nodes, graph.name or "graph", inputs, outs, inits, value_info=value_info)
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        g,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="microquant",
    )
