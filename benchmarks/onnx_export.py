"""Quantized ONNX export: accuracy, file size and the AVX2 saturation argument.

Measures (needs ../shared):
  1. keyword spotting top-1 in ONNX Runtime, 2-fold over kws01_calib.npz (calibrate on one
     half, evaluate the other, swap), for float and every ONNX scheme - int8 with the
     default 7-bit weights and with full 8-bit weights, two calibration observers;
  2. file size of every scheme on the four MLPerf Tiny models, as a fraction of the float
     ONNX file;
  3. AVX2-without-VNNI saturation on KWS: with real activations (uint8, the exported
     parameters) and the exported weight codes, how many adjacent-pair sums
     ``a0*w0 + a1*w1`` (what ``vpmaddubsw`` adds into int16) fall outside int16 with 8-bit
     vs 7-bit weights, for the non-depthwise Conv and Gemm layers (K order (kh, kw, Ci),
     ORT's NHWC im2col);
  4. the effect on KWS top-1 (all 200 samples) of computing the first Conv the way that
     kernel does (pair sums clipped to int16) with the rest of the model in float.

    python benchmarks/onnx_export.py [--shared ../shared] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = ("int8", "int16", "fp16", "dynamic", "w4", "w2", "w1")
MODELS = ("ic_resnet8", "kws_dscnn", "vww_mobilenetv1", "ad_autoencoder")


def _session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _top1(model, x: np.ndarray, y: np.ndarray, name: str) -> int:
    s = _session(model)
    out = np.concatenate([s.run(None, {name: xi})[0] for xi in x])
    return int((out.argmax(-1) == y).sum())


def kws_accuracy(shared: Path) -> list[dict]:
    from microquant.export.onnx_qdq import activation_ranges, export_qdq
    from microquant.ir.onnx_io import load_onnx, to_onnx
    from microquant.passes import normalize

    data = np.load(shared / "data" / "kws01_calib.npz")
    x, y = data["x"], data["y"]
    g = normalize(load_onnx(shared / "models" / "mlperf_tiny" / "kws_dscnn.onnx"))
    name = g.inputs[0]
    idx = np.arange(len(y))
    folds = ((idx[::2], idx[1::2]), (idx[1::2], idx[::2]))
    variants = [("float", None, {}, "-")]
    for method in ("percentile", "minmax"):
        variants.append(("int8", method, {}, "7-bit weights (default)"))
        variants.append(("int8", method, {"reduce_range": False}, "8-bit weights"))
    variants += [("int16", "percentile", {}, "16x8"), ("fp16", None, {}, ""),
                 ("dynamic", None, {}, "7-bit weights"), ("w4", None, {}, "per channel"),
                 ("w4", None, {"symmetric_weights": False}, "per channel, asymmetric"),
                 ("w2", None, {}, "per channel"), ("w1", None, {}, "per channel")]
    ranges = {}
    rows = []
    for scheme, method, opts, note in variants:
        hits = 0
        for k, (cal, ev) in enumerate(folds):
            if scheme == "float":
                model = to_onnx(g)
            else:
                r = None
                if method is not None:
                    if (method, k) not in ranges:
                        ranges[method, k] = activation_ranges(g, {name: x[cal][:, None]}, method)
                    r = ranges[method, k]
                model = export_qdq(g, r, scheme, **opts)
            hits += _top1(model, x[ev][:, None], y[ev], name)
        rows.append({"scheme": scheme, "calibration": method or "-", "note": note,
                     "top1": 100.0 * hits / len(y)})
    # ONNX Runtime's own static quantizer (defaults + per-channel), same folds
    try:
        rows.append({"scheme": "ort quantize_static", "calibration": "minmax",
                     "note": "QDQ S8S8 per-channel (ORT defaults)",
                     "top1": _ort_quantize_static(g, x, y, folds)})
    except Exception as e:  # optional comparison
        rows.append({"scheme": "ort quantize_static", "calibration": "-",
                     "note": f"failed: {type(e).__name__}", "top1": float("nan")})
    return rows


def _ort_quantize_static(g, x, y, folds) -> float:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    from microquant.ir.onnx_io import to_onnx

    name = g.inputs[0]

    class Reader(CalibrationDataReader):
        def __init__(self, xs):
            self.it = iter([{name: xi[None]} for xi in xs])

        def get_next(self):
            return next(self.it, None)

    hits = 0
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        onnx.save(to_onnx(g), str(src))
        for cal, ev in folds:
            quantize_static(str(src), str(dst), Reader(x[cal]), per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            hits += _top1(onnx.load(str(dst)), x[ev][:, None], y[ev], name)
    return 100.0 * hits / len(y)


def sizes(shared: Path) -> list[dict]:
    from microquant.export.onnx_qdq import export_qdq
    from microquant.ir.onnx_io import load_onnx
    from microquant.passes import normalize

    rows = []
    for m in MODELS:
        path = shared / "models" / "mlperf_tiny" / f"{m}.onnx"
        g = normalize(load_onnx(path))
        ranges = {n: (-1.0, 1.0) for n in g.tensors}  # size does not depend on the values
        row = {"model": m, "float_bytes": os.path.getsize(path)}
        for s in SCHEMES:
            row[s] = len(export_qdq(g, ranges, s).SerializeToString()) / row["float_bytes"]
        rows.append(row)
    return rows


def _im2col_nhwc(x: np.ndarray, kh: int, kw: int, strides, pads, pad_value: int) -> np.ndarray:
    """``x [C, H, W]`` -> patches ``[P, kh*kw*C]`` in (kh, kw, C) order."""
    c, h, w = x.shape
    xp = np.full((c, h + pads[0] + pads[2], w + pads[1] + pads[3]), pad_value, x.dtype)
    xp[:, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    win = win[:, ::strides[0], ::strides[1]]  # [C, oh, ow, kh, kw]
    return win.transpose(1, 2, 3, 4, 0).reshape(-1, kh * kw * c)


def saturation(shared: Path, n_samples: int = 40) -> list[dict]:
    from microquant.export.onnx_build import find_weights
    from microquant.export.onnx_qdq import activation_ranges
    from microquant.ir.onnx_io import load_onnx, to_onnx
    from microquant.passes import normalize
    from microquant.quant.primitives import choose_qparams
    from microquant.quant.schemes_onnx.qdq import weight_qparams

    data = np.load(shared / "data" / "kws01_calib.npz")
    x = data["x"][:n_samples, None]
    g = normalize(load_onnx(shared / "models" / "mlperf_tiny" / "kws_dscnn.onnx"))
    name = g.inputs[0]
    ranges = activation_ranges(g, {name: x}, "percentile")
    weights = find_weights(g)
    layers = [n for n in g.nodes if n.op in ("Conv", "Gemm") and n.inputs[1] in weights
              and not (n.op == "Conv" and n.attrs.get("group", 1) > 1)]
    feeds = [n.inputs[0] for n in layers]
    s = _session(to_onnx(g, outputs=feeds))
    acts = [s.run(feeds, {name: xi}) for xi in x]
    rows = []
    for li, n in enumerate(layers):
        lo, hi = ranges[n.inputs[0]]
        scale, zp = choose_qparams(lo, hi, "uint8")
        w = g.const(n.inputs[1])
        row = {"layer": f"{n.op} {li}", "K": int(w[0].size)}
        for label, qmax in (("8-bit", 127), ("7-bit", 63)):
            axis = weights[n.inputs[1]].out_axis
            q, _, _ = weight_qparams(w, axis, qmax)
            if n.op == "Conv":
                kh, kw = w.shape[2:]
                wk = q.transpose(0, 2, 3, 1).reshape(q.shape[0], -1)  # (kh, kw, Ci)
            else:
                wk = q if axis == 0 else q.T
            sat = total = 0
            for a in acts:
                v = a[li]
                au = np.clip(np.round(v / scale) + zp, 0, 255).astype(np.int64)
                if n.op == "Conv":
                    pads = n.attrs.get("pads", [0, 0, 0, 0])
                    patches = _im2col_nhwc(au[0], kh, kw, n.attrs.get("strides", [1, 1]),
                                           pads, int(zp))
                else:
                    patches = au.reshape(1, -1)
                k = patches.shape[1] - patches.shape[1] % 2
                prod = patches[:, None, :k] * wk[None, :, :k].astype(np.int64)
                pair = prod[..., 0::2] + prod[..., 1::2]
                sat += int(((pair > 32767) | (pair < -32768)).sum())
                total += pair.size
            row[f"{label} saturated"] = sat
            row[f"{label} pairs"] = total
        rows.append(row)
    return rows


def saturation_effect(shared: Path) -> list[dict]:
    """KWS top-1 when the first Conv runs as ORT's u8s8 AVX2 kernel would (pair sums
    saturated to int16, zero-point terms exact) and the rest of the model in float."""
    from microquant.export.onnx_qdq import activation_ranges
    from microquant.ir.onnx_io import load_onnx, to_onnx
    from microquant.passes import normalize
    from microquant.quant.primitives import choose_qparams
    from microquant.quant.schemes_onnx.qdq import weight_qparams

    data = np.load(shared / "data" / "kws01_calib.npz")
    x, y = data["x"][:, None], data["y"]
    g = normalize(load_onnx(shared / "models" / "mlperf_tiny" / "kws_dscnn.onnx"))
    name = g.inputs[0]
    conv = next(n for n in g.nodes if n.op == "Conv")
    lo, hi = activation_ranges(g, {name: x}, "percentile")[conv.inputs[0]]
    a_scale, a_zp = choose_qparams(lo, hi, "uint8")
    at = g.nodes.index(conv)
    rest = g.copy()
    rest.nodes = rest.nodes[at + 1:]
    rest.inputs = [conv.outputs[0]]
    s_rest = _session(to_onnx(rest))
    s_in = _session(to_onnx(g, outputs=[conv.inputs[0]]))
    w, b = g.const(conv.inputs[1]), g.const(conv.inputs[2])
    kh, kw = w.shape[2:]
    rows = [{"first conv computed as": "float (reference)",
             "top1": 100.0 * _top1(to_onnx(g), x, y, name) / len(y)}]
    for label, qmax, saturate in (("u8s8 AVX2, 8-bit weights", 127, True),
                                  ("u8s8 AVX2, 7-bit weights (default)", 63, True),
                                  ("exact int32 (VNNI), 8-bit weights", 127, False)):
        q, w_scale, _ = weight_qparams(w, 0, qmax)
        wk = q.transpose(0, 2, 3, 1).reshape(q.shape[0], -1).astype(np.int64)
        hits = 0
        for xi, yi in zip(x, y, strict=True):
            xi = s_in.run(None, {name: xi})[0]
            au = np.clip(np.round(xi / a_scale) + a_zp, 0, 255).astype(np.int64)
            patches = _im2col_nhwc(au[0], kh, kw, conv.attrs.get("strides", [1, 1]),
                                   conv.attrs.get("pads", [0, 0, 0, 0]), int(a_zp))
            prod = patches[:, None, :] * wk[None]
            pair = prod[..., 0::2] + prod[..., 1::2]
            if saturate:
                pair = np.clip(pair, -32768, 32767)
            acc = pair.sum(-1) - int(a_zp) * wk.sum(-1)[None]  # [P, Co]
            out = acc * (a_scale * w_scale)[None] + b[None]
            oh = (xi.shape[2] + sum(conv.attrs.get("pads", [0, 0, 0, 0])[0::2]) - kh) // (
                conv.attrs.get("strides", [1, 1])[0]) + 1
            feat = out.T.reshape(1, w.shape[0], oh, -1).astype(np.float32)
            logits = s_rest.run(None, {conv.outputs[0]: feat})[0]
            hits += int(logits.argmax() == yi)
        rows.append({"first conv computed as": label, "top1": 100.0 * hits / len(y)})
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) and v < 10 else (
            f"{v:.1f}" if isinstance(v, float) else str(v))

    cells = [[fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (args.shared / "data" / "kws01_calib.npz").is_file():
        raise SystemExit(f"needs the shared MLPerf Tiny models and data under {args.shared}")
    result = {"kws_top1": kws_accuracy(args.shared), "size_ratio": sizes(args.shared),
              "kws_saturation": saturation(args.shared),
              "kws_saturation_effect": saturation_effect(args.shared)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for title, rows in result.items():
        print(f"\n== {title}\n{_table(rows)}")


if __name__ == "__main__":
    main()
