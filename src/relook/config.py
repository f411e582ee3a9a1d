"""``default_conf`` handling shared by every configurable part (rerankers, extractors, models)."""
from __future__ import annotations

from typing import Any, Mapping

from relook.errors import ConfigError


def merge_conf(default: Mapping[str, Any], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """``default`` updated with ``given``; a key not in ``default`` raises ``ConfigError`` naming ``owner``."""
    unknown = sorted(set(given) - set(default))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {unknown}; known: {sorted(default)}")
    return {**default, **given}
