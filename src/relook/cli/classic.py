"""``relook classic ...``: local features (SIFT, DELG import, statistics) and the gv / aqe / asmk rerankers."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import parse_kv
from relook.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Classic reranking: SIFT/DELG local features, gv, aqe (+dba), asmk.")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@app.command("extract-sift")
def extract_sift(
    images: Path = typer.Argument(..., help="folder of images (searched recursively)"),
    output: Path = typer.Option(..., "--output", "-o", help="feature store (.h5) to write"),
    num_features: int = typer.Option(1000, min=1, help="strongest features kept per image"),
    root: bool = typer.Option(True, help="RootSIFT (--no-root: L2-normalised SIFT)"),
    scales: str = typer.Option("1.0", help="comma-separated image scales, e.g. 0.7071,1,1.4142"),
    overwrite: bool = typer.Option(False, help="start the store afresh"),
) -> None:
    """Extract SIFT / RootSIFT local features of every image in a folder (id = path without extension).

    Example: relook classic extract-sift data/images -o runs/sift.h5 --scales 0.7071,1,1.4142
    """
    from relook.features import create_extractor, extract_to_store

    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ConfigError(f"{images}: no images ({', '.join(IMAGE_EXTS)}) found")
    items = [(str(p.relative_to(images).with_suffix("")), p, None) for p in files]
    ex = create_extractor("sift", num_features=num_features, root=root, scales=[float(s) for s in scales.split(",")])
    extract_to_store(ex, items, output, overwrite=overwrite)
    typer.echo(f"wrote {output}: {len(items)} images")


@app.command("import-delg")
def import_delg_cmd(
    data_dir: Path = typer.Argument(..., help="RRT data folder, e.g. data/oxford5k"),
    desc_name: str = typer.Argument(..., help="descriptor set, e.g. r50_gldv1 (folder delg_<name>)"),
    list_file: Path = typer.Argument(..., help="image list, e.g. test_query.txt"),
    output: Path = typer.Option(..., "--output", "-o", help="feature store (.h5) to write"),
    max_local: int = typer.Option(None, min=1, help="keep the first (strongest) N local features"),
    overwrite: bool = typer.Option(False, help="start the store afresh"),
) -> None:
    """Import precomputed DELG features (RRT release layout) into a feature store.

    Example: relook classic import-delg data/oxford5k r50_gldv1 test_gallery.txt -o runs/roxf_db.h5
    """
    from relook.features.delg_reader import import_delg

    import_delg(data_dir, desc_name, list_file, output, max_local=max_local, overwrite=overwrite)
    typer.echo(f"wrote {output}")


@app.command("local-stats")
def local_stats(
    store: Path = typer.Argument(..., help="feature store with keypoints"),
    top_n: int = typer.Option(None, min=1, help="first keep the N strongest features per image"),
    stride: float = typer.Option(16.0, min=1.0, help="grid stride in pixels (RRT supp. Sec. B: 16)"),
) -> None:
    """Mean local features and distinct grid locations per image (RRT supplementary Sec. B).

    Example: relook classic local-stats runs/roxf_db.h5 --top-n 500
    """
    from relook.features.selection import local_feature_stats
    from relook.store import FeatureStore

    with FeatureStore(store, "r") as st:
        s = local_feature_stats((st.read(i, ["local_desc", "keypoints", "attention"]) for i in st.ids()), top_n, stride)
    typer.echo(
        f"{store}: {s['images']} images, {s['mean_local']:.1f} local features and "
        f"{s['mean_distinct']:.1f} distinct {stride:g}-px grid locations per image"
    )


@app.command("codebook")
def codebook(
    store: Path = typer.Argument(..., help="feature store with local_desc (training images)"),
    output: Path = typer.Option(..., "--output", "-o", help="centroids file (.npy)"),
    size: int = typer.Option(65536, min=1, help="visual words"),
    train_max: int = typer.Option(500000, min=1, help="at most this many descriptors (seeded sample)"),
    max_local: int = typer.Option(1000, min=1, help="strongest local features per image"),
    seed: int = typer.Option(0, min=0, help="seed of the sample and k-means"),
) -> None:
    """Train an ASMK visual codebook (faiss k-means) on a store's local descriptors.

    Example: relook classic codebook runs/train_sift.h5 -o runs/codebook.npy --size 65536
    """
    import numpy as np

    from relook.features.selection import keep_top_n
    from relook.rerank import create_reranker
    from relook.store import FeatureStore

    with FeatureStore(store, "r") as st:
        descs = np.concatenate(
            [keep_top_n(st.read(i, ["local_desc", "attention"]), max_local).local_desc for i in st.ids()]
        )
    r = create_reranker("asmk", codebook_size=size, train_max=train_max, seed=seed).fit(descs)
    np.save(output, r.centroids)
    typer.echo(f"wrote {output}: {r.centroids.shape[0]} words of dim {r.centroids.shape[1]}")


@app.command("rerank")
def rerank(
    shortlist: Path = typer.Argument(..., help="shortlist (.npz) from `relook search`"),
    query_store: Path = typer.Argument(..., help="store of the queries"),
    gallery_store: Path = typer.Argument(..., help="store of the gallery"),
    output: Path = typer.Option(..., "--output", "-o", help="ranking (.npz) to write"),
    method: str = typer.Option("gv", help="gv, aqe or asmk"),
    set_: list[str] = typer.Option([], "--set", help="reranker option key=value (repeatable)"),
) -> None:
    """Rerank a shortlist with gv, aqe (+dba) or asmk.

    Example: relook classic rerank sl.npz q.h5 db.h5 -o gv.npz --method gv --set model=homography
    """
    from relook.rerank import create_reranker
    from relook.store import FeatureStore
    from relook.types import Shortlist

    if method not in ("gv", "aqe", "asmk"):
        raise ConfigError(f"--method must be gv, aqe or asmk, got {method!r}")
    r = create_reranker(method, **parse_kv(set_, "--set"))
    with FeatureStore(query_store, "r") as qs, FeatureStore(gallery_store, "r") as gs:
        ranking = r.rerank_shortlist(Shortlist.load(shortlist), qs, gs)
    ranking.save(output)
    typer.echo(f"wrote {output}: {ranking.num_queries} queries reranked by {r!r}")


@app.command("asmk-search")
def asmk_search_cmd(
    query_store: Path = typer.Argument(..., help="store of the queries (local_desc)"),
    gallery_store: Path = typer.Argument(..., help="store of the gallery (local_desc)"),
    output: Path = typer.Option(..., "--output", "-o", help="ranking (.npz) to write"),
    k: int = typer.Option(100, "--k", min=1, help="ranking length"),
    set_: list[str] = typer.Option([], "--set", help="asmk option key=value (repeatable)"),
) -> None:
    """ASMK* as global retrieval (inverted file over the gallery, no global descriptor needed).

    Example: relook classic asmk-search q.h5 db.h5 -o asmk.npz --set codebook_path=codebook.npy
    """
    from relook.rerank.asmk import asmk_search
    from relook.store import FeatureStore

    with FeatureStore(query_store, "r") as qs, FeatureStore(gallery_store, "r") as gs:
        ranking = asmk_search(qs, gs, k, **parse_kv(set_, "--set"))
    ranking.save(output)
    typer.echo(f"wrote {output}: {ranking.num_queries} queries x top-{ranking.k}")
