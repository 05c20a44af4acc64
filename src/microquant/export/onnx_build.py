"""Shared pieces of the ONNX exporters: finding weights and building the output model.

:class:`Builder` starts from the float model of a normalized ONNX-level graph
(``to_onnx``), lets an exporter replace initializers by small constant sub-graphs
(``Builder.prefix``, emitted before the model's nodes) and writes the result with short
tensor names. :class:`HalfBlobs` stores many small float tensors as one float16 blob.

Example:
    >>> import onnx.parser
    >>> from microquant.ir.onnx_io import graph_from_model
    >>> g = graph_from_model(onnx.parser.parse_model('''
    ...   <ir_version: 8, opset_import: ["" : 17]>
    ...   g (float[1, 4] x) => (float[1, 3] y) <float[3, 4] w = {1,2,3,4,5,6,7,8,9,10,11,12}>
    ...   { y = Gemm<transB=1>(x, w) }'''))
    >>> find_weights(g)["w"].out_axis
    0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from microquant.ir.graph import Graph, Node


@dataclass
class WeightUse:
    """A constant weight: ``out_axis`` indexes output channels; the rest is reduced."""

    name: str
    out_axis: int
    node: Node

    def view2d(self, w: np.ndarray) -> np.ndarray:
        """``[C, K]``: output channels first, the reduction values flattened."""
        return np.moveaxis(w, self.out_axis, 0).reshape(w.shape[self.out_axis], -1)


def find_weights(graph: Graph) -> dict[str, WeightUse]:
    """Constant float weights of Conv / Gemm / MatMul, by initializer name.

    A constant read in two roles with different channel axes is left out (kept float).
    """
    found: dict[str, WeightUse] = {}
    clash: set[str] = set()
    for n in graph.nodes:
        if len(n.inputs) < 2:
            continue
        w = graph.const(n.inputs[1])
        if w is None or w.dtype.kind != "f":
            continue
        if n.op == "Conv" and w.ndim >= 3:
            axis = 0
        elif n.op == "Gemm" and w.ndim == 2:
            axis = 0 if n.attrs.get("transB", 0) else 1
        elif n.op == "MatMul" and w.ndim == 2:
            axis = 1
        else:
            continue
        prev = found.get(n.inputs[1])
        if prev is not None and prev.out_axis != axis:
            clash.add(n.inputs[1])
        found.setdefault(n.inputs[1], WeightUse(n.inputs[1], axis, n))
    return {k: v for k, v in found.items() if k not in clash}


class Builder:
    """Collects new nodes / initializers for a model derived from ``base``."""

    def __init__(self, base: onnx.ModelProto) -> None:
        self.base = base
        self.used = {i.name for i in base.graph.initializer}
        for n in base.graph.node:
            self.used.update(n.input)
            self.used.update(n.output)
        self.used.update(i.name for i in base.graph.input)
        self.inits: dict[str, onnx.TensorProto] = {i.name: i for i in base.graph.initializer}
        self.prefix: list[onnx.NodeProto] = []  # constant-only nodes, emitted first
        self.shared: dict[tuple, str] = {}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def init(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits[name] = numpy_helper.from_array(np.asarray(array), name)
        return name

    def init_proto(self, base: str, make) -> str:
        name = self.fresh(base)
        self.inits[name] = make(name)
        return name

    def const(self, key: str, array: np.ndarray) -> str:
        """One initializer shared by every user of the same small constant."""
        arr = np.asarray(array)
        k = (key, arr.dtype.str, arr.shape, arr.tobytes())
        if k not in self.shared:
            self.shared[k] = self.init(key, arr)
        return self.shared[k]

    def shape(self, shape: tuple[int, ...]) -> str:
        """An int64 ``Reshape`` target for ``shape``, with one ``-1`` placed so that weights
        of different sizes share constants (e.g. every depthwise 3x3 kernel)."""
        dims = [int(d) for d in shape]
        candidates = [dims[:i] + [-1] + dims[i + 1:] for i in range(len(dims))] or [dims]
        for cand in candidates:
            arr = np.array(cand, np.int64)
            if ("shape", arr.dtype.str, arr.shape, arr.tobytes()) in self.shared:
                return self.const("shape", arr)
        return self.const("shape", np.array(candidates[0], np.int64))

    def drop(self, name: str) -> None:
        self.inits.pop(name, None)

    @staticmethod
    def node(op: str, inputs: list[str], outputs: list[str], domain: str = "",
             **attrs) -> onnx.NodeProto:
        return helper.make_node(op, inputs, outputs, domain=domain or None, **attrs)

    def finish(self, nodes: list[onnx.NodeProto], opset: int, compact: bool = True
               ) -> onnx.ModelProto:
        g = self.base.graph
        nodes = self.prefix + nodes
        used = set()
        for n in nodes:
            used.update(n.input)
        used.update(o.name for o in g.output)
        inits = [t for name, t in self.inits.items() if name in used]
        value_info = [] if compact else list(g.value_info)
        graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits,
                                  value_info=value_info)
        if compact:
            compact_names(graph)
        opsets = [helper.make_opsetid("", opset)]
        return helper.make_model(graph, opset_imports=opsets, producer_name="microquant",
                                 ir_version=helper.find_min_ir_version_for(opsets))


def compact_names(graph: onnx.GraphProto) -> None:
    """Rename internal tensors to short ids and drop node names (in place).

    Long exporter names (``StatefulPartitionedCall/model/conv2d/Conv2D__5:0``) repeated in
    every Q/DQ node cost tens of kilobytes - several percent of an int8 model. Graph
    inputs and outputs keep their names.
    """
    keep = {i.name for i in graph.input} | {o.name for o in graph.output} | {""}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in keep:
            return name
        if name not in short:
            k = len(short)
            while np.base_repr(k, 36).lower() in keep:
                k += 1_000_000
            short[name] = np.base_repr(k, 36).lower()
        return short[name]

    for t in graph.initializer:
        t.name = rename(t.name)
    for n in graph.node:
        n.name = ""
        n.input[:] = [rename(i) for i in n.input]
        n.output[:] = [rename(o) for o in n.output]


def base_model(graph: Graph, opset: int | None = None) -> tuple[onnx.ModelProto, int]:
    """The float model of ``graph`` (node ``i`` = ``graph.nodes[i]``), at ``opset`` or
    newer; only ``ReduceMean``'s ``axes`` changes form up to opset 21, handled here.

    Gemm nodes get an explicit ``beta`` attribute: ONNX Runtime's QDQ Gemm fusion reads
    it without falling back to the default and silently skips Gemms that leave it out.
    """
    from microquant.ir.onnx_io import to_onnx

    model = to_onnx(graph)
    for n in model.graph.node:
        if n.op_type == "Gemm" and not any(a.name == "beta" for a in n.attribute):
            n.attribute.append(helper.make_attribute("beta", 1.0))
    have = int(graph.meta.get("opset", 17))
    if opset is None or have >= opset:
        return model, max(have, 13)
    for n in model.graph.node:
        if n.op_type == "ReduceMean" and any(a.name == "axes" for a in n.attribute):
            axes = next(a for a in n.attribute if a.name == "axes")
            name = f"{n.output[0]}__axes"
            model.graph.initializer.append(
                numpy_helper.from_array(np.array(list(axes.ints), np.int64), name))
            n.input.append(name)
            n.attribute.remove(axes)
    return model, opset


class HalfBlobs:
    """Float tensors stored as float16, grouped by ``shape[1:]`` into one initializer per
    group, decoded by one ``Cast`` + one ``Split`` (axis 0) per group.

    Dozens of per-channel scales and biases each cost a ``Cast`` node and an initializer
    header (~40 bytes); one blob per trailing shape costs two nodes in all.
    """

    def __init__(self, b: Builder) -> None:
        self.b = b
        self.groups: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}

    def add(self, dst: str, array: np.ndarray) -> None:
        """``dst`` will hold ``array`` (rounded to float16) as float32."""
        arr = np.asarray(array).astype(np.float16)
        self.groups.setdefault(arr.shape[1:], []).append((dst, arr))

    def emit(self) -> None:
        """Prepend the decoding nodes to ``Builder.prefix`` (before any of their users)."""
        b = self.b
        nodes: list[onnx.NodeProto] = []
        for members in self.groups.values():
            if len(members) == 1:
                dst, arr = members[0]
                half = b.init(f"{dst}__fp16", arr)
                nodes.append(b.node("Cast", [half], [dst], to=TensorProto.FLOAT))
                continue
            blob = b.init("fp16_blob", np.concatenate([a for _, a in members]))
            full = b.fresh("fp16_blob_f32")
            sizes = b.init("fp16_blob_sizes", np.array([a.shape[0] for _, a in members],
                                                       np.int64))
            nodes.append(b.node("Cast", [blob], [full], to=TensorProto.FLOAT))
            nodes.append(b.node("Split", [full, sizes], [d for d, _ in members], axis=0))
        b.prefix[0:0] = nodes
        self.groups = {}


def halve_floats(b: Builder, blobs: HalfBlobs | None = None) -> None:
    """Store every float32 initializer (2+ values, within float16 range) as float16, cast
    back to float32 under its own name (through ``blobs`` when given)."""
    for name, t in list(b.inits.items()):
        if t.data_type != TensorProto.FLOAT:
            continue
        data = numpy_helper.to_array(t)
        if data.size < 2 or np.abs(data).max() > 65504:
            continue
        b.drop(name)
        if blobs is not None and data.ndim >= 1:
            blobs.add(name, data)
            continue
        half = b.init(f"{name}__fp16", data.astype(np.float16))
        b.prefix.append(b.node("Cast", [half], [name], to=TensorProto.FLOAT))
