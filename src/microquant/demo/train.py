"""A tiny CNN trained in pure NumPy on scikit-learn's bundled 8x8 digits, exported to ONNX.

Architecture (NCHW, like the ONNX it becomes)::

    x [N,1,8,8] -> Conv 3x3, 8 ch, pad 1 -> Relu
                -> Conv 3x3, 16 ch, stride 2, pad (0,0,1,1) -> Relu   # TFLite "SAME" padding
                -> Flatten -> Gemm 256->10 -> Softmax

Stride-2 "SAME" in TFLite pads only the bottom/right for an even input (8 -> 4 needs one
extra row), so the second convolution uses the asymmetric pads ``(0,0,1,1)``: the lowered
model then needs no separate PAD op.

Training: cross-entropy, Adam, mini-batches of 32, fixed seed. On 2 cores ~10 epochs take a
few seconds and reach ~97 % test accuracy.

Example:
    >>> data = load_digits_split(seed=0)
    >>> data.x_train.shape, data.x_test.shape
    ((1437, 1, 8, 8), (360, 1, 8, 8))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
# (out_channels, stride, pads (top, left, bottom, right)) of the two convolutions.
CONV_SPECS = [(8, 1, (1, 1, 1, 1)), (16, 2, (0, 0, 1, 1))]
KERNEL = 3
NUM_CLASSES = 10


@dataclass
class DigitsData:
    x_train: np.ndarray  # float32 [N,1,8,8] in [0,1]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> DigitsData:
    """The 1797 bundled digits scaled to [0,1], stratified split (no download)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return DigitsData(xtr, ytr, xte, yte)


# -- convolution via im2col ------------------------------------------------------------

def _im2col(x: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """[N,C,H,W] -> [N,Ho,Wo,C*k*k] patches (row order C, kh, kw like ONNX weights)."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (KERNEL, KERNEL), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # [N,C,Ho,Wo,k,k]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * KERNEL * KERNEL)


def _col2im(cols: np.ndarray, x_shape: tuple[int, ...], stride: int,
            pads: tuple[int, int, int, int]) -> np.ndarray:
    """Adjoint of :func:`_im2col`: scatter-add patch gradients back onto the input."""
    n, c, h, w = x_shape
    top, left, bottom, right = pads
    _, ho, wo, _ = cols.shape
    patches = cols.reshape(n, ho, wo, c, KERNEL, KERNEL)
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    for i in range(KERNEL):
        for j in range(KERNEL):
            dxp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += (
                patches[:, :, :, :, i, j].transpose(0, 3, 1, 2)
            )
    return dxp[:, :, top:top + h, left:left + w]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int,
          pads: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    cols = _im2col(x, stride, pads)
    y = cols @ w.reshape(w.shape[0], -1).T + b  # [N,Ho,Wo,Co]
    return y.transpose(0, 3, 1, 2), cols


# -- model -------------------------------------------------------------------------------

@dataclass
class TinyCNN:
    """Parameters in ONNX layout: conv weights [Co,Ci,kh,kw], Gemm weight [10, 256]."""

    params: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def init(cls, seed: int = 0) -> TinyCNN:
        rng = np.random.default_rng(seed)
        p: dict[str, np.ndarray] = {}
        ci, hw = 1, 8
        for i, (co, stride, _) in enumerate(CONV_SPECS):
            fan_in = ci * KERNEL * KERNEL
            p[f"conv{i}.w"] = (rng.standard_normal((co, ci, KERNEL, KERNEL))
                               * np.sqrt(2.0 / fan_in)).astype(np.float32)
            p[f"conv{i}.b"] = np.zeros(co, np.float32)
            ci, hw = co, -(-hw // stride)
        k = ci * hw * hw
        p["fc.w"] = (rng.standard_normal((NUM_CLASSES, k)) * np.sqrt(1.0 / k)).astype(np.float32)
        p["fc.b"] = np.zeros(NUM_CLASSES, np.float32)
        return cls(p)

    def forward(self, x: np.ndarray, keep: bool = False):
        """Logits ``[N,10]``; with ``keep`` also the cache the backward pass needs."""
        cache = []
        h = x
        for i, (_, stride, pads) in enumerate(CONV_SPECS):
            z, cols = _conv(h, self.params[f"conv{i}.w"], self.params[f"conv{i}.b"], stride, pads)
            cache.append((h.shape, cols, z))
            h = np.maximum(z, 0)
        flat = h.reshape(h.shape[0], -1)  # NCHW flatten, as ONNX Flatten does
        logits = flat @ self.params["fc.w"].T + self.params["fc.b"]
        return (logits, (cache, flat, h.shape)) if keep else logits

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.forward(x))

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy and its gradient with respect to every parameter."""
        logits, (cache, flat, h_shape) = self.forward(x, keep=True)
        prob = softmax(logits)
        n = x.shape[0]
        loss = float(-np.mean(np.log(prob[np.arange(n), y] + 1e-12)))
        d = prob
        d[np.arange(n), y] -= 1.0
        d /= n
        g = {"fc.w": d.T @ flat, "fc.b": d.sum(0)}
        dh = (d @ self.params["fc.w"]).reshape(h_shape)
        for i in reversed(range(len(CONV_SPECS))):
            _, stride, pads = CONV_SPECS[i]
            x_shape, cols, z = cache[i]
            dz = (dh * (z > 0)).transpose(0, 2, 3, 1)  # [N,Ho,Wo,Co]
            w = self.params[f"conv{i}.w"]
            dz2 = dz.reshape(-1, w.shape[0])
            g[f"conv{i}.w"] = (dz2.T @ cols.reshape(dz2.shape[0], -1)).reshape(w.shape)
            g[f"conv{i}.b"] = dz2.sum(0)
            if i:
                dh = _col2im(dz @ w.reshape(w.shape[0], -1), x_shape, stride, pads)
        return loss, g


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def train(data: DigitsData, epochs: int = 10, seed: int = 0, lr: float = 0.01,
          batch_size: int = 32) -> TinyCNN:
    """Adam on mini-batches; deterministic for a given seed."""
    model = TinyCNN.init(seed)
    rng = np.random.default_rng(seed + 1)
    m = {k: np.zeros_like(v) for k, v in model.params.items()}
    v = {k: np.zeros_like(p) for k, p in model.params.items()}
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    n = data.x_train.shape[0]
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            _, grads = model.gradients(data.x_train[idx], data.y_train[idx])
            t += 1
            for k, gk in grads.items():
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                step = lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
                model.params[k] = (model.params[k] - step).astype(np.float32)
    return model


# -- ONNX export -----------------------------------------------------------------------

def export_onnx(model: TinyCNN, path: str | Path) -> Path:
    """Write the float model as ONNX (opset 13, batch dimension ``N``) and check it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v, name=k) for k, v in model.params.items()]
    nodes = []
    h = INPUT_NAME
    for i, (_, stride, (top, left, bottom, right)) in enumerate(CONV_SPECS):
        nodes.append(helper.make_node(
            "Conv", [h, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], name=f"conv{i}",
            kernel_shape=[KERNEL, KERNEL], strides=[stride, stride],
            pads=[top, left, bottom, right],
        ))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"))
        h = f"relu{i}"
    nodes += [
        helper.make_node("Flatten", [h], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="microquant-demo")
    proto.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    onnx.save(proto, str(path))
    return path
