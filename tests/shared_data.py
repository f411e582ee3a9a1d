"""Where the real photos and geometry of ``../shared/data`` live (beside the clone), and what a test does
when something it needs is not on this machine.

A test that reads the shared data (``shared(...)``) or needs another outside resource (headless Chromium)
calls ``unavailable(reason)`` when it is missing: on a developer's machine the test is skipped with that
reason (``pytest -rs`` lists them, ``make test`` shows them); under CI (``CI=true``) it fails, because CI
has the data and must run every test. ``RELOOK_SHARED_DATA=DIR`` points the tests at another copy (or, set
to a missing folder, shows what a machine without it does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

SHARED_DATA = Path(
    os.environ.get("RELOOK_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions, GitLab and most runners set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test (or the whole module, at import) with ``reason``; under CI fail instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: every test must run here)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def shared(*parts: str) -> Path:
    """A path under ``../shared/data``; when it is missing the test skips (fails under CI) saying what is."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        unavailable(f"real data {path} missing: these tests read ../shared/data beside the repository")
    return path
