"""How close is ``microquant fit`` (C runtime) to the real firmware?

For the four MLPerf Tiny reference int8 models (/work/shared) and the test models, this
exports the C model, links the stdio-free Cortex-M4 firmware
(``toolchain.build_cortex_m_bare``: arm-none-eabi-gcc, **-O2**, ``-mcpu=cortex-m4
-mthumb``, ``--gc-sections``, newlib-nano) and compares ``fit``'s estimate
(:func:`microquant.targets.deploy.c_footprint`) with ``arm-none-eabi-size``:

* flash: estimate vs ``text + data``, for Cortex-M4 and Cortex-M0+ (``-mfloat-abi=soft``);
* RAM: static estimate (arena + scratch + I/O buffers) vs ``data + bss`` - the stack is
  not in ``size``'s output; the ``stack`` column is the deepest call chain by
  ``-fstack-usage`` (Reset_Handler -> main -> invoke -> kernel -> helper frames), to check
  the allowance fit adds on top (512 B on M4, 768 B on M0+) (static RAM is the same on both cores).

Usage::

    python benchmarks/fit_accuracy.py [--no-mlperf] [--no-tests]
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from microquant.export.c import export_c
from microquant.export.c import toolchain as tc
from microquant.ir.graph import Graph
from microquant.ir.tflite_io import read_tflite
from microquant.targets.deploy import STACK_BYTES, c_footprint

MODELS = Path("/work/shared/models/mlperf_tiny")
NAMES = ("ad_autoencoder", "ic_resnet8", "kws_dscnn", "vww_mobilenetv1")
TESTS = Path(__file__).resolve().parents[1] / "tests"
# kernel -> static helpers it calls (the frames that stack on top of the kernel's own)
_HELPERS = {
    "mq_conv2d": ("dot_channels",), "mq_fully_connected": ("dot_channels",),
    "mq_depthwise_conv2d": ("dw_pixel_dm1", "dw_pixel_generic"),
    "mq_average_pool2d": ("pool",), "mq_max_pool2d": ("pool",),
    "mq_add": ("bc_next",), "mq_mul": ("bc_next",),
    "mq_softmax": ("exp_on_negative_values", "newton_reciprocal"),
    "mq_logistic": ("exp_on_negative_values", "newton_reciprocal"),
    "mq_tanh": ("exp_on_negative_values", "newton_reciprocal"),
    "mq_mean": ("walk_next",), "mq_transpose": ("walk_next",), "mq_pad": ("walk_next",),
}


def _stack_usage(src_dir: Path, cpu: str) -> dict[str, int]:
    """Frame bytes per function (``-fstack-usage``) of the firmware's C files at -O2."""
    frames: dict[str, int] = {}
    for src in src_dir.glob("*.c"):
        obj = src_dir / f"su_{cpu}" / (src.stem + ".o")
        obj.parent.mkdir(exist_ok=True)
        subprocess.run(["arm-none-eabi-gcc", *tc.CPU_FLAGS[cpu], *tc.ARM_CFLAGS,
                        "-fstack-usage", "-I", str(src_dir), "-c", "-o", str(obj), str(src)],
                       check=True, capture_output=True)
        for line in obj.with_suffix(".su").read_text().splitlines():
            m = re.match(r".*:(\w+)\s+(\d+)\s", line)
            if m:
                frames[m.group(1)] = max(frames.get(m.group(1), 0), int(m.group(2)))
    return frames


def deepest_stack(src_dir: Path, cpu: str, prefix: str = "model") -> int:
    """Reset_Handler + main + invoke frames + the deepest kernel + helper frames used
    (libgcc helpers on Cortex-M0+ are leaf functions with tiny frames: not counted)."""
    f = _stack_usage(src_dir, cpu)
    source = (src_dir / f"{prefix}.c").read_text()
    used = set(re.findall(r"\b(mq_\w+)\(", source))
    kernel = max((f.get(k, 0) + sum(sorted((f.get(h, 0) for h in _HELPERS.get(k, ())),
                                           reverse=True)[:2])
                  for k in used), default=0)
    return (f.get("Reset_Handler", 0) + f.get("main", 0) + f.get(f"{prefix}_invoke", 0)
            + f.get(f"{prefix}_invoke_multi", 0) + kernel)


def _err(est: int, meas: int) -> float:
    return round(100 * (est / meas - 1), 2)


def measure(name: str, graph: Graph, work: Path) -> dict:
    d = work / name
    export_c(graph, d, "model")
    row: dict = {"model": name}
    for cpu, tag in (("cortex-m4", "M4"), ("cortex-m0plus", "M0+")):
        size = tc.arm_size(tc.build_cortex_m_bare(d, graph, "model", cpu))
        fp = c_footprint(graph, cpu=cpu)
        row.update({f"{tag} flash est": fp.flash_total, f"{tag} flash meas": size["flash"],
                    f"{tag} flash err %": _err(fp.flash_total, size["flash"])})
        if cpu == "cortex-m4":
            row.update({"RAM est": fp.ram_static, "RAM meas": size["ram"],
                        "RAM err %": _err(fp.ram_static, size["ram"]), "arena": fp.arena})
        else:
            assert size["ram"] == row["RAM meas"]  # static RAM does not depend on the core
        row[f"{tag} stack"] = deepest_stack(d, cpu)
    return row


def test_models() -> list[tuple[str, Graph]]:
    """The per-op conformance graphs (1 int8 input, 1 int8 output) and the quantized
    tiny ONNX model of the test-suite."""
    sys.path.insert(0, str(TESTS))
    out = []
    for info in pkgutil.iter_modules([str(TESTS)]):
        if info.name.startswith("test_ops_"):
            for name, build in getattr(importlib.import_module(info.name), "CASES", []):
                g = build()[0]
                if len(g.inputs) == 1 == len(g.outputs) and all(
                        g.tensor(n).dtype == "int8" for n in g.inputs + g.outputs):
                    out.append((name, g))
    import tiny_models

    from microquant import api

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        out.append(("tiny_onnx_int8", api.quantize_onnx(
            tiny_models.tiny_onnx(t / "m.onnx"), tiny_models.calib_npz(t / "c.npz"),
            progress=False)))
    return out


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]).ljust(widths[c]) for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-mlperf", action="store_true")
    ap.add_argument("--no-tests", action="store_true", help="skip the test-suite models")
    args = ap.parse_args()
    if not tc.have_arm_toolchain():
        sys.exit(f"needs the arm-none-eabi toolchain ({tc.APT_LINE})")
    models: list[tuple[str, Graph]] = []
    if not args.no_mlperf and MODELS.is_dir():
        models += [(n, read_tflite((MODELS / f"{n}.reference_int8.tflite").read_bytes()))
                   for n in NAMES]
    if not args.no_tests:
        models += test_models()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, g, Path(tmp)) for name, g in models]
    print("arm-none-eabi-gcc -O2, cortex-m4 and cortex-m0plus; fit's stack allowance: "
          + ", ".join(f"{cpu} {n} B" for cpu, n in STACK_BYTES.items()))
    print_table(rows)
    for tag in ("M4", "M0+"):
        err = [abs(r[f"{tag} flash err %"]) for r in rows]
        print(f"{tag}: |flash error| max {max(err):.2f} %, mean {sum(err) / len(err):.2f} %; "
              f"deepest stack {max(r[f'{tag} stack'] for r in rows)} B")
    ram = [abs(r["RAM err %"]) for r in rows]
    print(f"{len(rows)} models; |static RAM error| max {max(ram):.2f} %")


if __name__ == "__main__":
    main()
