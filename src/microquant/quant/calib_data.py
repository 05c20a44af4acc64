"""Loading calibration / evaluation data from a ``.npz`` file.

Format: one array per graph input, keyed by the input's name (``x`` is also accepted
for a single-input model). The first axis indexes samples; each sample has the input's
shape, with or without its leading batch-1 dimension. ``y`` / ``labels`` (used by
``eval --data``) are ignored here; any other extra key is an error (likely a typo).

Dtype: floating point only (float16/32/64, returned as float32). Integer arrays are
rejected rather than cast: integer data is usually raw (e.g. uint8 pixels 0..255) while
the float model expects its own preprocessing, and a silent cast would calibrate every
range on the wrong scale.

Example:
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(p, x=np.zeros((5, 4, 4, 1), np.float32))
    >>> load_calibration(p, ["input"], [(1, 4, 4, 1)])["input"].shape
    (5, 1, 4, 4, 1)
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from microquant.errors import MicroquantError

IGNORED_KEYS = ("y", "labels")


def _open_npz(path: str | Path) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise MicroquantError(f"data file not found: {p}")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MicroquantError(f"{p} is not a readable .npz file ({type(e).__name__})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise MicroquantError(f"{p} holds a single .npy array, expected a .npz archive (np.savez)")
    try:
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MicroquantError(f"{p} is not a readable .npz file ({type(e).__name__})") from None


def _sample_shape(arr: np.ndarray, shape: tuple[int, ...], key: str, p: Path) -> np.ndarray:
    """``arr`` as ``(N, *shape)``; a sample may omit the leading batch-1 dimension."""
    got = tuple(arr.shape[1:])
    if got == shape:
        return arr
    if shape and shape[0] == 1 and got == shape[1:]:
        return arr.reshape((arr.shape[0], *shape))
    want = f"(N, {', '.join(map(str, shape))})"
    if shape and shape[0] == 1:
        want += f" or (N, {', '.join(map(str, shape[1:]))})"
    raise MicroquantError(f"{p}: array {key!r} has shape {arr.shape}, expected {want}")


def load_calibration(
    path: str | Path, input_names: Sequence[str], input_shapes: Sequence[tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """Read ``path`` and return ``{input name: float32 array (N, *input shape)}``.

    Every problem (missing/corrupt file, missing or unexpected key, wrong shape or dtype,
    no samples, NaN/Inf, different sample counts per input) raises a one-line
    :class:`MicroquantError`.
    """
    p = Path(path)
    arrays = _open_npz(p)
    if not arrays:
        raise MicroquantError(f"{p} contains no arrays")
    names = list(input_names)
    keys = {}
    for name in names:
        if name in arrays:
            keys[name] = name
        elif len(names) == 1 and "x" in arrays:
            keys[name] = "x"
    expected = ", ".join(repr(n) for n in names) + (" (or 'x')" if len(names) == 1 else "")
    missing = [n for n in names if n not in keys]
    if missing:
        found = ", ".join(repr(k) for k in arrays)
        raise MicroquantError(
            f"{p}: no array for input {missing[0]!r}; expected keys {expected}, found {found}"
        )
    extra = [k for k in arrays if k not in keys.values() and k not in IGNORED_KEYS]
    if extra:
        raise MicroquantError(
            f"{p}: unexpected array {extra[0]!r}; expected keys {expected}"
            f" (plus optional {'/'.join(IGNORED_KEYS)})"
        )
    out: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for name, shape in zip(names, input_shapes, strict=True):
        key = keys[name]
        arr = arrays[key]
        if arr.dtype.kind != "f":
            raise MicroquantError(
                f"{p}: array {key!r} has dtype {arr.dtype}, expected float32 "
                "(apply the model's input preprocessing first)"
            )
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise MicroquantError(f"{p}: array {key!r} has no samples (shape {arr.shape})")
        arr = _sample_shape(arr, tuple(int(d) for d in shape), key, p)
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argwhere(bad.reshape(arr.shape[0], -1).any(axis=1))[0, 0])
            raise MicroquantError(
                f"{p}: array {key!r} has {int(bad.sum())} NaN/Inf values (first in sample {first})"
            )
        out[name] = np.ascontiguousarray(arr, dtype=np.float32)
        counts[key] = arr.shape[0]
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k}: {n}" for k, n in counts.items())
        raise MicroquantError(f"{p}: inputs have different sample counts ({detail})")
    return out


def load_labels(path: str | Path) -> np.ndarray | None:
    """The ``y`` (or ``labels``) array of a data file, or None when it has none."""
    arrays = _open_npz(path)
    for key in IGNORED_KEYS:
        if key in arrays:
            return arrays[key]
    return None
