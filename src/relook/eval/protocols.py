"""Ground truth for the evaluation protocols (the metrics stay pure functions of it).

* Revisited Oxford / Paris (``revisitop_ground_truth``): each query's ``gnd`` entry has ``easy``,
  ``hard`` and ``junk`` gallery-index lists. Easy: positives = easy, ignored = junk + hard.
  Medium: positives = easy + hard, ignored = junk. Hard: positives = hard, ignored = junk + easy.
* Original Oxford / Paris (``classic_ground_truth``): each query's ``gnd`` entry has ``ok`` (the original
  good + ok images) and ``junk``: positives = ok, ignored = junk; one mAP (``evaluate_classic``).
* Label protocols (``label_ground_truth``): SOP, CUB, Cars, CO3D-Retrieve: positives are the gallery
  items with the query's label; when the query set is the gallery the query itself is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from relook.errors import ConfigError, DataError
from relook.eval.metrics import revisitop_map

REVISITOP_SETTINGS = ("easy", "medium", "hard")


def _ids(entry: Mapping, key: str, q: int) -> np.ndarray:
    if key not in entry:
        raise DataError(f"ground truth of query {q} has no {key!r} list (keys: {sorted(entry)})")
    return np.asarray(entry[key], dtype=np.int64).ravel()


def revisitop_ground_truth(gnd: Sequence[Mapping], setting: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(positives, ignore) per query for ``setting`` in ``{"easy", "medium", "hard"}``."""
    setting = setting.lower()
    if setting not in REVISITOP_SETTINGS:
        raise ConfigError(f"unknown revisited-protocol setting {setting!r}; known: {', '.join(REVISITOP_SETTINGS)}")
    positives, ignore = [], []
    for q, entry in enumerate(gnd):
        easy, hard, junk = _ids(entry, "easy", q), _ids(entry, "hard", q), _ids(entry, "junk", q)
        if setting == "easy":
            positives.append(easy)
            ignore.append(np.concatenate([junk, hard]))
        elif setting == "medium":
            positives.append(np.concatenate([easy, hard]))
            ignore.append(junk)
        else:
            positives.append(hard)
            ignore.append(np.concatenate([junk, easy]))
    return positives, ignore


def classic_ground_truth(gnd: Sequence[Mapping]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(positives, ignore) per query of the original Oxford 5k / Paris 6k protocol: (ok, junk)."""
    return [_ids(e, "ok", q) for q, e in enumerate(gnd)], [_ids(e, "junk", q) for q, e in enumerate(gnd)]


def label_ground_truth(
    query_labels: Sequence, gallery_labels: Sequence, query_in_gallery: Sequence[int] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(positives, ignore) for label-based protocols.

    ``query_in_gallery[q]``: the gallery index of query q itself (or -1), ignored in its ranking.
    """
    gallery_labels = np.asarray(gallery_labels)
    by_label: dict = {}
    for i, lab in enumerate(gallery_labels.tolist()):
        by_label.setdefault(lab, []).append(i)
    positives, ignore = [], []
    for q, lab in enumerate(np.asarray(query_labels).tolist()):
        pos = np.asarray(by_label.get(lab, []), dtype=np.int64)
        self_idx = -1 if query_in_gallery is None else int(query_in_gallery[q])
        ignore.append(np.asarray([self_idx] if self_idx >= 0 else [], dtype=np.int64))
        positives.append(pos[pos != self_idx])
    return positives, ignore


def evaluate_revisitop(ranking, gnd: Sequence[Mapping], kappas: Sequence[int] = (1, 5, 10)) -> dict:
    """mAP and mP@k for Easy, Medium and Hard: ``{"easy": {...}, "medium": {...}, "hard": {...}}``."""
    out = {}
    for setting in REVISITOP_SETTINGS:
        pos, ign = revisitop_ground_truth(gnd, setting)
        res = revisitop_map(ranking, pos, ign, kappas)
        out[setting] = {"mAP": res["mAP"], **{f"mP@{k}": v for k, v in res["mP@k"].items()}}
    return out


def evaluate_classic(ranking, gnd: Sequence[Mapping]) -> dict:
    """mAP of the original Oxford 5k / Paris 6k protocol: ``{"mAP": value}``.

    The AP is the original benchmark's (its ``compute_ap``): junk removed from the ranking, then the
    trapezoidal area under precision-recall, the same rule as the revisited protocol's AP.
    """
    pos, ign = classic_ground_truth(gnd)
    return {"mAP": revisitop_map(ranking, pos, ign)["mAP"]}
