"""Declarative shape / dtype / finiteness checks that raise ``ShapeError`` with a useful message."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relook.errors import ShapeError


def check_shape(x, dims: Sequence[str | int], name: str = "array", sizes: dict | None = None) -> dict:
    """Check that ``x.shape`` matches ``dims``; returns the symbol -> size bindings.

    ``dims`` holds ints (exact sizes) or symbols such as ``"N"``; a symbol must take one size everywhere
    it appears, including across calls that share ``sizes``. ``"*"`` matches any size.
    ``check_shape(desc, ["N", "D"], "local_desc")``.
    """
    sizes = {} if sizes is None else sizes
    shape = tuple(x.shape)
    if len(shape) != len(dims):
        raise ShapeError(f"{name}: expected {len(dims)} dims {list(dims)}, got shape {shape}")
    for axis, (d, s) in enumerate(zip(dims, shape)):
        if d == "*":
            continue
        if isinstance(d, int):
            if s != d:
                raise ShapeError(f"{name}: expected size {d} on axis {axis} (dims {list(dims)}), got shape {shape}")
        elif d in sizes and sizes[d] != s:
            raise ShapeError(f"{name}: axis {axis} ({d}) is {s} but {d}={sizes[d]} elsewhere; shape {shape}")
        else:
            sizes[d] = s
    return sizes


def check_finite(x: np.ndarray, name: str = "array") -> None:
    """Raise ``ShapeError`` when a float array holds NaN or inf."""
    if np.issubdtype(x.dtype, np.floating) and x.size and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ShapeError(f"{name}: {bad} non-finite value(s) (NaN/inf)")
