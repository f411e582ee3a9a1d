"""``relook store ...``: inspect, merge and search feature stores (HDF5)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Inspect and merge feature stores (HDF5).")


@app.command("info")
def store_info(path: Path = typer.Argument(..., help="feature store (.h5)")) -> None:
    """Print the number of images, their common fields and the provenance metadata.

    Example: relook store info runs/demo/test/features/cnn_local/gallery.h5
    """
    from relook.store import FeatureStore

    with FeatureStore(path, "r") as store:
        typer.echo(f"{path}: {len(store)} images")
        typer.echo(f"fields: {', '.join(store.fields()) or '(none)'}")
        for k, v in sorted(store.meta.items()):
            typer.echo(f"{k}: {v}")


@app.command("merge")
def store_merge(
    shards: list[Path] = typer.Argument(..., help="shard stores to merge"),
    output: Path = typer.Option(..., "--output", "-o", help="merged store to write"),
    overwrite: bool = typer.Option(False, help="replace OUTPUT if it exists"),
) -> None:
    """Merge shard stores (one per extraction process) into one store.

    Example: relook store merge feats.rank0.h5 feats.rank1.h5 -o feats.h5
    """
    from relook.store import merge_stores

    merge_stores(shards, output, overwrite)
    typer.echo(f"wrote {output}")


@app.command("search")
def store_search_cmd(
    query_store: Path = typer.Argument(..., help="store with the queries' global_desc"),
    gallery_store: Path = typer.Argument(..., help="store with the gallery's global_desc"),
    output: Path = typer.Option(..., "--output", "-o", help="shortlist file (.npz) to write"),
    k: int = typer.Option(100, "--k", min=1, help="shortlist length"),
    index: str = typer.Option("flat", help="faiss index: flat (exact) or ivfpq"),
    exclude_self: bool | None = typer.Option(
        None,
        "--exclude-self/--keep-self",
        help="leave a gallery image with the query's id out of its list, before the top-K cut "
        "(default: only when both stores are the same file)",
    ),
) -> None:
    """Global inner-product search: top-K gallery images per query (equal scores: lower gallery index first).

    Example: relook store search q.h5 db.h5 -o shortlist.npz --k 100
             relook store search db.h5 db.h5 -o shortlist.npz --k 100   # every image queries the others
    """
    from relook.search import build_index, search
    from relook.store import FeatureStore

    if exclude_self is None:
        exclude_self = query_store.resolve() == gallery_store.resolve()
    with FeatureStore(query_store, "r") as qs, FeatureStore(gallery_store, "r") as gs:
        qids, gids = qs.ids(), gs.ids()
        gpos = {g: i for i, g in enumerate(gids)}
        exclude = [gpos.get(q, -1) for q in qids] if exclude_self else None
        shortlist = search(
            build_index(gs.stack("global_desc"), kind=index),
            qs.stack("global_desc"),
            k,
            qids,
            gids,
            meta={
                "queries": str(query_store),
                "gallery": str(gallery_store),
                **{f"gallery.{a}": b for a, b in gs.meta.items()},
            },
            exclude=exclude,
        )
    shortlist.save(output)
    typer.echo(f"wrote {output}: {shortlist.num_queries} queries x top-{shortlist.k}")
