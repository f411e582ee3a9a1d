"""relook command line: thin sub-commands over the library. Errors end with one line and exit 2."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from relook.errors import RelookError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Instance-level image retrieval that looks again at its shortlist.")
store_app = typer.Typer(no_args_is_help=True, help="Inspect and merge feature stores (HDF5).")
app.add_typer(store_app, name="store")
__import__("relook.cli_rrt", fromlist=["register"]).register(app)  # relook train rrt, visualize rrt-matches
__import__("relook.cli_epipolar", fromlist=["register"]).register(app)  # geometry pseudo-gt, visualize epipolar-attention

from relook.cli_datasets import app as _datasets_app  # noqa: E402
app.add_typer(_datasets_app, name="datasets")


@store_app.command("info")
def store_info(path: Path = typer.Argument(..., help="feature store (.h5)")) -> None:
    """Print the number of images, their common fields and the provenance metadata.

    Example: relook store info runs/demo/features.h5
    """
    from relook.store import FeatureStore

    with FeatureStore(path, "r") as store:
        typer.echo(f"{path}: {len(store)} images")
        typer.echo(f"fields: {', '.join(store.fields()) or '(none)'}")
        for k, v in sorted(store.meta.items()):
            typer.echo(f"{k}: {v}")


@store_app.command("merge")
def store_merge(shards: list[Path] = typer.Argument(..., help="shard stores to merge"),
                output: Path = typer.Option(..., "--output", "-o", help="merged store to write"),
                overwrite: bool = typer.Option(False, help="replace OUTPUT if it exists")) -> None:
    """Merge shard stores (one per extraction process) into one store.

    Example: relook store merge feats.rank0.h5 feats.rank1.h5 -o feats.h5
    """
    from relook.store import merge_stores

    merge_stores(shards, output, overwrite)
    typer.echo(f"wrote {output}")


@app.command("search")
def search_cmd(query_store: Path = typer.Argument(..., help="store with the queries' global_desc"),
               gallery_store: Path = typer.Argument(..., help="store with the gallery's global_desc"),
               output: Path = typer.Option(..., "--output", "-o", help="shortlist file (.npz) to write"),
               k: int = typer.Option(100, "--k", help="shortlist length"),
               index: str = typer.Option("flat", help="faiss index: flat (exact) or ivfpq")) -> None:
    """Global inner-product search: top-K gallery images per query.

    Example: relook search q.h5 db.h5 -o shortlist.npz --k 100
    """
    from relook.search import build_index, search
    from relook.store import FeatureStore

    with FeatureStore(query_store, "r") as qs, FeatureStore(gallery_store, "r") as gs:
        qids, gids = qs.ids(), gs.ids()
        shortlist = search(build_index(gs.stack("global_desc"), kind=index), qs.stack("global_desc"), k,
                           qids, gids, meta={"queries": str(query_store), "gallery": str(gallery_store),
                                             **{f"gallery.{a}": b for a, b in gs.meta.items()}})
    shortlist.save(output)
    typer.echo(f"wrote {output}: {shortlist.num_queries} queries x top-{shortlist.k}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; a ``RelookError`` becomes ``error: ...`` on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except RelookError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return 2
        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
