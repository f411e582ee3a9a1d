"""relook command line: thin sub-commands over the library. Errors end with one line and exit 2."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from relook.errors import RelookError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Instance-level image retrieval that looks again at its shortlist.")
store_app = typer.Typer(no_args_is_help=True, help="Inspect and merge feature stores (HDF5).")
app.add_typer(store_app, name="store")
__import__("relook.cli_rrt", fromlist=["register"]).register(app)  # relook train rrt, visualize rrt-matches
app.add_typer(__import__("relook.cli_classic", fromlist=["app"]).app, name="classic")
__import__("relook.cli_ot", fromlist=["register"]).register(app)  # relook visualize ot
_train = __import__("relook.cli_common", fromlist=["subgroup"]).subgroup(app, "train", "Train models (RRT, DToP).")
_train.registered_commands += __import__("relook.cli_dtop", fromlist=["app"]).app.registered_commands  # dtop, whitening
__import__("relook.cli_epipolar", fromlist=["register"]).register(app)  # geometry pseudo-gt, visualize epipolar-attention
__import__("relook.cli_global", fromlist=["register"]).register(app)  # relook train global

from relook.cli_datasets import app as _datasets_app  # noqa: E402
app.add_typer(_datasets_app, name="datasets")


@store_app.command("info")
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


@store_app.command("search")
def store_search_cmd(query_store: Path = typer.Argument(..., help="store with the queries' global_desc"),
               gallery_store: Path = typer.Argument(..., help="store with the gallery's global_desc"),
               output: Path = typer.Option(..., "--output", "-o", help="shortlist file (.npz) to write"),
               k: int = typer.Option(100, "--k", min=1, help="shortlist length"),
               index: str = typer.Option("flat", help="faiss index: flat (exact) or ivfpq"),
               exclude_self: Optional[bool] = typer.Option(
                   None, "--exclude-self/--keep-self",
                   help="leave a gallery image with the query's id out of its list, before the top-K cut "
                        "(default: only when both stores are the same file)")) -> None:
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
        shortlist = search(build_index(gs.stack("global_desc"), kind=index), qs.stack("global_desc"), k,
                           qids, gids, meta={"queries": str(query_store), "gallery": str(gallery_store),
                                             **{f"gallery.{a}": b for a, b in gs.meta.items()}}, exclude=exclude)
    shortlist.save(output)
    typer.echo(f"wrote {output}: {shortlist.num_queries} queries x top-{shortlist.k}")


# -- experiment stages (config-driven) -------------------------------------------------------------
CONFIG_OPT = typer.Option([], "--config", "-c", help="experiment YAML file(s); later ones override earlier")
SET_OPT = typer.Option([], "--set", "-s", help="override a config value: key.sub=value (YAML value)")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="no progress bars and no 'wrote ...' lines (tables and errors still print)")


def _say(quiet: bool, text: str) -> None:
    """Echo ``text`` unless the stage runs with ``--quiet``."""
    if not quiet:
        typer.echo(text)


def _conf(config: list[Path], overrides: list[str], writes: bool = True) -> dict:
    """The resolved config; for a command that ``writes``, its output folder is created (one-line error when
    it cannot be, before any work). ``config.yaml`` is saved by ``_saved`` once the command succeeded, so a
    failed command leaves the previous one in place."""
    from relook.experiment import load_config
    from relook.io import ensure_dir

    conf = load_config(config, overrides)
    if writes:
        ensure_dir(conf["out"], "out")
    return conf


def _saved(conf: dict) -> None:
    from relook.experiment import save_config

    save_config(conf, conf["out"])


@app.command("extract")
def extract_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT,
                model: Optional[str] = typer.Option(None, help="run only this extractor (e.g. dtop), default options"),
                quiet: bool = QUIET_OPT) -> None:
    """Run the configured extractors over the dataset into features/<label>/*.h5 (resumes per image).

    Scale-out: under torchrun --nproc_per_node=N each process extracts every N-th image into its own
    shard (gallery.h5.rank0-of-N, ...) and rank 0 merges them into gallery.h5; a rerun resumes the shards.

    Example: relook extract -c configs/demo.yaml -s dataset.root=runs/demo/co3d_retrieve
             relook extract -c configs/roxford5k.yaml --model dtop -s out=runs/rox_dtop
             torchrun --nproc_per_node=4 -m relook.cli extract -c configs/folder.yaml -s dataset.root=photos
    """
    from relook import pipeline
    from relook.distributed import world

    if model:
        overrides = [*overrides, f"extractors=[{{name: {model}}}]", "global=null"]
    conf = _conf(config, overrides)
    stores = pipeline.extract(conf, progress=not quiet)
    if world()[0] == 0:
        for label, (q, g) in stores.items():
            _say(quiet, f"{label}: {g}" + (f", {q}" if q != g else ""))
    _saved(conf)


@app.command("index")
def index_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT,
              overwrite: bool = typer.Option(False, help="rebuild even if up to date"), quiet: bool = QUIET_OPT) -> None:
    """Build the faiss index of the gallery's global descriptors (flat, or shortlist.index=ivfpq).

    Example: relook index -c configs/demo.yaml
    """
    from relook import pipeline

    conf = _conf(config, overrides)
    _say(quiet, f"wrote {pipeline.index(conf, overwrite)}")
    _saved(conf)


@app.command("search")
def search_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT,
               overwrite: bool = typer.Option(False, help="search again even if up to date"),
               quiet: bool = QUIET_OPT) -> None:
    """Global top-k shortlist of every query -> <out>/shortlist.npz.

    Example: relook search -c configs/demo.yaml -s shortlist.k=500
    """
    from relook import pipeline

    conf = _conf(config, overrides)
    _say(quiet, f"wrote {pipeline.search(conf, overwrite)}")
    _saved(conf)


@app.command("rerank")
def rerank_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT,
               methods: str = typer.Option("", help="comma-separated reranker labels (default: all configured)"),
               overwrite: bool = typer.Option(False, help="rerank again even if up to date"),
               quiet: bool = QUIET_OPT) -> None:
    """Run rerankers on the same shortlist, then print one table of metrics and time per query.

    Example: relook rerank -c configs/demo.yaml --methods gv,aqe,asmk,rrt,ot
    """
    from relook import pipeline

    conf = _conf(config, overrides)
    labels = [m.strip() for m in methods.split(",") if m.strip()] or None
    pipeline.rerank(conf, labels, overwrite, progress=not quiet)
    typer.echo(pipeline.results_table(pipeline.evaluate(conf)))
    _saved(conf)


@app.command("evaluate")
def evaluate_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT, quiet: bool = QUIET_OPT) -> None:
    """Print the metrics of the shortlist and every ranking (and write <out>/results.json).

    Example: relook evaluate -c configs/demo.yaml
    """
    from relook import pipeline

    typer.echo(pipeline.results_table(pipeline.evaluate(_conf(config, overrides, writes=False))))


@app.command("run")
def run_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT, quiet: bool = QUIET_OPT,
            report: bool = typer.Option(True, help="write <out>/report.html and figures/ at the end")) -> None:
    """All stages in order: extract, index, search, rerank, evaluate, report (each skips finished work).

    Under torchrun the extraction is spread over the ranks (see `relook extract --help`); rank 0 alone
    runs the later stages.

    Example: relook run -c configs/demo.yaml
    """
    from relook import pipeline
    from relook.distributed import world

    from relook.eval.evaluate import check_has_positives

    conf = _conf(config, overrides, writes=False)
    check_has_positives(pipeline.dataset_of(conf))  # before any work: nothing could be scored
    conf = _conf(config, overrides)
    pipeline.extract(conf, progress=not quiet)
    if world()[0] != 0:
        return
    pipeline.search(conf)
    pipeline.rerank(conf, progress=not quiet)
    results = pipeline.evaluate(conf)
    typer.echo(pipeline.results_table(results))
    if report:
        from relook.report import make_figures, write_report

        make_figures(conf)
        _say(quiet, f"wrote {write_report(conf, results)}")
    _saved(conf)


@app.command("report")
def report_cmd(config: list[Path] = CONFIG_OPT, overrides: list[str] = SET_OPT,
               queries: int = typer.Option(4, min=0, help="queries shown in the top-k grids"),
               quiet: bool = QUIET_OPT) -> None:
    """Write <out>/report.html: what ran, results and commentary, time per stage, metrics against K,
    top-k grids, the queries each reranker helped and hurt most, other stages' figures.

    Example: relook report -c configs/demo.yaml
    """
    from relook import pipeline
    from relook.report import make_figures, write_report

    conf = _conf(config, overrides, writes=False)
    results = pipeline.evaluate(conf)
    make_figures(conf, num_queries=queries)
    _say(quiet, f"wrote {write_report(conf, results)}")


@app.command("query")
def query_cmd(images: list[Path] = typer.Argument(..., help="query image file(s); need not be in the dataset"),
              run: Path = typer.Option(..., "--run", help="a finished run's folder (config.yaml, index.faiss)"),
              method: Optional[str] = typer.Option(None, help="one of the run's reranker labels (default: global order)"),
              k: int = typer.Option(10, "-k", "--k", min=1, help="results shown per image"),
              html: Optional[Path] = typer.Option(None, help="thumbnails page to write (default RUN/query.html)")) -> None:
    """Rank a finished run's gallery for new images with the run's extractors, index and reranker.

    Prints rank, gallery id, the method's score, the global score and the rank change per image, and writes
    an HTML page of thumbnails. The run's stores must have been made with the weights its config loads now.

    Example: relook query photo.jpg --run runs/mine --method gv -k 5
    """
    from relook.query import format_result, query
    from relook.viz.query_page import write_query_page

    results = query(images, run, method, k)
    for res in results:
        typer.echo(format_result(res))
    typer.echo(f"wrote {write_query_page(results, html or run / 'query.html', run)}")


@app.command("demo")
def demo_cmd(out: Path = typer.Option(Path("runs/demo"), help="output folder"),
             photos: Optional[Path] = typer.Option(None, help="your own folder of photos (default: the real photos "
                                                   "shipped in scikit-image, scikit-learn and matplotlib)"),
             views: int = typer.Option(6, min=2, help="warped views per photo"),
             size: int = typer.Option(320, min=32, help="long side of the warped views in pixels"),
             synthetic: bool = typer.Option(True, help="also the 3D synthetic objects wearing the photos (cameras: rrt-maxepi)"),
             num_instances: int = typer.Option(24, min=2, help="synthetic object instances"),
             num_views: int = typer.Option(5, min=2, help="views per synthetic instance"),
             image_size: int = typer.Option(224, min=32, help="synthetic image side in pixels"),
             rrt_epochs: int = typer.Option(15, min=0, help="RRT training epochs on the train split"),
             config: Optional[Path] = typer.Option(None, "--config", "-c", help="experiment YAML (default configs/demo.yaml)"),
             overrides: list[str] = SET_OPT,
             quiet: bool = QUIET_OPT) -> None:
    """Real photos -> warped benchmark (+ 3D objects wearing them) -> real-weight features -> every reranker -> reports.

    Example: relook demo --out runs/demo   # what `make demo` runs
    Example: relook demo --photos my_photos/ --out runs/mine
    """
    from relook.demo import run_demo

    paths = run_demo(out, photos, views, size, synthetic, num_instances, num_views, image_size, rrt_epochs, overrides,
                     config, progress=not quiet, log=typer.echo)
    for path in paths:
        typer.echo(f"wrote {path}")


def _print_version(value: bool) -> None:
    if value:
        from relook import __version__

        typer.echo(f"relook {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="print relook's version and exit")) -> None:
    """Instance-level image retrieval that looks again at its shortlist."""


def _click_classes(name: str) -> tuple[type, ...]:
    """The exception class ``name`` of typer's bundled click and of click itself (whichever exist)."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _usage_line(e: Exception) -> str:
    """A click/typer usage error as one line: the message and where to find the usage."""
    message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"error: {message}{where}"


class _Interrupted:
    """SIGINT handler for ``main``: remembers the interruption, then interrupts as Python's default does."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app. A ``RelookError`` or a usage error (unknown option or command, a bad
    option value) becomes one line ``error: ...`` on stderr and exit code 2; Ctrl-C prints ``interrupted``
    and exits 130 (typer turns an interruption into a plain return code, so a handler records it)."""
    import signal
    import threading

    interrupted = _Interrupted()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, interrupted)
    try:
        code = app(args=argv, prog_name="relook", standalone_mode=False)
    except RelookError as e:
        typer.echo(f"error: {' '.join(str(e).split())}", err=True)
        return 2
    except OSError as e:  # the file system refused (no permission, a file where a folder must be, disk full)
        if not e.filename:
            raise
        typer.echo(f"error: {e.filename}: {e.strerror or type(e).__name__}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        interrupted.seen = True
        code = 130
    except Exception as e:
        if isinstance(e, _click_classes("NoArgsIsHelpError")):  # `relook`, or a group alone: its help
            e.show()  # type: ignore[attr-defined]
            return 2
        if isinstance(e, _click_classes("ClickException")):  # usage errors, bad option values
            typer.echo(_usage_line(e), err=True)
            return 2
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted.seen or code == 130:  # typer returns 130 for a KeyboardInterrupt raised in a command
        typer.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
