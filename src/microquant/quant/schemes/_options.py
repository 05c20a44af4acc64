"""Option checking shared by the scheme modules."""

from __future__ import annotations

from typing import Any

from microquant.errors import MicroquantError


def check_options(scheme: str, opts: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Raise a clear error for options a scheme does not know (typos would otherwise be
    silently ignored)."""
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise MicroquantError(
            f"scheme {scheme!r} has no option {unknown[0]!r}; options: {', '.join(allowed)}"
        )
