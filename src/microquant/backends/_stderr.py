"""Capture what native code writes to file descriptor 2.

TFLM and LiteRT report the reason for a failure (a kernel's failed ``TF_LITE_ENSURE``,
an arena that is too small) only on the process's stderr; the Python exception just says
"failed". We redirect fd 2 into a temporary file around such calls so the reason can go
into our error message instead of scrolling past.

Example:
    >>> with capture_stderr() as log:
    ...     _ = os.write(2, b"kernel says no\\n")
    >>> log.text()
    'kernel says no\\n'
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


class CapturedText:
    def __init__(self) -> None:
        self._text = ""

    def text(self) -> str:
        return self._text


@contextmanager
def capture_stderr() -> Iterator[CapturedText]:
    """Redirect fd 2 to a temp file for the duration; ``.text()`` afterwards."""
    out = CapturedText()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out._text = tmp.read().decode("utf-8", "replace")
