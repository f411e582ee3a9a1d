"""Experiment configs: YAML files that compose (dataset + extractors + shortlist + rerankers).

Later files override earlier ones key by key (nested dicts merge, lists replace), then ``key.sub=value``
overrides from the command line (values parsed as YAML). Unknown keys raise ``ConfigError`` naming the
file. The resolved config is saved next to the outputs (``<out>/config.yaml``).

Keys::

    dataset:    {name: co3d_retrieve, root: PATH, ...reader options}
    extractors: [{name: cnn_local, ...options}, {name: sift}]   # each writes features/<label>/*.h5
    global:     cnn_local        # extractor label whose global_desc builds the shortlist (default: first)
    shortlist:  {k: 1000, index: flat}   # search depth (>= reranked top_k so metrics see a long list)
    rerankers:  [{name: gv, label: gv, features: sift, ...options}]  # features: extractor label to read
    rerank_junk: keep            # revisitop only: keep | drop junk images from the shortlist before reranking
    out:        runs/exp
    note:       "synthetic data, random-init weights"   # printed with the results table and report
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import yaml

from relook.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "dataset": {},
    "extractors": [],
    "global": None,
    "shortlist": {"k": 1000, "index": "flat"},
    "rerankers": [],
    "rerank_junk": "keep",
    "out": "runs/exp",
    "note": "",                  # free text printed with every result (e.g. "synthetic data, random init")
}


def _merge(base: dict, new: dict, where: str, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in new.items():
        if not path and key not in DEFAULTS:
            raise ConfigError(f"{where}: unknown config key {key!r}; known: {sorted(DEFAULTS)}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, where, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose ``files`` over the defaults, then apply ``overrides`` like ``shortlist.k=200``."""
    conf = copy.deepcopy(DEFAULTS)
    for f in files:
        f = Path(f)
        if not f.exists():
            raise ConfigError(f"{f}: config file not found")
        try:
            data = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{f}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{f}: a config must be a mapping of keys, got {type(data).__name__}")
        conf = _merge(conf, data, str(f))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.split(".")
        if keys[0] not in DEFAULTS:
            raise ConfigError(f"override {item!r}: unknown config key {keys[0]!r}; known: {sorted(DEFAULTS)}")
        node = conf
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a mapping")
        node[keys[-1]] = yaml.safe_load(raw)
    return validate(conf)


def _labelled(items: list, what: str) -> list[dict]:
    out, seen = [], set()
    for i, item in enumerate(items or []):
        item = {"name": item} if isinstance(item, str) else dict(item)
        if "name" not in item:
            raise ConfigError(f"{what}[{i}] needs a 'name'")
        item.setdefault("label", item["name"])
        if item["label"] in seen:
            raise ConfigError(f"{what}: label {item['label']!r} used twice; give each a distinct 'label'")
        seen.add(item["label"])
        out.append(item)
    return out


def validate(conf: dict) -> dict:
    conf["extractors"] = _labelled(conf["extractors"], "extractors")
    conf["rerankers"] = _labelled(conf["rerankers"], "rerankers")
    if conf["rerank_junk"] not in ("keep", "drop"):
        raise ConfigError(f"rerank_junk must be 'keep' or 'drop', got {conf['rerank_junk']!r}")
    labels = [e["label"] for e in conf["extractors"]]
    if conf["global"] is not None and conf["global"] not in labels:
        raise ConfigError(f"global: {conf['global']!r} is not an extractor label; known: {labels}")
    return conf


def save_config(conf: dict, out_dir: str | Path) -> Path:
    from relook.io import atomic_path

    path = Path(out_dir) / "config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path
