"""Tiny ONNX models and data files for the user-facing tests (CLI, API, inspect)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT = "x_in"
IN_SHAPE = (3, 6, 6)  # per sample, NCHW without the batch dimension
CLASSES = 5


def tiny_onnx(path: Path, nan_weights: bool = False, extra_op: str | None = None) -> Path:
    """Conv3x3(3->4, pad 1) -> Relu -> MaxPool 2x2 -> Flatten -> Gemm(36->5) -> Softmax.

    ``extra_op`` inserts one more element-wise node (e.g. an unsupported ``Erf``) after
    the Relu; ``nan_weights`` poisons one convolution weight.
    """
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32)
    if nan_weights:
        w[0, 0, 0, 0] = np.nan
    inits = [
        numpy_helper.from_array(w, "conv_w"),
        numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "conv_b"),
        numpy_helper.from_array((rng.standard_normal((CLASSES, 36)) * 0.3).astype(np.float32),
                                "fc_w"),
        numpy_helper.from_array((rng.standard_normal(CLASSES) * 0.1).astype(np.float32), "fc_b"),
    ]
    relu_out = "relu"
    nodes = [
        helper.make_node("Conv", [INPUT, "conv_w", "conv_b"], ["conv"], name="conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
    ]
    if extra_op is not None:
        nodes.append(helper.make_node(extra_op, ["relu"], ["extra"], name="extra"))
        relu_out = "extra"
    nodes += [
        helper.make_node("MaxPool", [relu_out], ["pool"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *IN_SHAPE])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def samples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, *IN_SHAPE)).astype(np.float32)


def calib_npz(path: Path, n: int = 16, key: str = "x", seed: int = 0,
              labels: bool = False) -> Path:
    arrays = {key: samples(n, seed)}
    if labels:
        arrays["y"] = np.random.default_rng(seed + 1).integers(0, CLASSES, n).astype(np.int64)
    np.savez(path, **arrays)
    return path
