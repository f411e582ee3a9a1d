"""Small file helpers: atomic writes so a crash never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from relook.errors import DataError, ResourceError


def ensure_dir(path: str | Path, what: str) -> Path:
    """Create folder ``path`` (and its parents) and check it is writable; ``DataError`` naming ``what`` and
    the path otherwise (a file in the way, no permission, a read-only file system)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataError(f"{what}: cannot create folder {path}: a file of that name exists") from None
    except OSError as e:
        raise DataError(f"{what}: cannot create folder {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(f"{what}: folder {path} is not writable")
    return path


#: free space a writer leaves on the disk beyond what it is about to write: HDF5 allocates metadata and
#: chunks beyond the raw bytes, and a write that meets a full disk inside HDF5's C layer can abort the process
RESERVE_BYTES = 64 * 2**20


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(path: str | Path, needed: int, what: str) -> None:
    """``ResourceError`` (exit 1) naming ``path`` when writing ``needed`` more bytes there would leave less
    than ``RESERVE_BYTES`` free: checked before each write, so the writer stops cleanly (everything written
    before stays readable) instead of meeting the full disk in the middle of a write."""

    free = free_bytes(path)
    if free < 2 * needed + RESERVE_BYTES:
        raise ResourceError(
            f"{path}: disk nearly full ({_mib(free)} free, {what} needs {_mib(needed)} and relook keeps "
            f"{_mib(RESERVE_BYTES)} spare); free some space and run the same command again (it resumes where it "
            "stopped)"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _drop_orphans(path: Path) -> None:
    """Remove temporary siblings of ``path`` left by writers killed mid-write (kill -9: no cleanup ran),
    those whose process no longer exists; a live writer's file is left alone."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # exists, owned by someone else
            pass


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success rename it onto ``path`` (atomic on POSIX).

    On an exception the temporary file is removed and ``path`` keeps its previous content; a full disk
    (ENOSPC, EDQUOT) becomes a ``ResourceError`` naming ``path`` (exit code 1).
    """
    path = Path(path)
    ensure_dir(path.parent, str(path))
    _drop_orphans(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise

        kept = "its previous content is unchanged" if path.exists() else "nothing was written"
        raise ResourceError(
            f"{path}: no space left on the device while writing it ({kept}); free some space and run the same "
            "command again"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def json_text(obj, **kwargs) -> str:
    """``json.dumps`` that always gives valid JSON: NaN and +-inf become ``null`` (an undefined metric, an
    unmeasured time) instead of the bare ``NaN`` that strict parsers reject; numpy scalars become numbers."""

    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x

    return json.dumps(clean(obj), allow_nan=False, **{"default": str, **kwargs})


def load_array(path: str | Path, what: str, keys: tuple[str, ...] = ()):
    """The array in a ``.npy`` file, or the arrays ``keys`` of a ``.npz`` (a dict), read with
    ``allow_pickle=False`` so no object array (and no code) is ever unpickled; ``DataError`` naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if isinstance(data, np.ndarray):
                return data
            with data:
                missing = [k for k in keys if k not in data.files]
                if missing:
                    raise DataError(f"{path}: {what} has no {missing[0]!r} array (found {sorted(data.files)})")
                return {k: data[k] for k in keys}
    except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a readable {what} (.npy/.npz without pickled objects): {first}") from None
