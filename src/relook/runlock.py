"""One relook process writing into a run folder at a time.

A command that writes into a run (``extract`` ... ``run``, ``evaluate``, ``report``) takes an exclusive
lock on the run folder; ``relook query`` takes a shared one (many queries may read a run at once, none
while it is written). The lock is the kernel's ``flock`` on the folder itself, so it ends with its process
however that ends (kill -9 included) and a lock left by a dead process is simply taken over. The holder of
the exclusive lock writes its pid into ``RUN/.relook.lock`` (removed on release), so the refused process can
say who holds the run: one line, ``RUN is in use by another relook process (pid N)``, exit code 1 (the same
command succeeds once the other one has finished). A pid file whose process is gone is stale and ignored.

Only rank 0 of a ``torchrun`` launch locks (the ranks of one command share the run). Where ``fcntl`` does
not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path

from relook.errors import ResourceError

try:  # POSIX only; without it (Windows) runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None  # type: ignore[assignment]

PID_FILE = ".relook.lock"

_held: dict[str, tuple[int, bool, Path]] = {}  # real path of the folder -> (fd, exclusive, folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def holder(folder: str | Path) -> str:
    """Who holds ``folder``'s lock, for the refusal message: ``pid N``, or a reader without a pid file."""
    try:
        pid = int((Path(folder) / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    if pid is not None and pid != os.getpid() and _alive(pid):
        return f"pid {pid}"
    return "a reader such as `relook query`"


def lock_run(folder: str | Path, exclusive: bool = True) -> None:
    """Hold ``folder``'s lock until ``release_all`` (or the process ends); ``ResourceError`` naming the
    folder and the holder's pid when another process holds it. A folder that does not exist is not locked
    (nothing there to protect), and a lock this process holds already is kept (a shared one upgraded)."""
    folder = Path(folder)
    if fcntl is None or os.environ.get("RANK", "0") != "0" or not folder.is_dir():
        return
    key = os.path.realpath(folder)
    if key in _held and (_held[key][1] or not exclusive):
        return
    fd = _held[key][0] if key in _held else os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        if key not in _held:
            os.close(fd)
        raise ResourceError(
            f"{folder} is in use by another relook process ({holder(folder)}); wait for it to finish "
            "or use another out folder"
        ) from None
    _held[key] = (fd, exclusive, folder)
    if exclusive:
        with contextlib.suppress(OSError):  # a read-only folder: locked all the same, without the pid
            (folder / PID_FILE).write_text(f"{os.getpid()}\n")


def release_all() -> None:
    """Release every run lock this process holds (the end of a CLI command)."""
    while _held:
        _, (fd, exclusive, folder) = _held.popitem()
        if exclusive:
            with contextlib.suppress(OSError):
                (folder / PID_FILE).unlink()
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases its flock


atexit.register(release_all)
