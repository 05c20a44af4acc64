"""Plain-text tables for terminal output.

Numbers are right-aligned, everything else left-aligned; floats use ``%.4g`` unless the
caller formats them first.

Example:
    >>> print(format_table([{"model": "float", "acc": 0.975}, {"model": "int8", "acc": 0.9722}]))
    model     acc
    -----  ------
    float   0.975
    int8   0.9722
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "x".join(str(x) for x in v) if all(isinstance(x, int) for x in v) else str(v)
    return str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                 headers: Mapping[str, str] | None = None) -> str:
    """Render ``rows`` (dicts) as aligned columns; ``columns`` picks and orders keys."""
    if not rows:
        return "(empty)"
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    headers = headers or {}
    head = [headers.get(c, c) for c in columns]
    cells = [[format_value(r.get(c)) for c in columns] for r in rows]
    numeric = [all(_is_number(r.get(c)) or r.get(c) is None for r in rows) for c in columns]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(head)]

    def line(values: Sequence[str], align: bool = True) -> str:
        parts = [
            v.rjust(w) if (align and num) else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(head), line(["-" * w for w in widths], align=False)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def format_kv(pairs: Mapping[str, Any]) -> str:
    """``key: value`` lines with the keys padded to one width."""
    if not pairs:
        return ""
    w = max(len(k) for k in pairs)
    return "\n".join(f"{k.ljust(w)}  {format_value(v)}" for k, v in pairs.items())
