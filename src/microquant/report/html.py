"""A self-contained HTML report page: headed sections holding tables, images and text.

Everything is inline - CSS in a ``<style>`` block, PNG images as ``data:image/png;base64``
URIs - so the single file can be mailed or archived. A short inline script sets
``data-images-ready="<decoded>/<total>"`` on ``<body>`` once every image has loaded (used
by the headless-browser test, harmless elsewhere). Written atomically (temp + rename).

Example:
    >>> import tempfile
    >>> p = write_html_report(tempfile.mkdtemp(), "demo", [Section("t", table=[{"a": 1}])])
    >>> p.name, ">1</td>" in p.read_text()
    ('report.html', True)
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microquant.errors import MicroquantError
from microquant.report.table import format_value

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_NAME = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fff; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; white-space: nowrap; }
th { background: #eef2f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  }
  document.body.setAttribute("data-images-ready", ok + "/" + imgs.length);
});
"""


@dataclass
class Section:
    """A heading followed by any of: a paragraph, a table (list of row dicts), an image
    (PNG bytes or a path to a PNG file)."""

    heading: str
    table: Sequence[Mapping[str, Any]] | None = None
    image: bytes | str | Path | None = None
    text: str | None = None


def write_html_report(
    out_dir: str | Path, title: str, sections: Sequence[Section | Mapping[str, Any]]
) -> Path:
    """Write ``out_dir/report.html`` (directory created if needed) and return its path.
    ``sections`` are :class:`Section` objects or dicts with the same keys."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicroquantError(f"cannot create report directory {out}: {e.strerror}") from None
    page = render_html(title, [_section(s) for s in sections])
    from microquant.api import write_file_atomic

    return write_file_atomic(page.encode("utf-8"), out / REPORT_NAME)


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The page as a string (see module docstring)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style>",
        f"<script>{_SCRIPT}</script></head>",
        f"<body><h1>{esc(title)}</h1>",
    ]
    for s in sections:
        parts.append(f"<section><h2>{esc(s.heading)}</h2>")
        if s.text:
            parts.append(f"<p>{esc(s.text)}</p>")
        if s.table is not None:
            parts.append(_table(s.table))
        if s.image is not None:
            data = base64.b64encode(_png_bytes(s.image)).decode("ascii")
            parts.append(f'<img alt="{esc(s.heading)}" src="data:image/png;base64,{data}">')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _section(s: Section | Mapping[str, Any]) -> Section:
    if isinstance(s, Section):
        return s
    if not isinstance(s, Mapping) or "heading" not in s:
        raise MicroquantError("a report section needs a 'heading' (and a table, image or text)")
    unknown = set(s) - {"heading", "table", "image", "text"}
    if unknown:
        raise MicroquantError(f"unknown report section key {sorted(unknown)[0]!r}")
    return Section(**s)


def _png_bytes(image: bytes | str | Path) -> bytes:
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
    else:
        p = Path(image)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise MicroquantError(f"cannot read image {p}: {e.strerror}") from None
    if not data.startswith(PNG_SIGNATURE):
        raise MicroquantError("report images must be PNG files")
    return data


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>(empty)</p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cls = ' class="num"' if num else ""
            cells.append(f"<td{cls}>{html.escape(format_value(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"
    )
