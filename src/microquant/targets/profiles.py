"""Microcontroller target profiles: built-in TOML data files or the user's own file.

A profile is a small TOML table (``profiles/*.toml`` in this package)::

    name = "nrf52840"
    description = "Nordic nRF52840, Cortex-M4F @ 64 MHz"   # optional
    core = "cortex-m4f"
    clock_mhz = 64
    fpu = true
    dsp = true                # DSP / SIMD instructions usable by int8 kernels
    flash = "1MB"             # size string ("512KB", "1MB", "1024") or integer bytes
    ram = "256KB"
    flash_external = false    # optional: flash is an external (QSPI/SPI) chip

Sizes use binary units (``1KB`` = 1024 bytes), as MCU datasheets do.

Example:
    >>> load_target("nrf52840").ram
    262144
    >>> parse_size("1.5KB")
    1536
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from microquant.errors import MicroquantError

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
          "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: str | int, what: str = "size") -> int:
    """``"64KB"`` -> 65536, ``"1MB"`` -> 1048576, ``"1024"``/1024 -> 1024 (binary units)."""
    if isinstance(value, bool):
        raise MicroquantError(f"invalid {what} {value!r}: expected e.g. 64KB, 1MB or 1024")
    if isinstance(value, int):
        if value < 0:
            raise MicroquantError(f"invalid {what} {value}: must not be negative")
        return value
    m = _SIZE.match(str(value))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise MicroquantError(f"invalid {what} {value!r}: expected e.g. 64KB, 1MB or 1024")
    n = float(m.group(1)) * _UNITS[unit]
    if n != int(n):
        raise MicroquantError(f"invalid {what} {value!r}: not a whole number of bytes")
    return int(n)


def format_size(n: int) -> str:
    """Bytes as a short human string: ``65536`` -> ``"64.0 KB"``."""
    sign, n = ("-", -n) if n < 0 else ("", n)
    if n < 1024:
        return f"{sign}{n} B"
    if n < 1024**2:
        return f"{sign}{n / 1024:.1f} KB"
    return f"{sign}{n / 1024**2:.2f} MB"


@dataclass(frozen=True)
class Target:
    name: str
    core: str
    clock_mhz: float
    fpu: bool
    dsp: bool
    flash: int  # bytes
    ram: int  # bytes
    description: str = ""
    flash_external: bool = False
    source: str = ""  # where the profile came from

    @property
    def is_cortex_m0(self) -> bool:
        return self.core.startswith("cortex-m0")


_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # field: (accepted TOML types, required)
    "name": (str, True),
    "core": (str, True),
    "clock_mhz": ((int, float), True),
    "fpu": (bool, True),
    "dsp": (bool, True),
    "flash": ((str, int), True),
    "ram": ((str, int), True),
    "description": (str, False),
    "flash_external": (bool, False),
}


def target_from_dict(data: dict[str, Any], source: str) -> Target:
    """Validate one profile table; errors name the file and the field."""
    for key in data:
        if key not in _FIELDS:
            raise MicroquantError(f"{source}: unknown field {key!r} (known: "
                                  + ", ".join(_FIELDS) + ")")
    values: dict[str, Any] = {}
    for key, (types, required) in _FIELDS.items():
        if key not in data:
            if required:
                raise MicroquantError(f"{source}: missing required field {key!r}")
            continue
        v = data[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
            raise MicroquantError(f"{source}: field {key!r} has invalid value {v!r}")
        values[key] = v
    for key in ("flash", "ram"):
        try:
            values[key] = parse_size(values[key], key)
        except MicroquantError as e:
            raise MicroquantError(f"{source}: field {key!r}: {e}") from None
        if values[key] <= 0:
            raise MicroquantError(f"{source}: field {key!r} must be positive")
    if values["clock_mhz"] <= 0:
        raise MicroquantError(f"{source}: field 'clock_mhz' must be positive")
    if not values["name"].strip():
        raise MicroquantError(f"{source}: field 'name' is empty")
    values["clock_mhz"] = float(values["clock_mhz"])
    return Target(source=source, **values)


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _profile_dir():
    return resources.files("microquant.targets") / "profiles"


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MicroquantError(f"{source}: malformed TOML ({e})") from None


def builtin_targets() -> dict[str, Target]:
    """All built-in profiles by (lower-case) name."""
    out = {}
    for entry in sorted(_profile_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            t = target_from_dict(_parse_toml(entry.read_text("utf-8"), entry.name), entry.name)
            out[t.name.lower()] = t
    return out


def known_targets() -> list[str]:
    return sorted(builtin_targets())


def load_target(name: str) -> Target:
    """A built-in profile by name (case-insensitive)."""
    targets = builtin_targets()
    try:
        return targets[name.strip().lower()]
    except KeyError:
        raise MicroquantError(f"unknown target {name!r}; known targets: "
                              + ", ".join(sorted(targets))) from None


def load_target_file(path: str | Path) -> Target:
    """A user profile from a TOML file (same fields as the built-in ones)."""
    p = Path(path)
    if not p.is_file():
        raise MicroquantError(f"target file not found: {p}")
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MicroquantError(f"cannot read target file {p}: {e}") from None
    return target_from_dict(_parse_toml(text, str(p)), str(p))


def resolve_targets(names: list[str] | None = None,
                    target_file: str | Path | None = None) -> list[Target]:
    """Targets selected by name and/or file; all built-ins when neither is given."""
    wanted = [n.strip() for item in names or [] for n in item.split(",") if n.strip()]
    out = [load_target(n) for n in wanted]
    if target_file is not None:
        out.append(load_target_file(target_file))
    if not out:
        out = list(builtin_targets().values())
    return out
