"""What the rerankers look at, drawn for one query and a true match of any run (the report's "inside
the rerankers" figures): RRT correspondences, only the strongest, and OT importance heatmaps with the top
transport pairs, titled with the backbone and weights that made the features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.models.rrt.checkpoint import load_rrt
from relook.models.rrt.correspondences import rrt_correspondences
from relook.models.rrt.inputs import required_fields
from relook.pipeline import open_pair
from relook.rerank import create_reranker


def rrt_pair_figure(
    checkpoint: str | Path,
    stores: tuple[Path, Path],
    qid: str,
    cid: str,
    query_image: np.ndarray,
    match_image: np.ndarray,
    out_path: Path,
    strongest: int = 12,
) -> Path:
    """RRT correspondences of ``qid`` -> ``cid`` (features from ``stores`` = (query store, gallery store)), only the ``strongest``
    by last-layer cross-attention affinity, so the lines that decide the score are not hidden by the rest."""
    # lazy: tests monkeypatch this name on its module (a top import would not see it)
    from relook.viz.correspondences import draw_matches

    model = load_rrt(checkpoint)
    with open_pair(*stores) as (qs, gs):
        qf, cf = qs.read(qid, required_fields(model.conf)), gs.read(cid, required_fields(model.conf))
    m = rrt_correspondences(model, qf, cf)
    shown = min(strongest, len(m["affinity"]))
    return draw_matches(
        query_image,
        match_image,
        m["kp_query"],
        m["kp_candidate"],
        out_path,
        m["affinity"],
        max_lines=strongest,
        title=f"{qid} vs {cid}: the {shown} strongest of {len(m['affinity'])} "
        f"RRT correspondences (logit {float(m['logit']):.2f})",
    )


def ot_pair_figure(
    options: dict,
    stores: tuple[Path, Path],
    qid: str,
    cid: str,
    query_image: np.ndarray,
    match_image: np.ndarray,
    out_path: Path,
    top: int = 5,
) -> Path:
    """OT importance heatmaps and the ``top`` transport pairs of ``qid`` vs ``cid`` for an ``ot`` reranker
    configured with ``options``; the title names S_global, S_struct, the backbone and its weights."""
    # lazy: tests monkeypatch this name on its module (a top import would not see it)
    from relook.viz.ot import backbone_and_weights, draw_ot_pair

    rr = create_reranker("ot", **options)
    with open_pair(*stores) as (qs, gs):
        q, m = qs.read(qid, sorted(rr.requires)), gs.read(cid, sorted(rr.requires))
        meta = gs.meta
    out = rr.explain(q, [m])
    title = (
        f"{qid} vs {cid}: S_global={float(q.global_desc @ m.global_desc):.3f} "
        f"S_struct={float(out['score'][0]):.3f} (marginal={rr.conf['marginal']})\n{backbone_and_weights(meta)}"
    )
    return draw_ot_pair(
        query_image,
        match_image,
        out["mu_s"][0],
        out["mu_t"][0],
        out["plan"][0],
        q.patch_tokens.shape[:2],
        m.patch_tokens.shape[:2],
        out_path,
        top=top,
        title=title,
    )
