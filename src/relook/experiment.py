"""Experiment configs: YAML files that compose (dataset + extractors + shortlist + rerankers).

Later files override earlier ones key by key (nested dicts merge, lists replace), then ``key.sub=value``
overrides from the command line (values parsed as YAML). Unknown keys raise ``ConfigError`` naming the
file. The resolved config is saved next to the outputs (``<out>/config.yaml``).

Keys::

    dataset:    {name: co3d_retrieve, root: PATH, ...reader options}
    extractors: [{name: cnn_local, ...options}, {name: sift}]   # each writes features/<label>/*.h5
    global:     cnn_local        # extractor label whose global_desc builds the shortlist (default: first)
    shortlist:  {k: 1000, index: flat}   # search depth (>= reranked top_k so metrics see a long list);
                                         # defaults: DEFAULTS["shortlist"] below, the one place they live
    rerankers:  [{name: gv, label: gv, features: sift, ...options}]  # features: extractor label to read
    rerank_junk: keep            # revisitop only: keep | drop junk images from the shortlist before reranking
    out:        runs/exp
    note:       "synthetic data, random-init weights"   # printed with the results table and report
    data_root:  null             # where dataset.root's files are now, if the dataset moved (in no fingerprint)

Relative paths are relative to the working directory, except in a file that says ``relative_paths: config``
(every saved ``<out>/config.yaml`` does): there they start at the file's folder, so a run can move with its
data (``relook.runpaths``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from relook.config import (
    apply_override,
    check_count,
    check_type,
    merge_conf,
    merge_config,
    read_config_file,
)
from relook.errors import ConfigError
from relook.io import atomic_path
from relook.runpaths import MARK_KEY, MARK_VALUE, from_file, stored_form

DEFAULTS: dict[str, Any] = {
    "dataset": {},
    "extractors": [],
    "global": None,
    "shortlist": {  # the shortlist stage's options, stated only here
        "k": 1000,  # gallery images per query from the global search (>= every reranker's top_k)
        "index": "flat",  # faiss index: flat (exact) | ivfpq (approximate, built on disk: relook.ondisk)
        "ivfpq": {},  # ivfpq options over relook.ondisk.IVFPQ_DEFAULTS (nlist, m, nbits, nprobe, ...)
    },
    "rerankers": [],
    "rerank_junk": "keep",
    "out": "runs/exp",
    "note": "",  # free text printed with every result (e.g. "synthetic data, random init")
    "data_root": None,  # where dataset.root's files are now (a moved dataset); None: dataset.root itself
}


def load_config(
    files: Sequence[str | Path] = (), overrides: Sequence[str] = (), check_options: bool = True
) -> dict[str, Any]:
    """Compose ``files`` over the defaults, then apply ``overrides`` like ``shortlist.k=200``.

    ``check_options=False``: every check but the extractors' and rerankers' options against their
    ``default_conf`` (which imports every registered part: torch, timm, OpenCV, seconds), for the line a
    long command prints before that (``plan_line``)."""
    conf = copy.deepcopy(DEFAULTS)
    for f in files:
        f = Path(f)
        data = read_config_file(f)
        try:
            data = from_file(data, f.parent)
        except ConfigError as e:
            raise ConfigError(f"{f}: {e}") from None
        conf = merge_config(conf, data, str(f), DEFAULTS)
        try:  # a wrong type or option is reported against the file that brought it
            _check_types(copy.deepcopy(conf), check_options)
        except ConfigError as e:
            raise ConfigError(f"{f}: {e}") from None
    for item in overrides:
        apply_override(conf, item, DEFAULTS)
    return validate(conf, check_options)


def _labelled(items: list, what: str) -> list[dict]:
    out, seen = [], set()
    for i, item in enumerate(items or []):
        if not isinstance(item, (str, dict)):
            raise ConfigError(f"{what}[{i}] must be a name or a mapping {{name: ..., option: value}}, got {item!r}")
        item = {"name": item} if isinstance(item, str) else dict(item)
        if "name" not in item:
            raise ConfigError(f"{what}[{i}] needs a 'name'")
        item.setdefault("label", item["name"])
        if item["label"] in seen:
            raise ConfigError(f"{what}: label {item['label']!r} used twice; give each a distinct 'label'")
        seen.add(item["label"])
        out.append(item)
    return out


def validate(conf: dict, check_options: bool = True) -> dict:
    """Check the composed config before any work starts: key types, shortlist bounds, and (``check_options``)
    each extractor's and reranker's options against its ``default_conf`` (unknown option, wrong type, negative
    size)."""
    _check_types(conf, check_options)
    labels = [e["label"] for e in conf["extractors"]]
    if conf["rerank_junk"] not in ("keep", "drop"):
        raise ConfigError(f"rerank_junk must be 'keep' or 'drop', got {conf['rerank_junk']!r}")
    if conf["global"] is not None and conf["global"] not in labels:
        raise ConfigError(f"global: {conf['global']!r} is not an extractor label; known: {labels}")
    return conf


def _check_types(conf: dict, check_options: bool = True) -> None:
    """Types and bounds of every key; labels the extractor and reranker lists in place."""
    for key in ("dataset", "shortlist", "out", "note", "rerank_junk"):
        check_type(conf[key], DEFAULTS[key], f"config key {key!r}")
    for key in ("global", "data_root"):
        if conf[key] is not None and not isinstance(conf[key], str):
            what = "an extractor label" if key == "global" else "a folder"
            raise ConfigError(f"config key {key!r} must be {what} (a string), got {conf[key]!r}")
    for key in ("extractors", "rerankers"):
        if conf[key] is not None and not isinstance(conf[key], list):
            raise ConfigError(f"config key {key!r} must be a list of {{name: ..., option: value}}, got {conf[key]!r}")
    for key, value in conf["shortlist"].items():
        if key not in DEFAULTS["shortlist"]:
            raise ConfigError(f"shortlist: unknown option {key!r}; known: {sorted(DEFAULTS['shortlist'])}")
        check_type(value, DEFAULTS["shortlist"][key], f"shortlist.{key}")
    shortlist = {**DEFAULTS["shortlist"], **conf["shortlist"]}
    check_count(shortlist["k"], "shortlist.k")  # null, 0 or negative: no search depth
    if not isinstance(shortlist["index"], str):
        raise ConfigError(f"shortlist.index must be a faiss index kind (flat, ivfpq), got {shortlist['index']!r}")
    conf["extractors"] = _labelled(conf["extractors"], "extractors")
    conf["rerankers"] = _labelled(conf["rerankers"], "rerankers")
    if check_options:
        _check_options(conf)


def _check_options(conf: dict) -> None:
    """Each extractor's and reranker's options against its registered ``default_conf``, without building it."""
    # lazy (start-up time): the registries import every built-in extractor and reranker (torch, timm, cv2)
    import relook.features

    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    import relook.rerank  # noqa: F401

    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features.base import EXTRACTORS

    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.rerank.base import RERANKERS, Reranker

    for kind, registry, skip in (
        ("extractors", EXTRACTORS, ("name", "label")),
        ("rerankers", RERANKERS, ("name", "label", "features")),
    ):
        for i, item in enumerate(conf[kind]):
            if not isinstance(item["name"], str):
                raise ConfigError(f"{kind}[{i}].name must be a string, got {item['name']!r}")
            factory = registry.get(item["name"])
            options, owner = {k: v for k, v in item.items() if k not in skip}, f"{kind}[{i}] ({item['label']})"
            if kind == "rerankers" and isinstance(factory, type) and issubclass(factory, Reranker):
                factory.check_conf(options, owner)  # DEFAULTS (top_k) + its default_conf, checked once
                continue
            default = getattr(factory, "default_conf", None)
            if isinstance(default, dict):
                merge_conf(default, options, owner)


#: extractor and reranker options that say which weights a part loads (what ``plan_line`` names)
_WEIGHT_KEYS = ("arch", "backbone", "weights", "pretrained", "checkpoint", "projection", "matcher", "features")


def plan_line(conf: dict, stage: str, labels: Sequence[str] | None = None) -> str:
    """One line saying what ``stage`` (run, extract, rerank) will do, on which data, with which weights:
    what a long command prints first, before the extractors and rerankers are imported (torch, timm,
    kornia: seconds on a loaded machine). ``labels``: the rerankers ``--methods`` picked. An extractor that
    names no weights says "default weights" (its registered default, known only once it is imported)."""
    ds = conf["dataset"]
    data = f"{ds.get('name', '?')} at {ds.get('root', '?')}" + (f" (split {ds['split']})" if "split" in ds else "")

    def part(item: dict, none: str) -> str:
        opts = [f"{k}={item[k]}" for k in _WEIGHT_KEYS if item.get(k) is not None]
        name = item["label"] if item["label"] == item["name"] else f"{item['label']}={item['name']}"
        return f"{name}({', '.join(opts) or none})"

    pieces = [f"{stage}: {data} -> {conf['out']}"]
    if stage in ("run", "extract"):
        pieces.append("extract " + (", ".join(part(e, "default weights") for e in conf["extractors"]) or "nothing"))
    if stage in ("run", "rerank"):
        chosen = [r for r in conf["rerankers"] if not labels or r["label"] in labels]
        pieces.append("rerank " + (", ".join(part(r, "defaults") for r in chosen) or "nothing"))
    return "; ".join(pieces) + " (loading the models...)"


def save_config(conf: dict, out_dir: str | Path) -> Path:
    """``<out_dir>/config.yaml``: ``conf`` with its paths in the stored form (relative ones relative to
    ``out_dir``, ``relook.runpaths``), readable from any working directory and after the run moved."""
    path = Path(out_dir) / "config.yaml"
    stored = {MARK_KEY: MARK_VALUE, **stored_form({**conf, "out": str(out_dir)}), "out": "."}  # the file's folder
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(stored, sort_keys=False))
    return path
