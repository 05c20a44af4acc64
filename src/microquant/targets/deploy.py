"""Flash and RAM of microquant's own deployment (the standalone C export on a Cortex-M).

The footprint model lives with the generator, in :mod:`microquant.export.c.footprint`
(:func:`c_footprint`, :class:`CFootprint`; measured tables in
:mod:`microquant.export.c.sizes`), so that ``microquant export`` and ``microquant fit``
report the same flash estimate; it is re-exported here. :func:`measure_firmware` links
the real firmware and reads ``arm-none-eabi-size`` instead.

Example:
    >>> fp = c_footprint(read_tflite(kws_dscnn_int8))      # doctest: +SKIP
    >>> fp.flash_total, fp.ram_static, fp.ram_total        # doctest: +SKIP
    (40644, 10372, 10884)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from microquant.export.c.footprint import COMPILER, CFootprint, c_footprint, cpu_for_core
from microquant.export.c.sizes import STACK_BYTES
from microquant.ir.graph import Graph

__all__ = [
    "COMPILER", "STACK_BYTES", "CFootprint", "c_footprint", "cpu_for_core", "measure_firmware",
]


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
