"""Interpretability of the OT reranker (Fig. 1, 4, 5 of "Beyond the CLS Token"): for one query-candidate
pair, each image's patch-importance heatmap (its OT marginal, the spatial weighting) and the ``top``
patch pairs of highest weighted structural similarity ``T_ij S_ij`` (Fig. 1: "top matches are obtained by
finding the maximum values of the weighted structural similarity", the terms of Eq. 3) as same-coloured
boxes joined by lines; without ``sim`` the pairs are ranked by transport mass ``T_ij`` alone.

``ot_figure``: the whole figure of one pair from feature stores (``relook visualize ot``, ``relook demo``).
``sweep_mass`` / ``plot_mass_sweep``: Fig. 3, retrieval metrics against the transported mass a.

The patch grid covers the whole image (the extractor resizes the full image to a square), so cell
(r, c) of an h x w grid is the box ``[c W/w, (c+1) W/w] x [r H/h, (r+1) H/h]`` in pixels.
"""

from __future__ import annotations

import copy
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import ConnectionPatch, Rectangle

from relook import pipeline
from relook.errors import ConfigError, ShapeError
from relook.eval.evaluate import evaluate as score
from relook.images import load_image
from relook.rerank import create_reranker
from relook.store import FeatureStore
from relook.types import Ranking
from relook.viz.topk import DPI  # every report figure at the same print resolution


def backbone_and_weights(meta: dict) -> str:
    """``vit_tokens backbone deit_small, weights: random init (seed 0)`` from a store's provenance ``meta``,
    for figure titles. A store written before extractors recorded their weights says so instead of "?"."""
    net = next(
        (meta[f"extractor.{k}"] for k in ("backbone", "arch", "model") if meta.get(f"extractor.{k}")),
        meta.get("extractor", "unknown extractor"),
    )
    weights = meta.get("weights") or "not recorded in the store (extracted before relook recorded weights)"
    return f"{meta.get('extractor', 'features')} backbone {net}, weights: {weights}"


def store_backbone_and_weights(path: str | Path) -> str:
    """``backbone_and_weights`` of the store at ``path``."""

    with FeatureStore(path, "r") as s:
        return backbone_and_weights(s.meta)


def ot_figure(
    query_id: str,
    match_id: str,
    query_store: str | Path,
    output: str | Path,
    gallery_store: str | Path | None = None,
    query_image: str | Path | None = None,
    match_image: str | Path | None = None,
    image_root: str | Path = ".",
    marginal: str = "relevancy",
    partial: float = 1.0,
    eps: float = 0.05,
    top: int = 5,
) -> Path:
    """The PNG of ``relook visualize ot``: patch-importance heatmaps of ``query_id`` (in ``query_store``) and
    ``match_id`` (in ``gallery_store``, default the query store) and their ``top`` matching patch pairs
    (highest T_ij S_ij) under an ``ot`` reranker with these options; the images are ``query_image`` /
    ``match_image`` (default ``image_root / <id>``). The title names S_global, S_struct, the options, the
    backbone and the weights record of the query store."""

    rr = create_reranker("ot", marginal=marginal, partial=partial, eps=eps)
    with FeatureStore(query_store, "r") as qs:
        q = qs.read(query_id, sorted(rr.requires))
    with FeatureStore(gallery_store or query_store, "r") as gs:
        m = gs.read(match_id, sorted(rr.requires))
    out = rr.explain(q, [m])
    s_global = float(q.global_desc @ m.global_desc)
    title = (
        f"{query_id} vs {match_id}: S_global={s_global:.3f} S_struct={out['score'][0]:.3f} "
        f"(marginal={marginal}, a={partial})\n{store_backbone_and_weights(query_store)}"
    )
    image_root = Path(image_root)
    return draw_ot_pair(
        load_image(query_image or image_root / query_id, None),
        load_image(match_image or image_root / match_id, None),
        out["mu_s"][0],
        out["mu_t"][0],
        out["plan"][0],
        q.patch_tokens.shape[:2],
        m.patch_tokens.shape[:2],
        output,
        top=top,
        title=title,
        sim=out["sim"][0],
    )


def top_pairs(plan: np.ndarray, top: int, sim: np.ndarray | None = None) -> list[tuple[int, int, float]]:
    """The ``top`` (i, j, w_ij) of a plan (P, P'), largest first: w = T * S (Eq. 3's terms) with ``sim``
    (P, P'), else w = T."""
    weight = plan if sim is None else plan * sim
    if weight.shape != plan.shape:
        raise ShapeError(f"top_pairs: sim {sim.shape} must have the plan's shape {plan.shape}")
    flat = np.argsort(-weight, axis=None, kind="stable")[:top]
    return [(int(i), int(j), float(weight[i, j])) for i, j in zip(*np.unravel_index(flat, plan.shape))]


def _cell_box(index: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[float, float, float, float]:
    (h, w), (H, W) = grid, size
    r, c = divmod(index, w)
    return c * W / w, r * H / h, W / w, H / h  # x, y, width, height


def draw_ot_pair(
    query_image: np.ndarray,
    match_image: np.ndarray,
    mu_query: np.ndarray,
    mu_match: np.ndarray,
    plan: np.ndarray,
    grid_query: tuple[int, int],
    grid_match: tuple[int, int],
    out_path: str | Path,
    top: int = 5,
    title: str | None = None,
    sim: np.ndarray | None = None,
) -> Path:
    """Write a PNG: the two images side by side with their importance heatmaps and the top-``top`` pairs.

    query_image, match_image: RGB uint8 (H, W, 3); mu_query: (h*w,), mu_match: (h'*w',) marginals;
    plan: (h*w, h'*w') transport plan; sim: (h*w, h'*w') patch similarities (pairs ranked by T * S).
    """

    matplotlib.use("Agg")

    pq, pm = grid_query[0] * grid_query[1], grid_match[0] * grid_match[1]
    if mu_query.shape != (pq,) or mu_match.shape != (pm,) or plan.shape != (pq, pm):
        raise ShapeError(
            f"draw_ot_pair: marginals {mu_query.shape}, {mu_match.shape} and plan {plan.shape} do "
            f"not fit grids {grid_query} and {grid_match}"
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, img, mu, grid, name in (
        (axes[0], query_image, mu_query, grid_query, "query"),
        (axes[1], match_image, mu_match, grid_match, "candidate"),
    ):
        H, W = img.shape[:2]
        ax.imshow(img)
        ax.imshow(mu.reshape(grid), cmap="jet", alpha=0.45, extent=(0, W, H, 0), interpolation="bilinear")
        ax.set_title(f"{name}: patch importance (OT marginal)", fontsize=9)
        ax.axis("off")
    colors = plt.get_cmap("tab10")
    for rank, (i, j, _) in enumerate(top_pairs(plan, top, sim)):
        color = colors(rank % 10)
        bq = _cell_box(i, grid_query, query_image.shape[:2])
        bm = _cell_box(j, grid_match, match_image.shape[:2])
        axes[0].add_patch(Rectangle(bq[:2], bq[2], bq[3], fill=False, lw=2, ec=color))
        axes[1].add_patch(Rectangle(bm[:2], bm[2], bm[3], fill=False, lw=2, ec=color))
        fig.add_artist(
            ConnectionPatch(
                (bq[0] + bq[2] / 2, bq[1] + bq[3] / 2),
                (bm[0] + bm[2] / 2, bm[1] + bm[3] / 2),
                "data",
                "data",
                axesA=axes[0],
                axesB=axes[1],
                color=color,
                lw=1,
            )
        )
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out_path)


def save_figure(fig, out_path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``out_path`` (folders created) and close it."""

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out_path


def plot_mass_sweep(masses, metrics: dict[str, list[float]], out_path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of each metric (e.g. P@1, RP, MAP@R) against the transported mass a (Fig. 3).

    masses: (A,) values of a; metrics: name -> (A,) values in the order of ``masses``.
    """

    matplotlib.use("Agg")

    masses = np.asarray(masses, dtype=float)
    for name, values in metrics.items():
        if len(values) != len(masses):
            raise ShapeError(f"plot_mass_sweep: {name} has {len(values)} values for {len(masses)} masses")
    order = np.argsort(masses)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in metrics.items():
        ax.plot(masses[order], np.asarray(values, dtype=float)[order], marker="o", label=name)
    ax.set_xlabel("transported mass a (1 = standard OT)")
    ax.set_ylabel("metric")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, out_path)


def sweep_mass(
    conf: dict,
    masses,
    label: str | None = None,
    out_path: str | Path | None = None,
    metrics=("P@1", "RP", "MAP@R"),
    progress: bool = False,
) -> tuple[Path, dict[float, dict[str, float]]]:
    """Rerank an experiment's shortlist with its ot reranker ``label`` at each mass a, evaluate, plot.

    Each a runs as a copy of the configured reranker labelled ``<label>-a<a>`` (rankings cached like any
    other, ``pipeline.rerank``). Returns (PNG path, {a: {metric: value}}).
    """
    items = [r for r in conf["rerankers"] if r["name"] == "ot" and (label is None or r["label"] == label)]
    if not items:
        raise ConfigError(f"ot sweep: no ot reranker{f' labelled {label!r}' if label else ''} in the config")
    base = items[0]
    sweep = copy.deepcopy(conf)
    sweep["rerankers"] = [{**base, "partial": float(a), "label": f"{base['label']}-a{float(a):g}"} for a in masses]
    paths = pipeline.rerank(sweep, progress=progress)
    dataset = pipeline.dataset_of(sweep)
    table = {}
    for a, item in zip(masses, sweep["rerankers"]):
        row = score(Ranking.load(paths[item["label"]]), dataset)
        missing = [m for m in metrics if m not in row]
        if missing:
            raise ConfigError(f"ot sweep: metrics {missing} not reported for {dataset.name}; it has {sorted(row)}")
        table[float(a)] = {m: float(row[m]) for m in metrics}
    out = Path(out_path) if out_path else Path(conf["out"]) / "ot_mass_sweep.png"
    plot = plot_mass_sweep(
        list(table),
        {m: [table[a][m] for a in table] for m in metrics},
        out,
        f"{dataset.name}: {base['label']} (marginal {base.get('marginal', 'default')})",
    )
    return plot, table
