"""Flash and RAM of microquant's own deployment: the standalone C export on a Cortex-M.

:func:`c_footprint` predicts what ``arm-none-eabi-size`` reports for the firmware
:func:`microquant.export.c.toolchain.build_cortex_m_bare` links - the generated
``<prefix>.c``, the kernels it calls from ``mq_kernels.c``, newlib-nano's ``memcpy``/
``memset``/``memmove`` and the minimal bare-metal application around it (vector table,
reset handler, ``main`` with one input buffer, one result buffer and a volatile copy of
the result). Code sizes are those of **arm-none-eabi-gcc 12.2, -O2, --gc-sections,
newlib-nano** (the toolchain module's flags) for ``cpu="cortex-m4"`` (``-mcpu=cortex-m4
-mthumb``; also used for M7/M33 and non-ARM targets) or ``cpu="cortex-m0plus"``
(``-mfloat-abi=soft``, Thumb-1: :data:`.sizes.M0_SYMBOL_BYTES`, libgcc's 64-bit multiply and
division helpers included); another compiler or ``-Os`` shifts the code part (a few KB at
most), never the data part.

Flash (``text + data``) =

* **constants**: every ``static const`` object the generator emits - int8/int32 arrays at
  their exact size rounded up to 4 bytes (GCC word-aligns arrays at -O2) plus each
  parameter struct at its ``sizeof`` on a 32-bit ARM (:data:`.sizes.STRUCT_BYTES`, ABI-fixed);
* **kernels**: the library functions the model's op types link
  (:func:`.sizes.code_bytes_estimate` minus its base allowance on Cortex-M4; on Cortex-M0+ the
  symbols :data:`.sizes.M0_CLOSURE` lists for each kernel the generated code calls; sizes
  measured with ``nm -S``);
* **libc**: ``memcpy`` when a kernel needs it or an input/output copy is too long to be
  inlined (> :data:`.sizes.INLINE_COPY_MAX` bytes; always on Cortex-M0+), ``memmove`` for
  RESHAPE (``mq_copy``), ``memset`` (the start-up code clears ``.bss`` with it);
* **call sequence**: ``<prefix>_invoke``: :data:`.sizes.INVOKE_BASE` +
  :data:`.sizes.INVOKE_PER_CALL` per node, plus the inlined input/output copies;
* **start-up**: :data:`.sizes.STARTUP_BYTES` (vector table, reset/default handler, ``main``).

RAM = ``data + bss`` + stack:

* **arena**: the generator's static arena (the project planner's "optimized" plan when it
  checks out, else greedy first-fit) and **scratch** (im2col row / ADD tables), each
  rounded up to words;
* **I/O buffers**: the application's input buffer and result buffer plus the bare
  firmware's volatile copy of the result (``in + 2 * out``, each word-aligned);
* **stack**: :data:`.sizes.STACK_BYTES`, an allowance per core - the deepest call chain (reset
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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.export.c.c_model import CModel, generate
from microquant.export.c.sizes import (
    CPUS,
    INLINE_COPY_FREE,
    INLINE_COPY_MAX,
    INLINE_COPY_TAIL,
    INVOKE_BASE,
    INVOKE_PER_CALL,
    LIBC_BYTES,
    M0_CLOSURE,
    M0_INVOKE_BASE,
    M0_INVOKE_PER_CALL,
    M0_STARTUP_BYTES,
    M0_SYMBOL_BYTES,
    OP_LIBC,
    STACK_BYTES,
    STARTUP_BYTES,
    WORD,
    code_bytes_estimate,
    words,
)
from microquant.ir.graph import Graph

COMPILER = "arm-none-eabi-gcc 12.2 -O2 -mcpu=cortex-m4 --gc-sections, newlib-nano"
_CALL = re.compile(r"\b(mq_\w+)\(")


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
        return words(self.arena) + words(self.scratch) + self.io_buffers

    @property
    def ram_total(self) -> int:
        return self.ram_static + self.stack

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flash_total": self.flash_total,
                "ram_static": self.ram_static, "ram_total": self.ram_total}


def _copy_cost(n: int) -> int:
    """Extra invoke bytes of an inlined constant-size ``memcpy`` of ``n`` bytes."""
    if n > INLINE_COPY_MAX:
        return 0  # a call, counted in INVOKE_BASE
    return max(n - INLINE_COPY_FREE, 0) + (INLINE_COPY_TAIL if n > 32 and n % WORD else 0)


def cpu_for_core(core: str) -> str:
    """The kernel-size table used for a target core: ``cortex-m0plus`` for Cortex-M0/M0+
    (Thumb-1 only), else ``cortex-m4`` (also the approximation for M7/M33 and non-ARM)."""
    return "cortex-m0plus" if core.lower().startswith("cortex-m0") else "cortex-m4"


def c_footprint(graph: Graph, stack: int | None = None, cpu: str = "cortex-m4",
                model: CModel | None = None) -> CFootprint:
    """Predicted flash and RAM of the bare firmware for ``graph`` on ``cpu``
    (``"cortex-m4"`` or ``"cortex-m0plus"``, see :data:`CPUS`); ``stack`` defaults to
    the core's :data:`.sizes.STACK_BYTES` allowance; ``model`` is ``generate(graph)``
    when the caller already has it (it is generated otherwise).

    Raises :class:`~microquant.errors.MicroquantError` when the C export does not support
    the graph (op, dtype or non-int8 input/output) or for an unknown ``cpu``.
    """
    if cpu not in CPUS:
        raise MicroquantError(f"unknown cpu {cpu!r}; choose from {', '.join(CPUS)}")
    if model is None:
        model = generate(graph, "model")
    ops = graph.ops()
    copies = [graph.tensor(n).size for n in graph.inputs if not graph.tensor(n).is_const]
    copies += [graph.tensor(n).size for n in graph.outputs]
    weights = sum(t.size * np.dtype(t.dtype).itemsize for t in graph.tensors.values()
                  if t.is_const)
    io = sum(words(graph.tensor(n).size) for n in graph.inputs)
    io += 2 * sum(words(graph.tensor(n).size) for n in graph.outputs)
    if cpu == "cortex-m4":
        libc = {"memset"} | {f for op in ops for f in OP_LIBC.get(op, ())}
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
        const_data=model.const_bytes, weights=weights, kernels=kernels,
        libc=libc_bytes, invoke=invoke, startup=startup, arena=model.arena_bytes,
        scratch=model.scratch_bytes, io_buffers=io,
        stack=STACK_BYTES[cpu] if stack is None else stack, planner=model.planner,
    )
