"""Arithmetic of TFLite's 16x8 scheme (int16 activations, int8 weights) shared by kernels.

Three pieces, each mirroring what TFLite Micro's int16 kernels do:

* :func:`mbqm64` - ``MultiplyByQuantizedMultiplier`` for an int64 accumulator (CONV_2D,
  DEPTHWISE_CONV_2D and FULLY_CONNECTED with int64 bias): the 31-bit multiplier is first
  rounded to 15 bits, then one rounding shift - *not* the int32 double-rounding path.
* :data:`SIGMOID_TABLE` + :func:`sigmoid_lookup` - the 256-entry ``sigmoid(i/24)`` table in
  Q0.16 that LOGISTIC and TANH interpolate (tanh(x) = 2 sigmoid(2x) - 1).
* :func:`populate_lut` + :func:`lut_lookup` - the 513-entry interpolated int16 tables
  SOFTMAX builds at prepare time (float32 arithmetic exactly as ``LUTPopulateInt16``).

Example:
    >>> int(mbqm64(np.array([1 << 20]), np.array([1 << 30]), np.array([0]))[0])
    524288
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.fixedpoint import as_i64, wrap_i32

# sigmoid(i / 24) in unsigned Q0.16 for i = 0..255 (the values TFLite ships: a rounded
# sample nudged by half the linear-interpolation error at the midpoint, so they are not
# plain round(65536 * sigmoid)). Checked bit for bit through TFLM's LOGISTIC/TANH on every
# int16 input in tests/test_ops_int16.py.
_SIGMOID_TABLE_TEXT = """
32768 33451 34133 34813 35493 36169 36843 37513 38180 38841 39498 40149 40794 41432 42064 42688
43304 43912 44511 45102 45683 46255 46817 47369 47911 48443 48964 49475 49975 50464 50942 51409
51865 52311 52745 53169 53581 53983 54374 54755 55125 55485 55834 56174 56503 56823 57133 57433
57724 58007 58280 58544 58800 59048 59288 59519 59743 59959 60168 60370 60565 60753 60935 61110
61279 61441 61599 61750 61896 62036 62172 62302 62428 62549 62666 62778 62886 62990 63090 63186
63279 63368 63454 63536 63615 63691 63765 63835 63903 63968 64030 64090 64148 64204 64257 64308
64357 64405 64450 64494 64536 64576 64614 64652 64687 64721 64754 64786 64816 64845 64873 64900
64926 64950 64974 64997 65019 65039 65060 65079 65097 65115 65132 65149 65164 65179 65194 65208
65221 65234 65246 65258 65269 65280 65291 65301 65310 65319 65328 65337 65345 65352 65360 65367
65374 65381 65387 65393 65399 65404 65410 65415 65420 65425 65429 65433 65438 65442 65445 65449
65453 65456 65459 65462 65465 65468 65471 65474 65476 65479 65481 65483 65485 65488 65489 65491
65493 65495 65497 65498 65500 65501 65503 65504 65505 65507 65508 65509 65510 65511 65512 65513
65514 65515 65516 65517 65517 65518 65519 65520 65520 65521 65522 65522 65523 65523 65524 65524
65525 65525 65526 65526 65526 65527 65527 65528 65528 65528 65529 65529 65529 65529 65530 65530
65530 65530 65531 65531 65531 65531 65531 65532 65532 65532 65532 65532 65532 65533 65533 65533
65533 65533 65533 65533 65533 65534 65534 65534 65534 65534 65534 65534 65534 65534 65534 65535
"""
SIGMOID_TABLE = np.array(_SIGMOID_TABLE_TEXT.split(), dtype=np.int64)

LUT_SIZE = 513  # 512 segments of 128 int16 steps + the end point


def check_int16_io(node: Node, graph: Graph, inputs: int = 1) -> str:
    """The activation dtype of ``node`` (its first input's). For ``"int16"`` also checks
    what TFLite's 16x8 kernels assume: the first ``inputs`` inputs and the output are int16
    with zero point 0 (the kernels drop the offsets, so anything else would compute wrong
    values silently). int8 nodes are not checked here."""
    dtype = graph.tensor(node.inputs[0]).dtype
    if dtype != "int16":
        return dtype
    for name in [*node.inputs[:inputs], node.outputs[0]]:
        t = graph.tensor(name)
        if t.dtype != "int16":
            raise MicroquantError(
                f"{node.op} {node.name!r}: tensor {name!r} is {t.dtype}; int16 ops need int16 "
                "inputs and output"
            )
        if t.quant is None or np.any(t.quant.zero_point != 0):
            raise MicroquantError(
                f"{node.op} {node.name!r}: int16 tensor {name!r} must be symmetric "
                "(zero point 0), as TFLite's 16x8 scheme requires"
            )
    return dtype


# -- int64 accumulator rescale -------------------------------------------------------------
def mbqm64(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``MultiplyByQuantizedMultiplier(int64 x, m, shift)`` as TFLite's 16x8 kernels use it.

    ``m15 = (m + 2**15) >> 16`` (``0x7FFF`` when ``m >= 0x7FFF0000``), then
    ``(x * m15 + 2**(14 - shift)) >> (15 - shift)`` (floor shift), truncated to int32.
    """
    m = as_i64(multiplier)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - as_i64(shift)
    return wrap_i32((as_i64(x) * reduced + (as_i64(1) << (total - 1))) >> total)


# -- LOGISTIC / TANH ---------------------------------------------------------------------
def sigmoid_input_params(scale: float, pot_shifts: tuple[int, ...]) -> tuple[int, int]:
    """``(input_multiplier, input_left_shift)`` of TFLM's int16 LOGISTIC/TANH Prepare.

    A power-of-two input scale whose ``12 + log2(scale)`` is in ``pot_shifts`` (LOGISTIC:
    ``(0,)``, TANH: ``(0, 1)``) takes the multiplier-free path ``(0, shift)``. Any other scale
    is rescaled to ``1/(3*4096)`` per step: ``m = scale * 3 * 4096`` doubled (with the shift
    counting) while ``m <= 32767/2``, then truncated to an integer.
    """
    s = np.float32(scale)
    log2 = np.float32(np.log(s)) * np.float32(1.0 / np.log(np.float32(2.0)))
    rounded = np.float32(np.sign(log2) * np.floor(np.abs(log2) + np.float32(0.5)))
    is_pot = abs(float(log2 - rounded)) < 1e-3
    shift = 12 + int(rounded)
    if is_pot and shift in pot_shifts:
        return 0, shift
    mult = float(s) * 4096.0 * 3.0
    shift = 0
    while mult <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        mult *= 2.0
    return int(mult), shift


def rescale_sigmoid_input(x: np.ndarray, multiplier: int, left_shift: int) -> np.ndarray:
    """``(x * m + round) >> shift`` (floor) with the POT case ``m = 3 << shift, shift = 0``."""
    if multiplier == 0:
        multiplier, left_shift = 3 << left_shift, 0
    rnd = (1 << (left_shift - 1)) if left_shift > 0 else 0
    return wrap_i32(as_i64(x) * multiplier + rnd) >> left_shift


def sigmoid_lookup(a: np.ndarray, frac_bits: int) -> np.ndarray:
    """Interpolated table value for ``a = |input|`` split as ``i = a >> frac_bits`` and
    ``frac = a & (2**frac_bits - 1)``: ``(t[i] << frac_bits) + frac * (t[i+1] - t[i])``.
    Indices past the table are clamped here; callers saturate those lanes (``i >= 255``)."""
    idx = np.minimum(a >> frac_bits, 254)
    lo = SIGMOID_TABLE[idx]
    hi = SIGMOID_TABLE[idx + 1]
    frac = a & ((1 << frac_bits) - 1)
    return (lo << frac_bits) + frac * (hi - lo)


# -- SOFTMAX lookup tables ---------------------------------------------------------------
def _round_f32(v: np.float32) -> np.float32:
    return np.float32(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)))


def populate_lut(
    func: Callable[[np.float32], np.float32],
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
) -> np.ndarray:
    """TFLite's ``LUTPopulateInt16<float>``: 513 int16 samples of ``func`` over the int16
    input range, each nudged by half the interpolation error at the segment midpoint.

    Every operation is float32, in the order TFLite evaluates it (this runs at prepare
    time; ``func`` must compute in float32 too).
    """
    f32 = np.float32
    in_s, out_s = f32(input_scale), f32(output_scale)
    in_min = in_s * f32(-32768 - input_zero_point)
    in_max = in_s * f32(32767 - input_zero_point)
    out_min = out_s * f32(-32768 - output_zero_point)
    out_max = out_s * f32(32767 - output_zero_point)
    steps = 512
    step = (in_max - in_min) / f32(steps)
    half = step / f32(2)
    inv = f32(65536) / (out_max - out_min)
    lut = np.zeros(LUT_SIZE, np.int64)
    for i in range(steps):
        x = in_min + f32(i) * step
        val = func(x)
        mid = func(x + half)
        nxt = func(in_min + f32(i + 1) * step)
        sample = _round_f32(val * inv)
        interp = _round_f32((nxt * inv + _round_f32(val * inv)) / f32(2))
        bias = _round_f32((interp - _round_f32(mid * inv)) / f32(2))
        lut[i] = int(min(max(sample - bias, f32(-32768)), f32(32767)))
    lut[steps] = int(min(max(_round_f32(func(in_max) * inv), f32(-32768)), f32(32767)))
    return lut


def exp_f32(x: np.float32) -> np.float32:
    """``expf``: exp evaluated in double and rounded once to float32 (correctly rounded)."""
    return np.float32(np.exp(np.float64(x)))


def one_over_one_plus_x_f32(x: np.float32) -> np.float32:
    return np.float32(1.0) / (np.float32(1.0) + np.float32(x))


def lut_lookup(value: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """TFLite ``LUTLookup`` (int16 -> int16): segment ``256 + (v >> 7)``, 7-bit linear
    interpolation ``base + ((slope * (v & 127) + 64) >> 7)`` with an int16 slope."""
    v = as_i64(value)
    idx = 256 + (v >> 7)
    base = lut[idx]
    slope = ((lut[idx + 1] - base + (1 << 15)) & 0xFFFF) - (1 << 15)  # int16 wrap
    out = base + ((slope * (v & 0x7F) + 64) >> 7)
    return ((out + (1 << 15)) & 0xFFFF) - (1 << 15)
