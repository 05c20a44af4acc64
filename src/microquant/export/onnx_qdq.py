"""Quantized ONNX export that ONNX Runtime (or any ONNX runtime) runs.

Input: the *normalized* ONNX-level graph (``passes.normalize``) and, for the static
schemes, activation ranges keyed by ONNX tensor names: :func:`activation_ranges`
calibrates every activation with the project's observers; :func:`onnx_ranges` maps ranges
of the lowered graph back through ``calib_source``. Output: an ``onnx.ModelProto`` in one
of the schemes of :mod:`microquant.quant.schemes_onnx`:

========  ===========================================================================
int8      QDQ: uint8 asymmetric activations, int8 symmetric per-channel weights in
          [-63, 63] (cannot saturate ORT's AVX2 u8s8 kernels, see
          :mod:`microquant.quant.schemes_onnx.qdq`), int32 bias. ORT fuses it into
          QLinearConv / QGemm / QLinearMatMul / QLinearAdd ... (model opset, >= 13).
int16     QDQ with int16 activations and int8 weights (opset 21; ORT emulates in float).
fp16      float16 initializers + ``Cast`` to float32 (folded when the session loads).
dynamic   int8 weights, ``DynamicQuantizeLinear`` + ``MatMulInteger``/``ConvInteger``;
          no calibration data.
w4        weight-only INT4 ``DequantizeLinear`` (per channel or per group, opset 21).
w2, w1    weight-only, bit-packed into one uint8 initializer and decoded by standard
          ops that ORT constant-folds at load: packed on disk, float in memory.
========  ===========================================================================

The written model keeps the graph input/output names; internal tensors get short names
(long exporter names repeated in every Q/DQ node would cost several percent of an int8
file). :func:`save_onnx` checks the model and writes it via a temp file + rename.

Example (sketch):
    >>> graph = normalize(load_onnx("model.onnx"))                   # doctest: +SKIP
    >>> ranges = activation_ranges(graph, {"x": samples})            # doctest: +SKIP
    >>> save_onnx(export_qdq(graph, ranges, "int8"), "model.int8.onnx")  # doctest: +SKIP
    >>> quantize_to_onnx("model.onnx", None, "w4", "model.w4.onnx")["ratio"]
    ...                                                              # doctest: +SKIP
    0.13
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from microquant.errors import MicroquantError
from microquant.export.onnx_build import find_weights
from microquant.ir.graph import Graph
from microquant.quant.schemes_onnx import (
    ONNX_SCHEMES,
    WEIGHT_ONLY,
    canonical,
    needs_calibration,
)


def export_qdq(onnx_graph: Graph, ranges_by_onnx_name: Mapping[str, tuple[float, float]]
               | None = None, scheme: str = "int8", per_channel: bool = True,
               symmetric_weights: bool = True, reduce_range: bool | None = None,
               group_size: int | None = None) -> onnx.ModelProto:
    """Quantized ``ModelProto`` of a normalized ONNX-level graph (see the module docstring).

    ``ranges_by_onnx_name`` (float ``(lo, hi)`` per ONNX tensor) is required by the static
    schemes ``int8`` / ``int16`` and ignored by the others. ``reduce_range`` (int8 and
    dynamic): ``None``/``True`` -> 7-bit weights that cannot saturate ORT's AVX2 kernels,
    ``False`` -> full int8. ``group_size`` (w4/w2/w1): values per scale along each
    channel's reduction axis; it must divide that length for every weight.
    """
    name = canonical(scheme)
    if group_size is not None and name not in WEIGHT_ONLY:
        raise MicroquantError(f"group size applies to w4/w2/w1, not to scheme {scheme!r}")
    return ONNX_SCHEMES[name](onnx_graph, ranges_by_onnx_name, per_channel=per_channel,
                              symmetric_weights=symmetric_weights, reduce_range=reduce_range,
                              group_size=group_size)


def onnx_ranges(lowered: Graph, ranges: Mapping[str, tuple[float, float]]
                ) -> dict[str, tuple[float, float]]:
    """Ranges keyed by lowered tensor names -> keyed by ONNX names (``calib_source``)."""
    source = lowered.meta.get("calib_source") or {}
    return {source[k]: v for k, v in ranges.items() if k in source}


def activation_ranges(onnx_graph: Graph, calib: Mapping[str, np.ndarray],
                      method: str = "minmax", progress: bool = False
                      ) -> dict[str, tuple[float, float]]:
    """Calibrate *every* float activation of the ONNX-level graph (keyed by ONNX name)
    with :func:`microquant.quant.calibrate.calibrate` and the project's observers.

    Wider than :func:`onnx_ranges`: it also covers tensors the lowering fused away.
    """
    from microquant.quant.calibrate import calibrate

    names = [n for n in onnx_graph.inputs if onnx_graph.tensor(n).dtype.startswith("float")]
    names += [o for n in onnx_graph.nodes for o in n.outputs
              if o and onnx_graph.tensor(o).dtype.startswith("float")]
    probe = Graph(meta={"calib_source": {n: n for n in names}})
    return calibrate(onnx_graph, probe, calib, method, progress)


def save_onnx(model: onnx.ModelProto, out_path: str | Path) -> int:
    """Check and write ``model`` atomically (temp file + rename); returns the size."""
    from microquant.api import write_file_atomic

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:  # a bug here, but say what and where
        raise MicroquantError(f"exported ONNX model is invalid: {str(e).splitlines()[0]}"
                              ) from None
    data = model.SerializeToString()
    write_file_atomic(data, out_path)
    return len(data)


def quantize_to_onnx(model_path: str | Path, calib_path: str | Path | None, scheme: str,
                     out_path: str | Path, per_channel: bool = True, symmetric: bool = True,
                     group_size: int | None = None, calibration: str = "percentile",
                     reduce_range: bool | None = None, progress: bool = False
                     ) -> dict[str, object]:
    """Float ONNX file -> quantized ONNX file in ``scheme``; returns a summary dict
    ``{"scheme", "out", "bytes", "float_bytes", "ratio", "opset", "weights"}`` (``ratio``:
    output size / input file size; ``weights``: Conv/Gemm/MatMul weights quantized).

    ``calib_path`` (a ``.npz``, see :mod:`microquant.quant.calib_data`) is required by
    int8/int16 and ignored otherwise; ``calibration`` is the observer used for it.
    """
    from microquant.ir.onnx_io import load_onnx
    from microquant.passes import normalize

    scheme = canonical(scheme)
    graph = normalize(load_onnx(model_path))
    ranges = None
    if needs_calibration(scheme):
        if calib_path is None:
            raise MicroquantError(f"scheme {scheme!r} needs calibration data (--calib)")
        from microquant.quant.calib_data import load_calibration

        shapes = [graph.tensor(n).shape for n in graph.inputs]
        calib = load_calibration(calib_path, list(graph.inputs), shapes)
        ranges = activation_ranges(graph, calib, calibration, progress)
    model = export_qdq(graph, ranges, scheme, per_channel=per_channel,
                       symmetric_weights=symmetric, reduce_range=reduce_range,
                       group_size=group_size)
    size = save_onnx(model, out_path)
    float_size = Path(model_path).stat().st_size
    return {
        "scheme": scheme,
        "out": str(out_path),
        "bytes": size,
        "float_bytes": float_size,
        "ratio": size / float_size,
        "opset": next(i.version for i in model.opset_import if i.domain in ("", "ai.onnx")),
        "weights": len(find_weights(graph)),
    }
