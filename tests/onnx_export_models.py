"""Small float ONNX models and helpers for the ONNX export tests (ONNX Runtime oracle)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from microquant.ir.onnx_io import graph_from_model
from microquant.passes import normalize


def _model(nodes, inputs, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv+Relu -> depthwise Conv+Relu -> residual Add -> 1x1 Conv+Clip(0,6) ->
    GlobalAveragePool -> Flatten -> Gemm(transB) -> Softmax; input [1, 3, 8, 8]."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3),
        _init("b1", rng.standard_normal(8) * 0.1),
        _init("w2", rng.standard_normal((8, 1, 3, 3)) * 0.4),
        _init("b2", rng.standard_normal(8) * 0.1),
        _init("w3", rng.standard_normal((16, 8, 1, 1)) * 0.3),
        _init("b3", rng.standard_normal(16) * 0.1),
        _init("fc_w", rng.standard_normal((5, 16)) * 0.5),
        _init("fc_b", rng.standard_normal(5) * 0.1),
        _init("lo", np.array(0.0)),
        _init("hi", np.array(6.0)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["s"]),
        helper.make_node("Conv", ["s", "w3", "b3"], ["c3"]),
        helper.make_node("Clip", ["c3", "lo", "hi"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)


def mlp(dims: tuple[int, ...] = (256, 256, 256, 64), seed: int = 1, heavy: bool = False
        ) -> onnx.ModelProto:
    """Weight-dominated Gemm(transB=1)+Relu stack (the last layer without Relu).
    ``heavy``: Student-t (3 dof) weights with outliers, like trained layers."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        w = rng.standard_t(3, (n, k)) / 1.7 if heavy else rng.standard_normal((n, k))
        inits += [_init(f"w{i}", w / np.sqrt(k)),
                  _init(f"b{i}", rng.standard_normal(n) * 0.1)]
        out = "y" if i == len(dims) - 2 else f"h{i}"
        pre = out if i == len(dims) - 2 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [pre], transB=1))
        if pre != out:
            nodes.append(helper.make_node("Relu", [pre], [out]))
        x = out
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dims[0]])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dims[-1]])],
                  inits)


def encoder(tokens: int = 16, d: int = 32, ff: int = 64, seed: int = 2) -> onnx.ModelProto:
    """One attention + feed-forward block from MatMul/Transpose/Mul/Softmax/Add/Relu;
    input [1, tokens, d]."""
    rng = np.random.default_rng(seed)

    def w(name, k, n):
        return _init(name, rng.standard_normal((k, n)) / np.sqrt(k))

    inits = [w("wq", d, d), w("wk", d, d), w("wv", d, d), w("wo", d, d), w("w1", d, ff),
             _init("b1", rng.standard_normal(ff) * 0.1), w("w2", ff, d),
             _init("temp", np.array(1.0 / np.sqrt(d)))]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "temp"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["a"]),
        helper.make_node("MatMul", ["a", "wo"], ["o"]),
        helper.make_node("Add", ["o", "x"], ["r"]),
        helper.make_node("MatMul", ["r", "w1"], ["f"]),
        helper.make_node("Add", ["f", "b1"], ["fb"]),
        helper.make_node("Relu", ["fb"], ["fr"]),
        helper.make_node("MatMul", ["fr", "w2"], ["f2"]),
        helper.make_node("Add", ["f2", "r"], ["y"]),
    ]
    shape = [1, tokens, d]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)


def reduce_mean_model() -> onnx.ModelProto:
    """Conv -> ReduceMean(axes attribute, the opset <= 17 form) -> Gemm; input [1,2,4,4]."""
    rng = np.random.default_rng(3)
    inits = [_init("w", rng.standard_normal((4, 2, 3, 3)) * 0.3),
             _init("b", np.zeros(4)), _init("fw", rng.standard_normal((3, 4)))]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "fw"], ["y"], transB=1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)


def no_weights_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [])


def normalized(model: onnx.ModelProto):
    return normalize(graph_from_model(model))


def samples(model_or_graph, n: int, seed: int = 0, positive: bool = False) -> np.ndarray:
    """``n`` random inputs for the (single) model input, shaped ``(n, *input_shape)``."""
    g = model_or_graph
    if isinstance(g, onnx.ModelProto):
        g = graph_from_model(g)
    shape = g.tensor(g.inputs[0]).shape
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape)) if positive else rng.standard_normal((n, *shape))
    return x.astype(np.float32)


def session(model: onnx.ModelProto | bytes, optimized_path: str | None = None,
            basic: bool = False):
    """ONNX Runtime CPU session; ``basic``: constant folding only, no fusions (exact
    float semantics of the exported graph)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if basic:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run(model, xs: np.ndarray, basic: bool = False) -> np.ndarray:
    s = session(model, basic=basic)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x})[0] for x in xs])


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    err = float(((ref - got) ** 2).sum())
    return float("inf") if err == 0 else 10 * np.log10(float((ref ** 2).sum()) / err)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
