"""``default_conf`` handling shared by every configurable part (rerankers, extractors, models)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from relook.errors import ConfigError


def merge_conf(default: Mapping[str, Any], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """``default`` updated with ``given``; a key not in ``default``, or a value of another type than the
    default's (``check_type``), raises ``ConfigError`` naming ``owner`` and the key."""
    unknown = sorted(set(given) - set(default))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {unknown}; known: {sorted(default)}")
    for key, value in given.items():
        check_type(value, default[key], f"{owner}: option {key!r}")
        check_size(key, value, f"{owner}: option {key!r}")
    return {**default, **given}


def is_size_key(key: str) -> bool:
    """Options that are sizes or counts of dimensions (``image_size``, ``resize``, ``batch_size``,
    ``local_dim``, ...): zero or less is never meaningful for them (null keeps each one's "off" meaning)."""
    return key.endswith(("size", "_dim"))


def check_size(key: str, value: Any, where: str) -> None:
    """``ConfigError`` when the size option ``key`` (``is_size_key``) is a number below 1."""
    if is_size_key(key) and isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 1:
        raise ConfigError(f"{where} is a size and must be >= 1 (or null), got {value!r}")


#: the default's type -> the types a given value may have (null is always allowed: "use the built-in")
_ACCEPTS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (numbers.Integral,),
    float: (numbers.Real,),
    str: (str,),
    list: (list, tuple),
    tuple: (list, tuple),
    dict: (dict,),
}
_NAMES = {
    bool: "a boolean (true/false)",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    tuple: "a list",
    dict: "a mapping",
}


def check_count(value: Any, where: str, minimum: int = 1) -> int:
    """``value`` as an int, or ``ConfigError`` naming ``where`` when it is null, not an integer (a bool or
    1.5 is not) or below ``minimum``: for depths and sizes that have no "use the built-in" meaning of null."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_type(value: Any, default: Any, where: str) -> None:
    """``ConfigError`` when ``value`` cannot stand where the documented default is ``default``.

    The default's type sets the rule (an int default takes ints, a float default ints or floats, a bool
    default only true/false) and a positive numeric default takes no negative value (sizes, counts,
    thresholds); a default of None, or a value of None, is not checked.
    """
    if value is None or default is None:
        return
    kind = type(default)
    accepts = _ACCEPTS.get(kind)
    if accepts is None:
        return
    ok = isinstance(value, accepts) and not (isinstance(value, bool) and kind is not bool)
    if not ok:
        raise ConfigError(f"{where} must be {_NAMES[kind]}, got {value!r} ({type(value).__name__})")
    if kind in (int, float) and default > 0 and value < 0:
        raise ConfigError(f"{where} must be >= 0, got {value!r}")
