"""Flash and RAM of microquant's own deployment: the standalone C export on a Cortex-M.

:func:`c_footprint` predicts what ``arm-none-eabi-size`` reports for the firmware
:func:`microquant.export.c.toolchain.build_cortex_m_bare` links - the generated
``<prefix>.c``, the kernels it calls from ``mq_kernels.c``, newlib-nano's ``memcpy``/
``memset``/``memmove`` and the minimal bare-metal application around it (vector table,
reset handler, ``main`` with one input buffer, one result buffer and a volatile copy of
the result). Code sizes are those of **arm-none-eabi-gcc 12.2, -O2, --gc-sections,
newlib-nano** (the toolchain module's flags) for ``cpu="cortex-m4"`` (``-mcpu=cortex-m4
-mthumb``; also used for M7/M33 and non-ARM targets) or ``cpu="cortex-m0plus"``
(``-mfloat-abi=soft``, Thumb-1: :data:`M0_SYMBOL_BYTES`, libgcc's 64-bit multiply and
division helpers included); another compiler or ``-Os`` shifts the code part (a few KB at
most), never the data part.

Flash (``text + data``) =

* **constants**: every ``static const`` object the generator emits - int8/int32 arrays at
  their exact size rounded up to 4 bytes (GCC word-aligns arrays at -O2) plus each
  parameter struct at its ``sizeof`` on a 32-bit ARM (:data:`STRUCT_BYTES`, ABI-fixed);
* **kernels**: the library functions the model's op types link
  (:func:`microquant.export.c.code_bytes_estimate` on Cortex-M4; on Cortex-M0+ the
  symbols :data:`M0_CLOSURE` lists for each kernel the generated code calls; sizes
  measured with ``nm -S``);
* **libc**: ``memcpy`` when a kernel needs it or an input/output copy is too long to be
  inlined (> :data:`INLINE_COPY_MAX` bytes; always on Cortex-M0+), ``memmove`` for
  RESHAPE (``mq_copy``), ``memset`` (the start-up code clears ``.bss`` with it);
* **call sequence**: ``<prefix>_invoke``: :data:`INVOKE_BASE` + :data:`INVOKE_PER_CALL`
  per node, plus the inlined input/output copies;
* **start-up**: :data:`STARTUP_BYTES` (vector table, reset/default handler, ``main``).

RAM = ``data + bss`` + stack:

* **arena**: the generator's static arena (the project planner's "optimized" plan when it
  checks out, else greedy first-fit) and **scratch** (im2col row / ADD tables), each
  rounded up to words;
* **I/O buffers**: the application's input buffer and result buffer plus the bare
  firmware's volatile copy of the result (``in + 2 * out``, each word-aligned);
* **stack**: :data:`STACK_BYTES`, an allowance per core - the deepest call chain (reset
  handler -> ``main`` -> invoke -> conv/depthwise kernel -> dot/pixel helper) needs at
  most 368 bytes on Cortex-M4 and 568 on Cortex-M0+ (more spills) over the MLPerf Tiny
  and test models at -O2 by ``-fstack-usage`` (``benchmarks/fit_accuracy.py``); 512 and
  768 leave room for an exception frame. The stack is not in ``size``'s output, so
  :attr:`CFootprint.ram_static` is the figure to compare with it.

Example:
    >>> fp = c_footprint(read_tflite(kws_dscnn_int8))      # doctest: +SKIP
    >>> fp.flash_total, fp.ram_static, fp.ram_total        # doctest: +SKIP
    (40644, 10372, 10884)

    (``arm-none-eabi-size`` of that firmware: flash 40668, data + bss 10372.)
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.export.c import code_bytes_estimate
from microquant.export.c.c_model import generate
from microquant.ir.graph import Graph

COMPILER = "arm-none-eabi-gcc 12.2 -O2 -mcpu=cortex-m4 --gc-sections, newlib-nano"
WORD = 4
# sizeof() of the kernel library's parameter structs on a 32-bit ARM (ABI-fixed)
STRUCT_BYTES: dict[str, int] = {
    "mq_add_params": 132, "mq_broadcast": 84, "mq_clamp_params": 12, "mq_concat_params": 12,
    "mq_conv_params": 96, "mq_depthwise_params": 100, "mq_fc_params": 48,
    "mq_mean_params": 124, "mq_mul_params": 112, "mq_pad_params": 68, "mq_pool_params": 68,
    "mq_requant_params": 28, "mq_sigmoid_params": 20, "mq_softmax_params": 20,
    "mq_transpose_params": 52, "mq_walk": 52, "mq_window": 60,
}
LIBC_BYTES = {"memcpy": 308, "memset": 162, "memmove": 254}  # newlib-nano, Cortex-M4
_OP_LIBC = {"CONV_2D": ("memcpy", "memset"), "PAD": ("memcpy", "memset"),
            "CONCATENATION": ("memcpy",), "RESHAPE": ("memmove",)}
INLINE_COPY_MAX = 64  # GCC inlines a constant-size memcpy up to this many bytes
INLINE_COPY_FREE = 16  # ... and the first bytes cost no more than the call would
INLINE_COPY_TAIL = 16  # a copy longer than 32 bytes with a 1-3 byte tail costs this much more
INVOKE_BASE, INVOKE_PER_CALL = 36, 18
STARTUP_BYTES = 64 + 40 + 2 + 80  # vectors, Reset_Handler, Default_Handler, main
STACK_BYTES = {"cortex-m4": 512, "cortex-m0plus": 768}

_ARRAY = re.compile(r"static const (int8_t|int32_t) \w+\[(\d+)\] = \{")
_STRUCT = re.compile(r"static const (\w+) \w+ = \{")


def _words(n: int) -> int:
    return (n + WORD - 1) // WORD * WORD


@dataclass(frozen=True)
class CFootprint:
    """Predicted Cortex-M4 firmware sizes in bytes (see the module doc)."""

    const_data: int
    weights: int
    kernels: int
    libc: int
    invoke: int
    startup: int
    arena: int
    scratch: int
    io_buffers: int
    stack: int
    planner: str

    @property
    def flash_total(self) -> int:
        """Predicted ``text + data``."""
        return self.const_data + self.kernels + self.libc + self.invoke + self.startup

    @property
    def ram_static(self) -> int:
        """Predicted ``data + bss`` (no stack)."""
        return _words(self.arena) + _words(self.scratch) + self.io_buffers

    @property
    def ram_total(self) -> int:
        return self.ram_static + self.stack

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flash_total": self.flash_total,
                "ram_static": self.ram_static, "ram_total": self.ram_total}


def const_data_bytes(source: str) -> int:
    """Flash bytes of the ``static const`` objects in a generated ``<prefix>.c``."""
    total = 0
    for ctype, count in _ARRAY.findall(source):
        total += _words(int(count) * (1 if ctype == "int8_t" else 4))
    for ctype in _STRUCT.findall(source):
        total += STRUCT_BYTES.get(ctype, 64)  # an unknown struct: a typical size
    return total


def _copy_cost(n: int) -> int:
    """Extra invoke bytes of an inlined constant-size ``memcpy`` of ``n`` bytes."""
    if n > INLINE_COPY_MAX:
        return 0  # a call, counted in INVOKE_BASE
    return max(n - INLINE_COPY_FREE, 0) + (INLINE_COPY_TAIL if n > 32 and n % WORD else 0)


# Cortex-M0+ (-mfloat-abi=soft, armv6-m: no unaligned access, no 64-bit multiply or
# hardware divide): code bytes per symbol and the symbols each kernel entry point links
# (arm-none-eabi-nm -S of a --gc-sections link with that entry point; libgcc helpers
# included, aliases counted once).
M0_SYMBOL_BYTES: dict[str, int] = {
    "__aeabi_lmul": 90, "__aeabi_idiv0": 2, "__aeabi_idivmod": 8, "__divsi3": 460,
    "memcpy": 142, "memset": 166, "memmove": 176, "mq_srdhm": 80, "mq_rdbpot": 178,
    "mq_mbqm": 332, "dot_channels": 2688, "mq_conv2d": 680, "dw_pixel_dm1": 2576,
    "mq_depthwise_conv2d": 1260, "mq_fully_connected": 164, "mq_average_pool2d": 10,
    "pool": 684, "mq_max_pool2d": 10, "bc_next": 84, "mq_add": 4064, "mq_mul": 920,
    "mq_requantize": 456, "mq_clamp": 40, "barrel_exponent.1": 28, "barrel_multiplier.0": 28,
    "exp_on_negative_values": 552, "mq_logistic": 808, "newton_reciprocal": 476,
    "mq_tanh": 780, "mq_softmax": 712, "mq_mean": 664, "walk_next": 64, "mq_transpose": 124,
    "mq_pad": 170, "mq_concatenation": 86, "mq_copy": 18,
}
_EXP = ("__aeabi_lmul", "barrel_exponent.1", "barrel_multiplier.0", "exp_on_negative_values",
        "newton_reciprocal")
_DIV = ("__aeabi_idiv0", "__aeabi_idivmod", "__divsi3")
M0_CLOSURE: dict[str, tuple[str, ...]] = {
    "mq_conv2d": (*_DIV, "__aeabi_lmul", "dot_channels", "memcpy", "memset", "mq_conv2d"),
    "mq_depthwise_conv2d": ("__aeabi_lmul", "dw_pixel_dm1", "mq_depthwise_conv2d"),
    "mq_fully_connected": ("__aeabi_lmul", "dot_channels", "mq_fully_connected"),
    "mq_average_pool2d": (*_DIV, "mq_average_pool2d", "pool"),
    "mq_max_pool2d": (*_DIV, "mq_max_pool2d", "pool"),
    "mq_add": ("__aeabi_lmul", "bc_next", "memset", "mq_add"),
    "mq_mul": ("__aeabi_lmul", "bc_next", "memset", "mq_mul"),
    "mq_requantize": ("__aeabi_lmul", "mq_requantize"), "mq_clamp": ("mq_clamp",),
    "mq_logistic": (*_EXP, "mq_logistic"), "mq_tanh": (*_EXP, "mq_tanh"),
    "mq_softmax": (*_EXP, "mq_softmax"),
    "mq_mean": ("__aeabi_lmul", "memset", "mq_mean", "walk_next"),
    "mq_transpose": ("memset", "mq_transpose", "walk_next"),
    "mq_pad": ("memcpy", "memset", "mq_pad", "walk_next"),
    "mq_concatenation": ("memcpy", "mq_concatenation"), "mq_copy": ("memmove", "mq_copy"),
}
M0_INVOKE_BASE, M0_INVOKE_PER_CALL = 33, 21
M0_STARTUP_BYTES = 64 + 40 + 2 + 80
CPUS = ("cortex-m4", "cortex-m0plus")
_CALL = re.compile(r"\b(mq_\w+)\(")


def cpu_for_core(core: str) -> str:
    """The kernel-size table used for a target core: ``cortex-m0plus`` for Cortex-M0/M0+
    (Thumb-1 only), else ``cortex-m4`` (also the approximation for M7/M33 and non-ARM)."""
    return "cortex-m0plus" if core.lower().startswith("cortex-m0") else "cortex-m4"


def c_footprint(graph: Graph, stack: int | None = None, cpu: str = "cortex-m4"
                ) -> CFootprint:
    """Predicted flash and RAM of the bare firmware for ``graph`` on ``cpu``
    (``"cortex-m4"`` or ``"cortex-m0plus"``, see :data:`CPUS`); ``stack`` defaults to
    the core's :data:`STACK_BYTES` allowance.

    Raises :class:`~microquant.errors.MicroquantError` when the C export does not support
    the graph (op, dtype or non-int8 input/output) or for an unknown ``cpu``.
    """
    if cpu not in CPUS:
        raise MicroquantError(f"unknown cpu {cpu!r}; choose from {', '.join(CPUS)}")
    model = generate(graph, "model")
    ops = graph.ops()
    copies = [graph.tensor(n).size for n in graph.inputs if not graph.tensor(n).is_const]
    copies += [graph.tensor(n).size for n in graph.outputs]
    weights = sum(t.size * np.dtype(t.dtype).itemsize for t in graph.tensors.values()
                  if t.is_const)
    io = sum(_words(graph.tensor(n).size) for n in graph.inputs)
    io += 2 * sum(_words(graph.tensor(n).size) for n in graph.outputs)
    if cpu == "cortex-m4":
        libc = {"memset"} | {f for op in ops for f in _OP_LIBC.get(op, ())}
        if any(n > INLINE_COPY_MAX for n in copies):
            libc.add("memcpy")
        kernels = code_bytes_estimate(ops) - code_bytes_estimate([])
        libc_bytes = sum(LIBC_BYTES[f] for f in libc)
        invoke = INVOKE_BASE + INVOKE_PER_CALL * len(graph.nodes) + sum(map(_copy_cost, copies))
        startup = STARTUP_BYTES
    else:
        syms = {"memset", "memcpy"}  # start-up clears .bss; armv6-m copies always call
        for entry in set(_CALL.findall(model.source)):
            syms.update(M0_CLOSURE.get(entry, (entry,)))
        lib = {s for s in syms if s.startswith(("__", "mem"))}
        kernels = sum(M0_SYMBOL_BYTES.get(s, 0) for s in syms - lib)
        libc_bytes = sum(M0_SYMBOL_BYTES[s] for s in lib)
        invoke = M0_INVOKE_BASE + M0_INVOKE_PER_CALL * len(graph.nodes)
        startup = M0_STARTUP_BYTES
    return CFootprint(
        const_data=const_data_bytes(model.source), weights=weights, kernels=kernels,
        libc=libc_bytes, invoke=invoke, startup=startup, arena=model.arena_bytes,
        scratch=model.scratch_bytes, io_buffers=io,
        stack=STACK_BYTES[cpu] if stack is None else stack, planner=model.planner,
    )


def measure_firmware(graph: Graph, work_dir: str | Path | None = None,
                     cpu: str = "cortex-m4") -> dict[str, int]:
    """Export ``graph``, link the bare firmware and return ``arm-none-eabi-size``'s
    ``text``/``data``/``bss`` plus ``flash`` (text + data) and ``ram`` (data + bss).

    Needs the arm-none-eabi toolchain and a 1-input, 1-output model.
    """
    from microquant.export.c import export_c
    from microquant.export.c import toolchain as tc

    def run(d: Path) -> dict[str, int]:
        export_c(graph, d, "model")
        return tc.arm_size(tc.build_cortex_m_bare(d, graph, "model", cpu))

    if work_dir is not None:
        return run(Path(work_dir))
    with tempfile.TemporaryDirectory(prefix="mq_fw_") as tmp:
        return run(Path(tmp))
