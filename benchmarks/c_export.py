"""Benchmark the standalone C export on the MLPerf Tiny models (needs /work/shared).

For each MLCommons reference int8 model:

* bit-exactness over N random inputs: host C build vs our reference runtime vs TFLite Micro;
* optional: the Cortex-M4 build under QEMU (mps2-an386) on a few inputs;
* flash: ``arm-none-eabi-size`` of a stdio-free Cortex-M4 firmware (weights + parameters +
  kernel code + startup), and the kernel library's own code size;
* instructions per inference (valgrind --tool=callgrind, counted only inside the invoke
  call - ``model_invoke_multi`` / TFLM's ``MicroInterpreter::Invoke`` - and taken as the
  difference between runs of K and 2K inferences divided by K): the host C build
  (gcc -O2) vs the TFLite Micro Python interpreter's reference kernels.

Usage::

    python benchmarks/c_export.py [--inputs 100] [--callgrind-k 2] [--qemu 5] [--models kws_dscnn]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from microquant.backends.tflm import TflmRunner
from microquant.export.c import export_c
from microquant.export.c import toolchain as tc
from microquant.export.c.c_model import generate
from microquant.ir.tflite_io import read_tflite
from microquant.runtime.evaluator import Evaluator

MODELS = Path("/work/shared/models/mlperf_tiny")
NAMES = ("ad_autoencoder", "ic_resnet8", "kws_dscnn", "vww_mobilenetv1")

_TFLM_SCRIPT = """
import gc, sys, numpy as np
from microquant.backends.tflm import TflmRunner
gc.disable()  # a collection landing in one run but not the other would skew the difference
data = open(sys.argv[1], "rb").read()
x = np.load(sys.argv[2])
runner = TflmRunner(data)
for _ in range(int(sys.argv[3])):
    runner.run([x])
"""


def callgrind_instructions(cmd: list[str], work: Path, inside: str) -> int:
    """Instructions (Ir) executed inside functions matching ``inside`` (callgrind
    ``--toggle-collect``), so Python start-up and interpreter noise are not counted."""
    out = work / "callgrind.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", f"--toggle-collect={inside}",
                    f"--callgrind-out-file={out}", *cmd], check=True, capture_output=True,
                   env=env)
    text = out.read_text()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    out.unlink()
    return int(m.group(1))


def per_inference(run_k, k: int) -> int:
    """(I(2k) - I(k)) / k: start-up and one-off costs cancel."""
    return (run_k(2 * k) - run_k(k)) // k


def bench_model(name: str, n_inputs: int, k: int, qemu_n: int, work: Path) -> dict:
    path = MODELS / f"{name}.reference_int8.tflite"
    data = path.read_bytes()
    g = read_tflite(data)
    cdir = work / name
    export_c(g, cdir)
    model = generate(g)
    io = [tc.ModelIO.of(g, "model")]
    exe = tc.build_host(cdir, io)
    rng = np.random.default_rng(0)
    shape = g.tensor(g.inputs[0]).shape
    samples = [[rng.integers(-128, 128, size=shape).astype(np.int8)] for _ in range(n_inputs)]
    c_out = tc.run_host(exe, 0, g, samples)
    ev = Evaluator(g)
    tflm = TflmRunner(data)
    c_vs_ref = c_vs_tflm = 0
    for s, got in zip(samples, c_out, strict=True):
        ref = ev.run(s)[0]
        tf = np.asarray(tflm.run(s)[0]).reshape(ref.shape)
        c_vs_ref += int(np.array_equal(got[0].reshape(ref.shape), ref))
        c_vs_tflm += int(np.array_equal(got[0].reshape(ref.shape), tf))
    row = {"model": name, "inputs": n_inputs, "c==ref": c_vs_ref, "c==tflm": c_vs_tflm,
           "arena": model.arena_bytes + model.scratch_bytes, "const": model.const_bytes}

    if tc.have_arm_toolchain():
        elf = tc.build_cortex_m_bare(cdir, g, "model", "cortex-m4")
        size = tc.arm_size(elf)
        row["m4_flash"] = size["flash"]
        row["m4_float_syms"] = len(tc.soft_float_symbols(elf))
        elf0 = tc.build_cortex_m_bare(cdir, g, "model", "cortex-m0plus")
        row["m0_flash"] = tc.arm_size(elf0)["flash"]
        row["m0_float_syms"] = len(tc.soft_float_symbols(elf0))
        if qemu_n and tc.have_qemu():
            t = time.time()
            [q_out] = tc.run_cortex_m4(cdir, io, [(0, g, samples[:qemu_n])])
            row["qemu_m4==c"] = sum(
                int(np.array_equal(a[0], b[0])) for a, b in zip(q_out, c_out[:qemu_n], strict=True)
            )
            row["qemu_s"] = round(time.time() - t, 1)

    if k and subprocess.run(["which", "valgrind"], capture_output=True).returncode == 0:
        fin = cdir / "cg_in.bin"
        fin.write_bytes(tc.pack_inputs(g, samples[: 2 * k] * 2))
        row["c_instr"] = per_inference(
            lambda n: callgrind_instructions(
                [str(exe), "0", str(fin), str(cdir / "cg_out.bin"), str(n)], work,
                "model_invoke_multi"), k)
        xin = cdir / "x.npy"
        np.save(xin, samples[0][0])
        script = cdir / "tflm_run.py"
        script.write_text(_TFLM_SCRIPT)
        # small models: more inferences so interpreter noise stays negligible
        k_tflm = min(50, max(k, -(-10_000_000 // max(row["c_instr"], 1))))
        row["tflm_instr"] = per_inference(
            lambda n: callgrind_instructions(
                [sys.executable, str(script), str(path), str(xin), str(n)], work,
                "*MicroInterpreter::Invoke*"), k_tflm)
        row["ratio"] = round(row["c_instr"] / row["tflm_instr"], 3)
    return row


def kernel_code_size(work: Path) -> dict | None:
    if not tc.have_arm_toolchain():
        return None
    lib = work / "lib"
    lib.mkdir(exist_ok=True)
    from microquant.export.c.c_model import LIB_FILES, library_source

    for f in LIB_FILES:
        (lib / f).write_text(library_source(f))
    return {cpu: tc.object_size(lib / "mq_kernels.c", cpu, "-O2")["text"]
            for cpu in tc.CPU_FLAGS}


def print_table(rows: list[dict]) -> None:
    cols = [c for c in ("model", "inputs", "c==ref", "c==tflm", "qemu_m4==c", "arena", "const",
                        "m4_flash", "m0_flash", "m4_float_syms", "m0_float_syms", "c_instr",
                        "tflm_instr", "ratio") if any(c in r for r in rows)]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--callgrind-k", type=int, default=2,
                    help="inferences K for the K vs 2K callgrind difference (0: skip)")
    ap.add_argument("--qemu", type=int, default=5, help="inputs run on QEMU Cortex-M4 (0: skip)")
    ap.add_argument("--models", nargs="*", default=list(NAMES))
    args = ap.parse_args()
    if not MODELS.is_dir():
        sys.exit(f"needs {MODELS}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for name in args.models:
            t = time.time()
            rows.append(bench_model(name, args.inputs, args.callgrind_k, args.qemu, work))
            print(f"{name}: {time.time() - t:.0f}s", file=sys.stderr)
        print_table(rows)
        sizes = kernel_code_size(work)
        if sizes:
            print("\nkernel library code (.text, -O2): "
                  + ", ".join(f"{cpu} {n} B" for cpu, n in sizes.items()))


if __name__ == "__main__":
    main()
