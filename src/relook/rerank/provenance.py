"""What produced a reranker's scores, as flat strings for a ranking's metadata and one line for a report.

A reranker's label says little: ``gv`` with mutual nearest neighbours and ``gv`` with LightGlue print the
same name, and two RRT rows differ only by their checkpoint. ``reranker_meta`` records, at rerank time,
every resolved option (``reranker.settings``, JSON), each set of weights the reranker loaded itself (any
``WeightsRecord`` attribute, e.g. gv's ``lightglue_weights``: name, package, version, sha256) and the
path and sha256 of every file option (``checkpoint``, ``pseudo_gt``). ``describe_reranker`` turns those
keys back into one line: matcher and its weights, the robust fit and its thresholds, top-k, checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from relook.weights import WeightsRecord, file_sha256

#: options naming a file whose content decides the scores
FILE_OPTIONS = ("checkpoint", "pseudo_gt")
#: options that change speed or placement, not scores (left out of the one-line description)
RUNTIME_OPTIONS = ("chunk_size", "device", "lightglue_device", "workers", "batch_size", "num_workers")


def reranker_meta(reranker) -> dict[str, str]:
    """Flat provenance of a built reranker: ``reranker.name``, ``reranker.settings`` (its resolved
    ``conf`` as sorted JSON), ``reranker.<attr>*`` for each ``WeightsRecord`` it holds, and
    ``reranker.<option>`` + ``.sha256`` for each file option that names an existing file."""
    meta = {
        "reranker.name": reranker.name,
        "reranker.settings": json.dumps(reranker.conf, sort_keys=True, default=str),
    }
    for attr, value in sorted(vars(reranker).items()):
        if isinstance(value, WeightsRecord):
            meta.update(value.as_meta(f"reranker.{attr}"))
    for key in FILE_OPTIONS:
        value = reranker.conf.get(key)
        if isinstance(value, (str, Path)) and value and Path(value).is_file():
            meta[f"reranker.{key}"] = str(Path(value).resolve())
            meta[f"reranker.{key}.sha256"] = file_sha256(value)
    return meta


def _settings(meta: dict) -> dict:
    try:
        value = json.loads(meta.get("reranker.settings", "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def describe_reranker(meta: dict) -> str:
    """One line from ``reranker_meta`` keys (or "" for a ranking made before they were recorded):
    for gv the matcher (and LightGlue's weights), model, estimator, inlier threshold and iterations;
    then the other scoring options, top-k, loaded weights and file options with their sha256."""
    conf = _settings(meta)
    if not conf:
        return ""
    parts = []
    if meta.get("reranker.name") == "gv":
        matcher = conf.get("matcher", "mnn")
        if matcher == "lightglue":
            parts.append(f"matcher LightGlue (filter {conf.get('lightglue_filter_threshold')})")
        else:
            extra = [
                f"ratio {conf['ratio']}" if conf.get("ratio") else "",
                f"L2 < {conf['max_distance']}" if conf.get("max_distance") else "",
            ]
            parts.append("matcher mutual nearest neighbours" + "".join(f", {x}" for x in extra if x))
        parts.append(
            f"{conf.get('model')} model by {conf.get('method')}, inlier threshold {conf.get('threshold')} px, "
            f"{conf.get('max_iters')} iterations, confidence {conf.get('confidence')}, seed {conf.get('seed')}, "
            f"{conf.get('max_local')} local features"
        )
        shown = {"matcher", "lightglue_filter_threshold", "lightglue_weights", "ratio", "max_distance", "model"}
        shown |= {"method", "threshold", "max_iters", "confidence", "seed", "max_local", "top_k", "preset"}
    else:
        shown = {"top_k", *FILE_OPTIONS}
    rest = {k: v for k, v in sorted(conf.items()) if k not in shown and k not in RUNTIME_OPTIONS and v is not None}
    if rest:
        parts.append(", ".join(f"{k}={v}" for k, v in rest.items()))
    parts.append(f"top-k {conf.get('top_k')}")
    prefixes = sorted({k.rsplit(".", 1)[0] for k in meta if k.endswith(".what") and k.startswith("reranker.")})
    for prefix in prefixes:
        parts.append(f"{prefix.split('.', 1)[1].replace('_', ' ')}: {meta.get(prefix)}")
    for key in FILE_OPTIONS:
        if meta.get(f"reranker.{key}"):
            parts.append(f"{key} {meta[f'reranker.{key}']} (sha256 {meta.get(f'reranker.{key}.sha256', '?')[:12]})")
        elif conf.get(key):
            parts.append(f"{key} {conf[key]} (file not found when reranking)")
    return "; ".join(parts)
