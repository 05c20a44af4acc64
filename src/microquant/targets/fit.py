"""Does a model fit a microcontroller? Flash and RAM budgets per target profile.

Two deployments (``runtime``):

* ``"c"`` (default for quantized int8 models): microquant's standalone C export, the
  firmware :func:`microquant.export.c.toolchain.build_cortex_m_bare` links. Figures come
  from :func:`microquant.targets.deploy.c_footprint` (module doc there): flash = constants
  (exact) + the kernels the model's ops link + libc + call sequence + start-up code, RAM =
  the export's arena + scratch + I/O buffers (exact) + a stack allowance (512 B, 768 B
  on Cortex-M0+). Code sizes come from Cortex-M0+ tables for ``cortex-m0*`` targets and
  Cortex-M4 tables for every other core (``code_table`` field). Checked against
  ``arm-none-eabi-size`` of the linked firmware (gcc 12.2, -O2) on both cores: flash
  within 2.5 %, static RAM to the byte, on the MLPerf Tiny models and ~90 test models
  (``benchmarks/fit_accuracy.py``).
  Row fields: ``flash_weights`` (constant tensors),
  ``flash_quant_params`` (the C constants beyond the tensors' bytes: per-channel
  multipliers and shifts, parameter structs, alignment), ``flash_graph`` (the generated
  invoke function), ``flash_code`` (kernels + libc + start-up), ``flash_const``,
  ``flash_kernels``, ``flash_libc``, ``flash_startup``; ``ram_runtime`` = scratch + I/O
  buffers + stack (``ram_scratch``, ``ram_io``, ``ram_stack``; ``ram_static`` = arena +
  scratch + I/O = what ``size`` reports as data + bss), ``measured``. With
  ``measure=True`` the firmware is really built and ``size``'s numbers replace the
  estimate. A graph the C export cannot run (float I/O, int16, an unsupported op) falls
  back to ``"tflm"`` with a note.
* ``"tflm"``: TensorFlow Lite Micro's interpreter with the ``.tflite`` flatbuffer in flash;
  always used for float models and for the int8 estimate of an un-quantized ONNX model
  (the C constants need real quantization parameters). Estimated as below.

TFLite Micro estimates (all in bytes; documented so a user can judge the margin):

Flash = weights + quantization parameters + graph structure + code

* **weights**: every constant tensor at its stored type (int8 weights, int32 biases for a
  quantized model; float32 for a float one).
* **quantization parameters**: per quantized tensor, 12 bytes per channel (float32 scale +
  int64 zero point, as the ``.tflite`` schema stores them) + 16 bytes of table overhead.
* **graph structure**: for a ``.tflite`` file the exact rest of the file (file size minus the
  two items above); otherwise 48 bytes per tensor + 32 per operator + 256 (flatbuffer tables).
* **code**: :data:`RUNTIME_CODE` for the interpreter (TFLM's ``MicroInterpreter``, allocator,
  flatbuffer access, op resolver; ~24 KB at ``-Os`` on Cortex-M) plus, once per distinct op
  type, the kernel size from :data:`KERNEL_CODE` (TFLM reference int8 kernels at ``-Os``,
  rounded; float kernels are taken as 75 % of that since they skip requantization). A float
  model on a core without an FPU also links the soft-float library (:data:`SOFTFLOAT_CODE`).
  These are rough (+-50 %) figures from typical Cortex-M builds, not measurements of your
  toolchain.

RAM = activation arena + runtime overhead

* **arena**: :func:`microquant.targets.planner.plan_memory` (``strategy`` ``"optimized"``
  by default; ``"greedy"`` = what TFLM itself plans). Rows carry both numbers. (The C
  runtime always uses the export's own checked plan.)
* **runtime overhead** (TFLM's persistent "tail"): 24 bytes per tensor (``TfLiteEvalTensor``,
  constants included), 64 per operator (``NodeAndRegistration``), per-op data of 72 bytes per
  operator plus 8 bytes per output channel of per-channel CONV_2D / DEPTHWISE_CONV_2D /
  FULLY_CONNECTED (multiplier + shift), 192 for the persistent input/output tensors and 880
  fixed (interpreter and allocator objects). On the four MLPerf Tiny int8 models this is
  within 10 % of TFLM's recorded tail. The call stack is not included: keep it in
  ``reserve_ram``.

``margin`` = available (size minus the reserve for the application) minus the estimate;
the verdict names every resource that does not fit.

Example:
    >>> rows = fit_report(graph, ["nrf52840"], reserve_ram=16 * 1024)   # doctest: +SKIP
    >>> rows[0]["verdict"]                                              # doctest: +SKIP
    'fits'
    >>> print(format_fit(fit_cli("model.tflite", ["rp2040"])))          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, QuantParams, Tensor
from microquant.targets.deploy import (
    CFootprint,
    c_footprint,
    cpu_for_core,
    measure_firmware,
)
from microquant.targets.planner import plan_memory
from microquant.targets.profiles import (
    Target,
    format_size,
    load_target,
    parse_size,
    resolve_targets,
)

RUNTIME_CODE = 24 * 1024
SOFTFLOAT_CODE = 8 * 1024
FLOAT_KERNEL_FACTOR = 0.75
DEFAULT_KERNEL_CODE = 3072
KERNEL_CODE: dict[str, int] = {
    "CONV_2D": 5632, "DEPTHWISE_CONV_2D": 5120, "FULLY_CONNECTED": 3072, "ADD": 3072,
    "MUL": 2560, "AVERAGE_POOL_2D": 2048, "MAX_POOL_2D": 1792, "MEAN": 3072,
    "RESHAPE": 640, "SOFTMAX": 3584, "LOGISTIC": 2560, "TANH": 2560, "RELU": 1280,
    "RELU6": 1280, "CONCATENATION": 1536, "PAD": 2048, "TRANSPOSE": 2048, "QUANTIZE": 2048,
    "DEQUANTIZE": 1536,
}
QPARAM_BYTES_PER_CHANNEL = 12
QPARAM_TABLE_BYTES = 16
GRAPH_BYTES_PER_TENSOR, GRAPH_BYTES_PER_OP, GRAPH_BYTES_FIXED = 48, 32, 256
RAM_PER_TENSOR, RAM_PER_OP, RAM_OPDATA_PER_OP, RAM_PER_CHANNEL = 24, 64, 72, 8
RAM_IO_TENSORS, RAM_FIXED = 192, 880

_PER_CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
RUNTIMES = ("c", "tflm")


def _is_float_model(graph: Graph) -> bool:
    return not any(t.dtype in ("int8", "int16") and not t.is_const
                   for t in graph.tensors.values())


def _nbytes(t: Tensor) -> int:
    return t.size * np.dtype(t.dtype).itemsize


def _referenced(graph: Graph) -> list[Tensor]:
    names = set(graph.inputs) | set(graph.outputs)
    for n in graph.nodes:
        names.update(i for i in n.inputs if i)
        names.update(n.outputs)
    return [t for k, t in graph.tensors.items() if k in names]


def flash_breakdown(graph: Graph, target: Target, model_bytes: int | None = None
                    ) -> dict[str, int]:
    """``weights``, ``quant_params``, ``graph``, ``code`` and ``total`` flash bytes."""
    tensors = _referenced(graph)
    weights = sum(_nbytes(t) for t in tensors if t.is_const)
    qparams = sum(QPARAM_BYTES_PER_CHANNEL * t.quant.scale.size + QPARAM_TABLE_BYTES
                  for t in tensors if t.quant is not None)
    if model_bytes is not None:
        structure = max(model_bytes - weights - qparams, 0)
    else:
        structure = (GRAPH_BYTES_PER_TENSOR * len(tensors) + GRAPH_BYTES_PER_OP
                     * len(graph.nodes) + GRAPH_BYTES_FIXED)
    is_float = _is_float_model(graph)
    factor = FLOAT_KERNEL_FACTOR if is_float else 1.0
    kernels = sum(int(KERNEL_CODE.get(op, DEFAULT_KERNEL_CODE) * factor)
                  for op in sorted(set(graph.ops())))
    code = RUNTIME_CODE + kernels + (SOFTFLOAT_CODE if is_float and not target.fpu else 0)
    total = weights + qparams + structure + code
    return {"weights": weights, "quant_params": qparams, "graph": structure, "code": code,
            "total": total}


def runtime_ram(graph: Graph) -> int:
    """TFLM-style persistent runtime memory (see module doc)."""
    tensors = _referenced(graph)
    channels = 0
    for n in graph.nodes:
        if n.op in _PER_CHANNEL_OPS and not _is_float_model(graph) and len(n.inputs) > 1:
            w = graph.tensors.get(n.inputs[1])
            if w is not None and w.quant is not None:
                channels += w.quant.scale.size
    return (RAM_PER_TENSOR * len(tensors) + (RAM_PER_OP + RAM_OPDATA_PER_OP) * len(graph.nodes)
            + RAM_PER_CHANNEL * channels + RAM_IO_TENSORS + RAM_FIXED)


def _targets(targets: list[Target] | list[str] | None) -> list[Target]:
    if targets is None:
        return resolve_targets()
    return [t if isinstance(t, Target) else load_target(t) for t in targets]


def _c_runtime(graph: Graph, measure: bool, cpu: str
               ) -> tuple[CFootprint | None, dict | None, str]:
    """The C deployment's footprint on ``cpu`` (and the measured firmware) or why there
    is none."""
    from microquant.export.c import toolchain as tc

    try:
        fp = c_footprint(graph, cpu=cpu)
    except MicroquantError as e:
        return None, None, str(e)
    if not measure:
        return fp, None, ""
    if not tc.have_arm_toolchain():
        raise MicroquantError(f"measuring the firmware needs arm-none-eabi-gcc ({tc.APT_LINE})")
    return fp, measure_firmware(graph, cpu=cpu), ""


def _c_figures(fp: CFootprint, measured: dict | None) -> dict[str, Any]:
    """Row fields of the C deployment (see the module doc)."""
    flash_total = measured["flash"] if measured else fp.flash_total
    ram_static = measured["ram"] if measured else fp.ram_static
    code = fp.kernels + fp.libc + fp.startup
    return {
        "flash_weights": fp.weights, "flash_quant_params": max(fp.const_data - fp.weights, 0),
        "flash_graph": fp.invoke, "flash_code": code, "flash_total": flash_total,
        "flash_const": fp.const_data, "flash_kernels": fp.kernels, "flash_libc": fp.libc,
        "flash_startup": fp.startup, "ram_scratch": fp.scratch, "ram_io": fp.io_buffers,
        "ram_stack": fp.stack, "ram_static": ram_static, "arena": fp.arena,
        "ram_total": ram_static + fp.stack, "measured": measured is not None,
    }


def fit_report(graph: Graph, targets: list[Target] | list[str] | None = None,
               reserve_ram: int = 0, reserve_flash: int = 0, *,
               strategy: str = "optimized", model_bytes: int | None = None,
               precision: str | None = None, runtime: str = "c",
               measure: bool = False) -> list[dict[str, Any]]:
    """One row per target: flash and RAM estimate, margins and verdict.

    ``reserve_ram``/``reserve_flash`` (bytes) are kept free for the application;
    ``model_bytes`` is the ``.tflite`` file size when known (exact graph structure size,
    TFLM runtime). ``runtime`` ``"c"`` (microquant's C export) or ``"tflm"``; float models
    and graphs the C export cannot run use ``"tflm"`` (with a note). ``measure=True``
    (C runtime, needs arm-none-eabi-gcc and a 1-input, 1-output model) builds the bare
    firmware for each target's core (Cortex-M0+ or Cortex-M4) and uses
    ``arm-none-eabi-size``'s flash (text + data) and RAM (data + bss, + the stack
    allowance) instead of the estimate.
    """
    if reserve_ram < 0 or reserve_flash < 0:
        raise MicroquantError("reserved RAM/flash must not be negative")
    if runtime not in RUNTIMES:
        raise MicroquantError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    plan = plan_memory(graph, strategy)
    greedy = plan if strategy == "greedy" else plan_memory(graph, "greedy")
    is_float = _is_float_model(graph)
    precision = precision or ("float32" if is_float else "int8")
    c_runs: dict[str, tuple[CFootprint | None, dict | None, str]] = {}
    rt_ram = runtime_ram(graph)
    rows = []
    for t in _targets(targets):
        base_notes = []
        c_fig = None
        if runtime == "c" and not is_float:
            cpu = cpu_for_core(t.core)
            if cpu not in c_runs:
                c_runs[cpu] = _c_runtime(graph, measure, cpu)
            fp, measured, why = c_runs[cpu]
            if fp is None:
                base_notes.append("TFLite Micro figures: the C export cannot run this model "
                                  f"({why})")
            else:
                c_fig = _c_figures(fp, measured)
                c_fig["code_table"] = cpu
        used = "c" if c_fig else "tflm"
        if c_fig:
            fig = dict(c_fig)
            fig["ram_runtime"] = fig["ram_total"] - fig["arena"]
        else:
            flash = flash_breakdown(graph, t, model_bytes)
            fig = {"flash_weights": flash["weights"], "flash_quant_params": flash["quant_params"],
                   "flash_graph": flash["graph"], "flash_code": flash["code"],
                   "flash_total": flash["total"], "arena": plan.arena_size,
                   "ram_runtime": rt_ram, "ram_total": plan.arena_size + rt_ram}
        arena, ram_total = fig["arena"], fig["ram_total"]
        flash_avail, ram_avail = t.flash - reserve_flash, t.ram - reserve_ram
        flash_margin, ram_margin = flash_avail - fig["flash_total"], ram_avail - ram_total
        short = []
        if ram_margin < 0:
            short.append("RAM")
        if flash_margin < 0:
            short.append("flash")
        notes = list(base_notes)
        if arena > t.ram:
            notes.append(f"the activation arena alone ({arena:,} B) exceeds the "
                         f"{t.ram:,} B of RAM")
        if fig["flash_weights"] > t.flash:
            notes.append(f"the weights alone ({fig['flash_weights']:,} B) exceed the "
                         f"{t.flash:,} B of flash")
        if is_float and not t.fpu:
            notes.append("no FPU: float kernels run in software emulation (slow)")
        if t.flash_external:
            notes.append("flash is an external chip (execute-in-place, slower weight reads)")
        verdict = "fits" if not short else "does not fit: " + " and ".join(short)
        rows.append({
            "target": t.name, "core": t.core, "clock_mhz": t.clock_mhz, "fpu": t.fpu,
            "dsp": t.dsp, "precision": precision, "runtime": used, "strategy": strategy,
            **fig, "flash_size": t.flash,
            "flash_available": flash_avail, "flash_margin": flash_margin,
            "arena_greedy": greedy.arena_size, "ram_size": t.ram,
            "ram_available": ram_avail, "ram_margin": ram_margin,
            "fits": not short, "verdict": verdict, "notes": notes,
        })
    return rows


def int8_estimate_graph(graph: Graph) -> Graph:
    """The lowered float graph with int8 sizes: what quantization would produce, byte for
    byte (int8 activations and weights, int32 biases, per-channel weight scales)."""
    g = graph.copy()
    bias: set[str] = set()
    axis: dict[str, int] = {}
    for n in g.nodes:
        if n.op in _PER_CHANNEL_OPS and len(n.inputs) > 1:
            axis[n.inputs[1]] = 3 if n.op == "DEPTHWISE_CONV_2D" else 0
            if len(n.inputs) > 2 and n.inputs[2]:
                bias.add(n.inputs[2])
    for name, t in list(g.tensors.items()):
        if t.dtype != "float32":
            continue
        dtype = "int32" if name in bias else "int8"
        ax = axis.get(name)
        ch = t.shape[ax] if ax is not None and t.shape else (t.shape[0] if name in bias else 1)
        data = np.zeros(t.shape, dtype) if t.is_const else None
        q = QuantParams(np.ones(max(ch, 1)), np.zeros(max(ch, 1)), ax)
        g.tensors[name] = Tensor(name, t.shape, dtype, data, q)
    return g


def fit_cli(model_path: str | Path, targets: list[str] | None = None,
            target_file: str | Path | None = None, reserve_ram: str | int = "0",
            reserve_flash: str | int = "0", strategy: str = "optimized",
            runtime: str = "c", measure: bool = False) -> dict[str, Any]:
    """What ``microquant fit`` prints: rows for a ``.tflite`` (as stored) or an ``.onnx``
    (float32 as lowered, plus an int8 estimate of the same graph). ``runtime`` and
    ``measure`` as :func:`fit_report`; they apply to a quantized ``.tflite`` (an ONNX
    model's rows are TFLite Micro estimates: quantize it first for the C figures).

    Returns ``{"model", "format", "targets", "reserve_ram", "reserve_flash", "rows",
    "summary"}``; ``rows`` as :func:`fit_report` (``precision`` tells float32 / int8 /
    ``int8 (estimate)`` apart).
    """
    from microquant.report.models import load_onnx_lowered, open_model

    r_ram = parse_size(reserve_ram, "RAM reserve")
    r_flash = parse_size(reserve_flash, "flash reserve")
    selected = resolve_targets(targets, target_file)
    mf = open_model(model_path)
    if mf.kind == "tflite":
        from microquant.ir.tflite_read import read_tflite

        graph = read_tflite(mf.data)
        rows = fit_report(graph, selected, r_ram, r_flash, strategy=strategy,
                          model_bytes=len(mf.data), runtime=runtime, measure=measure)
    else:
        lowered = load_onnx_lowered(mf.path)[1]
        rows = fit_report(lowered, selected, r_ram, r_flash, strategy=strategy)
        # the C export generates real constants, which need real quantization parameters;
        # an un-quantized model's int8 estimate is therefore a TFLite Micro estimate
        rows += fit_report(int8_estimate_graph(lowered), selected, r_ram, r_flash,
                           strategy=strategy, precision="int8 (estimate)", runtime="tflm")
    return {"model": str(mf.path), "format": mf.kind, "runtime": runtime,
            "targets": [t.name for t in selected],
            "reserve_ram": r_ram, "reserve_flash": r_flash, "rows": rows,
            "summary": summarize(rows)}


def summarize(rows: list[dict[str, Any]]) -> str:
    """One line per precision: where the model fits, where it does not and why."""
    lines = []
    for prec in dict.fromkeys(r["precision"] for r in rows):
        sel = [r for r in rows if r["precision"] == prec]
        ok = [r["target"] for r in sel if r["fits"]]
        bad = [f"{r['target']} ({r['verdict'].removeprefix('does not fit: ')})"
               for r in sel if not r["fits"]]
        if not ok:
            lines.append(f"{prec}: fits none of the selected targets; " + ", ".join(bad))
        elif not bad:
            lines.append(f"{prec}: fits all selected targets")
        else:
            lines.append(f"{prec}: fits {', '.join(ok)}; does not fit " + ", ".join(bad))
    return "\n".join(lines)


def format_fit(result: dict[str, Any]) -> str:
    """Terminal rendering of :func:`fit_cli`'s result: one table row per (precision,
    target), then notes and the summary."""
    from microquant.report.table import format_table

    def kb(n: int) -> str:
        return f"{n / 1024:.1f}"

    table = []
    notes: list[str] = []
    for r in result["rows"]:
        table.append({
            "target": r["target"], "model": r["precision"], "runtime": r.get("runtime", "tflm")
            + (" (measured)" if r.get("measured") else ""),
            "flash KB": f"{kb(r['flash_total'])}/{kb(r['flash_size'])}",
            "flash margin": kb(r["flash_margin"]),
            "arena KB": kb(r["arena"]), "RAM KB": f"{kb(r['ram_total'])}/{kb(r['ram_size'])}",
            "RAM margin": kb(r["ram_margin"]), "verdict": r["verdict"],
        })
        notes += [f"{r['target']} ({r['precision']}): {n}" for n in r["notes"]]
    lines = [format_table(table)]
    reserve = [f"{k.split('_')[1]} {format_size(result[k])}" for k in ("reserve_ram",
               "reserve_flash") if result.get(k)]
    if reserve:
        lines.append("reserved for the application: " + ", ".join(reserve))
    lines += ["note: " + n for n in dict.fromkeys(notes)]
    lines.append(result["summary"])
    return "\n".join(lines)
