"""Where the real photos and geometry of ``../shared/data`` live (beside the clone, in CI too).

Tests that read them fail, never skip, when the folder is missing: CI has it.
"""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under ``../shared/data``; an ``AssertionError`` saying what is missing if it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    assert path.exists(), f"{path} missing: tests read the real data in ../shared/data beside the repository"
    return path
