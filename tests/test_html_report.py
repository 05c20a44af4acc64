"""The self-contained HTML report: structure (parsed here) and rendering (headless Chromium).

The browser tests need the Debian package ``chromium``
(``apt-get update && apt-get install -y chromium``) and skip cleanly without it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from microquant.errors import MicroquantError
from microquant.report import plots
from microquant.report.html import REPORT_NAME, Section, write_html_report

TABLE_A = [{"layer": f"conv{i}", "sqnr": 30.0 + i, "fix": None} for i in range(3)]
TABLE_B = [{"x": i, "note": "<b>not bold</b> & co"} for i in range(5)]


class _Page(HTMLParser):
    """Collects tables (rows of cell texts), image sources and text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.tags: list[str] = []
        self.body_attrs: dict[str, str | None] = {}
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "body":
            self.body_attrs = a
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> tuple[Path, bytes]:
    d = tmp_path_factory.mktemp("png")
    rng = np.random.default_rng(0)
    hist = plots.weight_histograms(
        {"conv": rng.standard_normal(500) * 0.1, "fc": rng.standard_normal(300)}, d / "h.png"
    )
    rows = [
        {"label": "a", "sqnr_isolated_db": 30.0, "sqnr_cumulative_db": 28.0},
        {"label": "b", "sqnr_isolated_db": 12.0, "sqnr_cumulative_db": 11.0},
    ]
    chart = plots.sqnr_chart(rows, d / "s.png").read_bytes()
    return hist, chart


def _sections(pngs) -> list:
    hist, chart = pngs
    return [
        Section("Layers", table=TABLE_A, text="Per-layer numbers."),
        {"heading": "Notes", "table": TABLE_B},
        Section("Histograms", image=hist),
        {"heading": "SQNR", "image": chart},
    ]


def test_page_structure(tmp_path, pngs):
    path = write_html_report(tmp_path / "new_dir", "Report <1>", _sections(pngs))
    assert path == tmp_path / "new_dir" / REPORT_NAME
    text = path.read_text()
    page = _parse(text)
    assert [len(t) for t in page.tables] == [1 + 3, 1 + 5]  # header + rows
    assert page.tables[0][0] == ["layer", "sqnr", "fix"]
    assert page.tables[0][2] == ["conv1", "31", "-"]
    assert page.tables[1][1][1] == "<b>not bold</b> & co"  # escaped, shown as text
    assert "b" not in page.tags and "<title>Report &lt;1&gt;</title>" in text
    assert len(page.images) == 2
    decoded = [base64.b64decode(s.split(",", 1)[1]) for s in page.images]
    assert decoded == [pngs[0].read_bytes(), pngs[1]]
    # Self-contained: no external references at all.
    assert "http://" not in text and "https://" not in text and 'src="file' not in text


def test_write_is_atomic_and_overwrites(tmp_path, pngs):
    write_html_report(tmp_path, "one", [Section("a", text="first")])
    path = write_html_report(tmp_path, "two", [Section("b", text="second")])
    assert "second" in path.read_text() and "first" not in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [REPORT_NAME]  # no temp files left


def test_user_errors(tmp_path):
    with pytest.raises(MicroquantError, match="PNG"):
        write_html_report(tmp_path, "t", [Section("img", image=b"GIF89a...")])
    with pytest.raises(MicroquantError, match="cannot read image"):
        write_html_report(tmp_path, "t", [Section("img", image=tmp_path / "none.png")])
    with pytest.raises(MicroquantError, match="unknown report section key 'tabel'"):
        write_html_report(tmp_path, "t", [{"heading": "h", "tabel": []}])
    with pytest.raises(MicroquantError, match="heading"):
        write_html_report(tmp_path, "t", [{"table": []}])
    (tmp_path / "file").write_text("x")
    with pytest.raises(MicroquantError, match="cannot create report directory"):
        write_html_report(tmp_path / "file" / "sub", "t", [])
    assert not (tmp_path / REPORT_NAME).exists()


# -- headless Chromium ----------------------------------------------------------------
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (apt-get update && apt-get install -y chromium)"
)


def _chromium(*args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="mq-chromium-")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
    ]
    env = dict(os.environ, HOME=profile)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@needs_chromium
def test_chromium_renders_tables_and_images(tmp_path, pngs):
    path = write_html_report(tmp_path, "layer report", _sections(pngs))
    page = _parse(_chromium("--dump-dom", path.resolve().as_uri()).stdout)
    assert page.body_attrs.get("data-images-ready") == "2/2"  # both decoded, naturalWidth > 0
    assert [len(t) for t in page.tables] == [4, 6]

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,2000", path.resolve().as_uri())
    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1200)
    dark = (img.mean(axis=2) < 0.5).mean()
    colored = (img.std(axis=2) > 0.1).mean()  # the plots' bars
    assert dark > 0.005 and colored > 0.005, (dark, colored)


@needs_chromium
def test_chromium_check_catches_a_broken_image(tmp_path, pngs):
    """The decode check can fail: a PNG signature followed by garbage is not drawn."""
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10
    path = write_html_report(
        tmp_path, "broken", [Section("ok", image=pngs[1]), Section("bad", image=broken)]
    )
    page = _parse(_chromium("--dump-dom", path.resolve().as_uri()).stdout)
    assert page.body_attrs.get("data-images-ready") == "1/2"
