"""Where and when numbers were made: date, relook version, git commit, Python and torch, CPU, cores, GPU.

A results table in an appendix needs them beside the weights: the same run on another machine or another
commit may give other times (and, for float round-off, other ties). Everything here is read, never
guessed: a field that cannot be read says "unknown".
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    """Short commit of the relook source tree, or "unknown" (an installed wheel has no git)."""
    return _git("rev-parse", "--short", "HEAD") or "unknown"


def git_dirty() -> bool | None:
    """Whether the source tree has uncommitted changes to tracked files (None: not a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else ``platform.processor()``), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpus() -> list[str]:
    """Names of the CUDA devices torch sees (empty: CPU only). Imports torch (already loaded by a run)."""
    try:
        import torch  # lazy: the module is imported by the CLI before any stage needs torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def relook_version() -> str:
    """The package's ``__version__`` (read off the loaded package: importing it here would be a cycle),
    else the installed distribution's version."""
    version = getattr(sys.modules.get("relook"), "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version("relook")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def environment() -> dict[str, str]:
    """Flat strings: ``date`` (UTC, ISO 8601), ``relook``, ``git``, ``python``, ``torch``, ``platform``,
    ``cpu``, ``cores`` (usable / present), ``memory``, ``gpu``."""
    try:
        # lazy: optional dependency (absent on some installs)
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "unknown"
    dirty = git_dirty()
    names = gpus()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "relook": relook_version(),
        "git": git_commit() + (" (with uncommitted changes)" if dirty else ""),
        "python": platform.python_version(),
        "torch": torch_version,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": f"{usable} usable of {os.cpu_count()}",
        "memory": memory,
        "gpu": ", ".join(names) if names else "none (CPU only)",
    }


def describe(env: dict[str, str]) -> str:
    """One line: ``relook 0.1.0 (git abc1234), 2026-12-07 21:00:00 UTC; CPU ..., 2 usable of 16 cores, ...``."""
    return (
        f"relook {env.get('relook', '?')} (git {env.get('git', '?')}), {env.get('date', '?')}; "
        f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, {env.get('memory', '?')} RAM, GPU "
        f"{env.get('gpu', '?')}; Python {env.get('python', '?')}, torch {env.get('torch', '?')}"
    )
