"""``default_conf`` handling shared by every configurable part (rerankers, extractors, models), and the
one config language of relook's commands: YAML files that compose (later files override earlier ones key by
key, nested mappings merge, lists replace), then ``key.sub=value`` overrides (values parsed as YAML).
``relook.experiment`` (the stages) and ``relook.train.config`` (``relook train ...``) both read their
configs with ``read_config_file``, ``merge_config`` and ``apply_override``."""

from __future__ import annotations

import copy
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

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


# -- composing config files and overrides -------------------------------------------------------------------
def read_config_file(path: str | Path) -> dict:
    """The mapping of the YAML file ``path``; one-line ``ConfigError`` naming the file when it is missing, not
    UTF-8 text, not valid YAML or not a mapping (an empty file is ``{}``)."""
    f = Path(path)
    if not f.exists():
        raise ConfigError(f"{f}: config file not found")
    try:
        data = yaml.safe_load(f.read_text(encoding="utf8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{f}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{f}: invalid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{f}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def merge_config(base: dict, new: Mapping, where: str, known: Mapping, path: str = "") -> dict:
    """``base`` updated with ``new`` (nested mappings merge, anything else replaces); a top-level key not in
    ``known`` raises ``ConfigError`` naming ``where`` (the file) and the key."""
    out = copy.deepcopy(base)
    for key, value in new.items():
        if not path and key not in known:
            raise ConfigError(f"{where}: unknown config key {key!r}; known: {sorted(known)}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value, where, known, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(conf: dict, item: str, known: Mapping) -> None:
    """Apply the override ``item`` (``key.sub=value``, ``rerankers.0.top_k=50``; the value parsed as YAML) to
    ``conf`` in place; a top-level key not in ``known`` or a path through a non-container is a ``ConfigError``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.split(".")
    if keys[0] not in known:
        raise ConfigError(f"override {item!r}: unknown config key {keys[0]!r}; known: {sorted(known)}")
    node = conf
    for k in keys[:-1]:
        node = _child(node, k, item)
    try:
        value = parse_value(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(node, list):
        node[_index(node, keys[-1], item)] = value
    else:
        node[keys[-1]] = value


#: a number in scientific notation that YAML 1.1 (PyYAML) reads as a string: 1e-3, 5E4 (no dot)
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_value(raw: str) -> Any:
    """An override's value as YAML (numbers, booleans, null, lists, mappings), with ``1e-3`` a number as a
    user means it (PyYAML's YAML 1.1 reads it as the string '1e-3')."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


def _index(node: list, key: str, item: str) -> int:
    """``key`` as an index into the list ``node`` (``rerankers.0.top_k``); ``ConfigError`` naming ``item``."""
    if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
        raise ConfigError(f"override {item!r}: {key!r} is not an index of a list of {len(node)} item(s)")
    return int(key)


def _child(node: Any, key: str, item: str) -> Any:
    """The mapping or list under ``key`` of ``node`` while walking an override's dotted path (a missing
    mapping is created)."""
    if isinstance(node, list):
        child = node[_index(node, key, item)]
        if isinstance(child, str):  # `- sift` shorthand: make it a mapping so options can be set
            child = node[int(key)] = {"name": child}
    elif isinstance(node, dict):
        child = node.setdefault(key, {})
    else:
        child = None
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"override {item!r}: {key!r} is not a mapping or list (it is {child!r})")
    return child
