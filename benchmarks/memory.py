"""Activation arena: microquant's planner (greedy, optimized) vs TensorFlow Lite Micro.

For each MLPerf Tiny model (MLCommons' reference int8 ``.tflite``, needs ../shared) this
loads the model into the TFLM Python interpreter, reads its recorded allocations
(``print_allocations``: "head" = the non-persistent arena TFLM's GreedyMemoryPlanner
planned for activations and scratch, "tail" = persistent runtime data) and plans the same
graph with ``plan_memory(graph, "greedy")`` and ``plan_memory(graph, "optimized")``.
Prints a side-by-side table (plus the optimized plan's lower bound and our runtime-RAM
estimate vs TFLM's tail) and writes one memory-over-time PNG per model.

A second table does the same for microquant's own int8 models (``api.quantize_onnx`` on the
ONNX models: KWS calibrated on 32 samples of kws01_calib.npz, the others on 32 synthetic
samples of their input domain - enough for memory, which does not depend on the ranges).

    python benchmarks/memory.py [--shared ../shared] [--out out/memory] [--json] [--no-ours]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from microquant.backends._stderr import capture_stderr
from microquant.ir.tflite_io import read_tflite
from microquant.targets.fit import runtime_ram
from microquant.targets.planner import plan_memory
from microquant.targets.plot import plot_memory

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("ic_resnet8", "kws_dscnn", "vww_mobilenetv1", "ad_autoencoder")


def tflm_allocations(model: bytes) -> dict[str, int]:
    """TFLM's recorded arena split: ``head`` (activations) and ``tail`` (persistent)."""
    from tflite_micro.python.tflite_micro import runtime

    with capture_stderr() as log:
        interp = runtime.Interpreter.from_bytes(model, arena_size=16 << 20)
        interp.print_allocations()
    text = log.text()
    out = {}
    for key in ("head", "tail", "total"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m is None:
            raise RuntimeError(f"TFLM did not report its arena {key}:\n{text}")
        out[key] = int(m.group(1))
    return out


SYNTHETIC = {"ic_resnet8": "pixels", "vww_mobilenetv1": "unit", "ad_autoencoder": "normal"}


def our_model(shared: Path, name: str, work: Path) -> bytes:
    """Quantize the ONNX model with microquant; returns the .tflite bytes."""
    import numpy as np
    import onnx

    from microquant import api

    onnx_path = shared / "models" / "mlperf_tiny" / f"{name}.onnx"
    inp = onnx.load(str(onnx_path), load_external_data=False).graph.input[0]
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)[1:]
    rng = np.random.default_rng(0)
    if name == "kws_dscnn":
        xs = np.load(shared / "data" / "kws01_calib.npz")["x"][:32]
    elif SYNTHETIC[name] == "pixels":
        xs = rng.integers(0, 256, size=(32, *shape)).astype(np.float32)
    elif SYNTHETIC[name] == "unit":
        xs = rng.random((32, *shape), dtype=np.float32)
    else:
        xs = rng.standard_normal((32, *shape)).astype(np.float32)
    calib = work / f"{name}_calib.npz"
    np.savez(calib, **{inp.name: xs.reshape(32, *shape)})
    return api.to_tflite_bytes(api.quantize_onnx(onnx_path, calib, progress=False))


def measure(shared: Path, out_dir: Path | None, ours: bool = False) -> list[dict]:
    import tempfile

    rows = []
    work = Path(tempfile.mkdtemp(prefix="mq_memory_"))
    for name in MODELS:
        if ours:
            data = our_model(shared, name, work)
        else:
            data = (shared / "models" / "mlperf_tiny" / f"{name}.reference_int8.tflite"
                    ).read_bytes()
        tflm = tflm_allocations(data)
        graph = read_tflite(data)
        greedy, opt = plan_memory(graph, "greedy"), plan_memory(graph, "optimized")
        rows.append({
            "model": name, "tflm_head": tflm["head"], "greedy": greedy.arena_size,
            "optimized": opt.arena_size, "lower_bound": opt.lower_bound,
            "saving": 1 - opt.arena_size / tflm["head"],
            "reordered": opt.order != list(range(len(graph.nodes))),
            "aliases": len(opt.active_aliases()),
            "tflm_tail": tflm["tail"], "runtime_estimate": runtime_ram(graph),
        })
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            tag = "_ours" if ours else ""
            plot_memory({"greedy (= TFLM)": greedy, "optimized": opt},
                        out_dir / f"{name}{tag}_memory.png",
                        f"{name} ({'microquant' if ours else 'MLCommons'} int8): activation arena")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "memory")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--no-ours", action="store_true",
                    help="skip quantizing the ONNX models with microquant")
    args = ap.parse_args()
    tables = {"MLCommons reference int8 .tflite": measure(args.shared, args.out)}
    if not args.no_ours:
        tables["microquant int8 (api.quantize_onnx)"] = measure(args.shared, args.out, True)
    if args.json:
        print(json.dumps(tables, indent=2))
        return
    for title, rows in tables.items():
        print(f"\n{title}")
        print_table(rows)
    print(f"\nplots: {args.out}/<model>[_ours]_memory.png")


def print_table(rows: list[dict]) -> None:
    head = (f"{'model':<17}{'TFLM arena':>11}{'greedy':>9}{'optimized':>11}{'bound':>8}"
            f"{'saving':>8}{'aliases':>9}  {'TFLM tail':>9}{'est.':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<17}{r['tflm_head']:>11}{r['greedy']:>9}{r['optimized']:>11}"
              f"{r['lower_bound']:>8}{r['saving']:>8.1%}{r['aliases']:>9}  "
              f"{r['tflm_tail']:>9}{r['runtime_estimate']:>7}")


if __name__ == "__main__":
    main()
