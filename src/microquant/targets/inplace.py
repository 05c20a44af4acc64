"""When may a node's output overlap one of its dying inputs: ``first_read`` and ``min_shift``.

The rule covers ops whose straightforward kernel writes output elements in flat
(row-major, NHWC) order and reads every input element an output element needs before
writing that element. For such an op with a data input ``x`` that dies at that op, let
``first(e)`` be the lowest flat index of ``x`` read by output element ``e`` and
``m(e) = min(first(e'), e' >= e)``. Writing element ``e`` touches output bytes
``[out + e*os, out + (e+1)*os)``; every later element reads ``x`` bytes at or above
``x_off + m(e+1)*is``. So the write can never clobber a byte still to be read iff::

    x_off - out_off >= min_shift = max_e ((e+1)*os - m(e+1)*is),  e = 0 .. n_out-2

(``os``/``is`` are the item sizes). Either the two buffers are disjoint, or this holds.
``first(e)`` per op:

- RELU, RELU6, LOGISTIC, TANH, QUANTIZE, DEQUANTIZE: ``e`` (one element in, one out);
  with equal item sizes ``min_shift = 0``, i.e. the output may sit exactly on the input.
- ADD, MUL: the broadcast source index of ``e`` in that input (``e`` for same shape).
- CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D: the first in-bounds input
  pixel of the output pixel's window (rows/cols clipped to the image, padding reads
  nothing), channel 0 for CONV_2D, ``oc // depth_multiplier`` for DEPTHWISE_CONV_2D,
  ``oc`` for pools. Output pixels ``(b, y, x)`` and channels are written in that order -
  TFLM's reference loops (``b, out_y, out_x, out_c``).

Other ops (FULLY_CONNECTED, SOFTMAX, MEAN, PAD, CONCATENATION, TRANSPOSE, ...) never
overlap: their kernels read far ahead or write in another order (no rule: ``None``).

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["y"])
    >>> for n in "xy":
    ...     _ = g.add_tensor(Tensor(n, (1, 64), "int8"))
    >>> g.nodes.append(Node("RELU", ["x"], ["y"]))
    >>> min_shift(g.nodes[0], g, 0)
    0
"""

from __future__ import annotations

import numpy as np

from microquant.ir.graph import Graph, Node

ELEMENTWISE_UNARY = ("RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE")
ELEMENTWISE_BINARY = ("ADD", "MUL")
WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")


def _first_read_elementwise(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    rank = len(out_shape)
    shp = (1,) * (rank - len(in_shape)) + tuple(in_shape)
    idx = np.arange(int(np.prod(shp, dtype=np.int64)), dtype=np.int64).reshape(shp)
    return np.broadcast_to(idx, out_shape).ravel()


def _window_first(out_n: int, in_n: int, filt: int, stride: int, dil: int, pad: int) -> np.ndarray:
    """Per output coordinate: the first in-bounds input coordinate of its window (-1: none)."""
    res = np.full(out_n, -1, dtype=np.int64)
    for o in range(out_n):
        for k in range(filt):
            i = o * stride - pad + k * dil
            if 0 <= i < in_n:
                res[o] = i
                break
    return res


def _pad_before(padding: str, size: int, filt: int, stride: int, dilation: int) -> int:
    # TFLite's leading SAME padding (ComputePaddingWithOffset); kept local so planning
    # does not import the kernels.
    if padding != "SAME":
        return 0
    out = (size + stride - 1) // stride
    return max(((out - 1) * stride + (filt - 1) * dilation + 1 - size) // 2, 0)


def _first_read_windowed(node: Node, graph: Graph) -> np.ndarray | None:
    x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4:
        return None
    nb, h, w, ci = x.shape
    _, oh, ow, oc = y.shape
    a = node.attrs
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        wshape = graph.tensor(node.inputs[1]).shape
        kh, kw = wshape[1], wshape[2]
        dh, dw = a.get("dilation_h", 1), a.get("dilation_w", 1)
    else:
        kh, kw, dh, dw = a["filter_h"], a["filter_w"], 1, 1
    sh, sw, padding = a.get("stride_h", 1), a.get("stride_w", 1), a.get("padding", "VALID")
    rows = _window_first(oh, h, kh, sh, dh, _pad_before(padding, h, kh, sh, dh))
    cols = _window_first(ow, w, kw, sw, dw, _pad_before(padding, w, kw, sw, dw))
    if node.op == "CONV_2D":
        chan = np.zeros(oc, dtype=np.int64)
    elif node.op == "DEPTHWISE_CONV_2D":
        dm = max(oc // max(ci, 1), 1)
        chan = np.arange(oc, dtype=np.int64) // dm
    else:
        chan = np.arange(oc, dtype=np.int64)
    b = np.arange(nb, dtype=np.int64)[:, None, None, None]
    r, c = rows[None, :, None, None], cols[None, None, :, None]
    first = ((b * h + r) * w + c) * ci + chan[None, None, None, :]
    none = (r < 0) | (c < 0)
    # An output pixel whose window is all padding reads nothing of x.
    first = np.where(none, np.iinfo(np.int64).max // 4, first)
    return np.broadcast_to(first, (nb, oh, ow, oc)).ravel()


def first_read(node: Node, graph: Graph, slot: int) -> np.ndarray | None:
    """``first(e)`` for input ``slot`` of ``node`` (see module doc); None: no rule."""
    if node.op in ELEMENTWISE_UNARY and slot == 0:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        if x.size != y.size:
            return None
        return np.arange(y.size, dtype=np.int64)
    if node.op in ELEMENTWISE_BINARY and slot in (0, 1):
        x, y = graph.tensor(node.inputs[slot]), graph.tensor(node.outputs[0])
        try:
            return _first_read_elementwise(x.shape, y.shape)
        except ValueError:
            return None
    if node.op in WINDOWED and slot == 0:
        return _first_read_windowed(node, graph)
    return None


def min_shift(node: Node, graph: Graph, slot: int) -> int | None:
    """Smallest ``offset[input] - offset[output]`` that keeps an overlapping write safe."""
    first = first_read(node, graph, slot)
    if first is None:
        return None
    x, y = graph.tensor(node.inputs[slot]), graph.tensor(node.outputs[0])
    isz, osz = np.dtype(x.dtype).itemsize, np.dtype(y.dtype).itemsize
    n = first.size
    x_bytes = x.size * isz
    if n <= 1:
        return -x_bytes  # nothing is read after the only write
    suffix = np.minimum.accumulate(first[::-1])[::-1]  # m(e) = min over e' >= e
    e1 = np.arange(1, n, dtype=np.int64)  # e + 1 for e = 0 .. n-2
    need = e1 * osz - np.minimum(suffix[1:], x.size) * isz
    return max(int(need.max()), -x_bytes)
