"""Small readers for the text / CSV / pickle files of the official layouts; every error names the file."""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path
from typing import Any

from relook.errors import DataError


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else ``DataError`` saying what the file is."""
    if not path.exists():
        raise DataError(f"{path}: not found ({what}); point `root` at the dataset's official folder")
    return path


def read_columns(path: Path, ncols: int, what: str, header: bool = False) -> list[list[str]]:
    """Whitespace-separated rows of exactly ``ncols`` fields (blank lines skipped; optional header line)."""
    require(path, what)
    rows = []
    with open(path, encoding="utf8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if header and lineno == 1:
                continue
            parts = line.split()
            if not parts:
                continue
            if len(parts) != ncols:
                raise DataError(f"{path}:{lineno}: expected {ncols} columns, found {len(parts)}: {line.strip()!r:.80}")
            rows.append(parts)
    return rows


def read_csv(path: Path, columns: list[str], what: str) -> list[dict[str, str]]:
    """CSV rows as dicts; the header must contain ``columns`` and every row the header's field count."""
    require(path, what)
    with open(path, encoding="utf8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        try:
            head = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file, expected a CSV header with {columns}") from None
        missing = [c for c in columns if c not in head]
        if missing:
            raise DataError(f"{path}: CSV header {head} lacks column(s) {missing}")
        rows = []
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(head):
                raise DataError(f"{path}:{lineno}: expected {len(head)} columns, found {len(row)}")
            rows.append(dict(zip(head, row)))
    return rows


def to_int(value: str, path: Path, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}: {what} {value!r} is not an integer") from None


class _RestrictedUnpickler(pickle.Unpickler):
    """Only plain containers, strings, numbers and numpy arrays: no code runs while loading."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
    }
    SAFE_BUILTINS = {
        "object",
        "bytes",
        "bytearray",
        "set",
        "frozenset",
        "complex",
        "int",
        "float",
        "str",
        "list",
        "dict",
        "tuple",
        "bool",
        "unicode",
        "long",
    }

    def find_class(self, module: str, name: str) -> Any:
        safe = module in ("builtins", "__builtin__") and name in self.SAFE_BUILTINS
        if not safe and (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path: Path, what: str) -> Any:
    """Load a ground-truth pickle the user pointed us at, with a restricted unpickler.

    Pickles are only ever read from a path the user gave (the dataset root); nothing is downloaded.
    Python-2 pickles (the official Revisited Oxford/Paris and SfM-120k files) load with latin-1 strings.
    """
    require(path, what)
    data = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        RecursionError,
        MemoryError,
    ) as e:
        reason = " ".join(str(e).split())[:200]
        raise DataError(
            f"{path}: not a readable {what} pickle ({type(e).__name__}: {reason}); truncated or wrong file?"
        ) from None
