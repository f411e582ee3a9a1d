"""The config-driven experiment stages (``relook extract``, ``index``, ``search``, ``rerank``, ``evaluate``,
``run``, ``report``), ``relook query`` and ``relook demo``: top-level commands, thin over the library."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import CONFIG_OPT, QUIET_OPT, SET_OPT, SHARD_OPT, resolve_conf, save_conf, say

app = typer.Typer()  # its commands are added to the root app's top level (relook/cli/__init__.py)


@app.command("extract")
def extract_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    model: str | None = typer.Option(None, help="run only this extractor (e.g. dtop), default options"),
    shard: str | None = SHARD_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Run the configured extractors over the dataset into features/<label>/*.h5 (resumes per image).

    Scale-out: under torchrun --nproc_per_node=N each process extracts every N-th image into its own
    part (gallery.h5.part0-of-N, ...) and rank 0 merges them into gallery.h5; a rerun resumes the parts.
    Any other driver: one `relook extract --shard i/N` per i (a bash loop, a SLURM array), then `relook merge`.

    Example: relook extract -c configs/demo.yaml -s dataset.root=runs/demo/co3d_retrieve
             relook extract -c configs/roxford5k.yaml --model dtop -s out=runs/rox_dtop
             torchrun --nproc_per_node=4 -m relook.cli extract -c configs/folder.yaml -s dataset.root=photos
             relook extract -c configs/folder.yaml --shard 2/8   # then: relook merge -c configs/folder.yaml
    """
    from relook import pipeline
    from relook.distributed import world
    from relook.sharding import parse_shard

    if model:
        overrides = [*overrides, f"extractors=[{{name: {model}}}]", "global=null"]
    part = parse_shard(shard)
    conf = resolve_conf(config, overrides, shared=part is not None, announce=None if quiet else "extract")
    stores = pipeline.extract(conf, progress=not quiet, shard=part)
    if world()[0] == 0:
        for label, (q, g) in stores.items():
            say(quiet, f"{label}: {g}" + (f", {q}" if q != g else "") + (f" (shard {part} part)" if part else ""))
    save_conf(conf)


@app.command("index")
def index_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    overwrite: bool = typer.Option(False, help="rebuild even if up to date"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Build the faiss index of the gallery's global descriptors (flat, or shortlist.index=ivfpq).

    Example: relook index -c configs/demo.yaml
    """
    from relook import pipeline

    conf = resolve_conf(config, overrides)
    say(quiet, f"wrote {pipeline.index(conf, overwrite)}")
    save_conf(conf)


@app.command("search")
def search_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    overwrite: bool = typer.Option(False, help="search again even if up to date"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Global top-k shortlist of every query -> <out>/shortlist.npz.

    Example: relook search -c configs/demo.yaml -s shortlist.k=500
    """
    from relook import pipeline

    conf = resolve_conf(config, overrides)
    say(quiet, f"wrote {pipeline.search(conf, overwrite)}")
    save_conf(conf)


@app.command("rerank")
def rerank_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    methods: str = typer.Option("", help="comma-separated reranker labels (default: all configured)"),
    overwrite: bool = typer.Option(False, help="rerank again even if up to date"),
    shard: str | None = SHARD_OPT,
    shortlist: Path | None = typer.Option(
        None, help="rerank this shortlist of another system instead (CSV query,gallery,score or NPZ)"
    ),
    image_root: Path | None = typer.Option(None, help="--shortlist: folder the image ids are paths under"),
    output: Path | None = typer.Option(None, help="--shortlist: reranked list to write (same format)"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Run rerankers on the same shortlist, then print one table of metrics and time per query.

    With --shortlist FILE: rerank another system's shortlist, images found by id under --image-root;
    extractors and rerankers from -c (default: those of configs/folder.yaml), stores in its out folder.

    Example: relook rerank -c configs/demo.yaml --methods gv,aqe,asmk,rrt,ot
             relook rerank -c configs/demo.yaml --shard 0/4   # then: relook merge -c configs/demo.yaml
             relook rerank --shortlist top100.csv --image-root photos --methods gv --output reranked.csv
    """
    from relook import pipeline
    from relook.sharding import parse_shard

    labels = [m.strip() for m in methods.split(",") if m.strip()] or None
    if shortlist is not None:
        from relook.external import rerank_external

        if shard:
            from relook.errors import ConfigError

            raise ConfigError("--shard applies to a config's own shortlist, not to --shortlist FILE")
        outs = rerank_external(
            shortlist, labels or ["gv"], output, image_root, None, config or None, overrides, progress=not quiet
        )
        for label, path in outs.items():
            typer.echo(f"{label}: wrote {path}")
        return
    part = parse_shard(shard)
    announce = None if quiet else "rerank"
    conf = resolve_conf(config, overrides, shared=part is not None, announce=announce, labels=labels)
    outs = pipeline.rerank(conf, labels, overwrite, progress=not quiet, shard=part, log=lambda m: say(quiet, m))
    if part is not None:  # a part alone has no table: `relook merge` joins the parts, then `relook evaluate`
        for path in outs.values():
            say(quiet, f"wrote {path}")
    else:
        typer.echo(pipeline.results_table(pipeline.evaluate(conf)))
    save_conf(conf)


@app.command("evaluate")
def evaluate_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    shard: str | None = SHARD_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Print the metrics of the shortlist and every ranking (and write <out>/results.json).

    With --shard i/N: per-query metrics of that share of the queries into results.json.partI-of-N;
    `relook merge` then writes results.json (the same numbers as one process).

    Example: relook evaluate -c configs/demo.yaml
    """
    from relook import pipeline
    from relook.sharding import parse_shard

    part = parse_shard(shard)
    conf = resolve_conf(config, overrides, writes=False, lock=True, shared=part is not None)  # writes results
    if part is not None:
        from relook.shards import evaluate_part

        say(quiet, f"wrote {evaluate_part(conf, part)}")
        return
    typer.echo(pipeline.results_table(pipeline.evaluate(conf)))


@app.command("run")
def run_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    quiet: bool = QUIET_OPT,
    report: bool = typer.Option(True, help="write <out>/report.html and figures/ at the end"),
) -> None:
    """All stages in order: extract, index, search, rerank, evaluate, report (each skips finished work).

    Under torchrun the extraction is spread over the ranks (see `relook extract --help`); rank 0 alone
    runs the later stages.

    Example: relook run -c configs/demo.yaml
    """
    from relook import pipeline
    from relook.distributed import world
    from relook.eval.evaluate import check_has_positives

    conf = resolve_conf(config, overrides, writes=False, announce=None if quiet else "run")
    check_has_positives(pipeline.dataset_of(conf))  # before any work: nothing could be scored
    conf = resolve_conf(config, overrides)
    pipeline.extract(conf, progress=not quiet)
    if world()[0] != 0:
        return
    pipeline.search(conf)
    pipeline.rerank(conf, progress=not quiet, log=lambda m: say(quiet, m))
    results = pipeline.evaluate(conf)
    typer.echo(pipeline.results_table(results))
    if report:
        from relook.report import make_figures, write_report

        make_figures(conf)
        say(quiet, f"wrote {write_report(conf, results)}")
    save_conf(conf)


@app.command("report")
def report_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    queries: int = typer.Option(4, min=1, help="queries shown in the top-k grids"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Write <out>/report.html: what ran, results and commentary, time per stage, metrics against K,
    top-k grids, the queries each reranker helped and hurt most, other stages' figures.

    Example: relook report -c configs/demo.yaml
    """
    from relook import pipeline
    from relook.report import make_figures, write_report

    conf = resolve_conf(config, overrides, writes=False, lock=True)
    results = pipeline.evaluate(conf)
    make_figures(conf, num_queries=queries)
    say(quiet, f"wrote {write_report(conf, results)}")


@app.command("query")
def query_cmd(
    images: list[Path] = typer.Argument(..., help="query image file(s); need not be in the dataset"),
    run: Path = typer.Option(..., "--run", help="a finished run's folder (config.yaml, index.faiss)"),
    method: str | None = typer.Option(None, help="one of the run's reranker labels (default: global order)"),
    k: int = typer.Option(10, "-k", "--k", min=1, help="results shown per image"),
    html: Path | None = typer.Option(None, help="thumbnails page to write (default RUN/query.html)"),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="where the run's dataset is now, if it moved (replaces dataset.root)"
    ),
) -> None:
    """Rank a finished run's gallery for new images with the run's extractors, index and reranker.

    Prints rank, gallery id, the method's score, the global score and the rank change per image, and writes
    an HTML page of thumbnails. The run's stores must have been made with the weights its config loads now.

    Example: relook query photo.jpg --run runs/mine --method gv -k 5
             relook query photo.jpg --run /backup/mine --data-root /new/place/photos   # the photos moved
    """
    from relook.query import format_result, query
    from relook.runlock import lock_run
    from relook.viz.query_page import write_query_page

    lock_run(run, exclusive=False)  # many queries may read a run at once, none while it is written
    results = query(images, run, method, k, data_root=data_root)
    for res in results:
        typer.echo(format_result(res))
    typer.echo(f"wrote {write_query_page(results, html or run / 'query.html', run)}")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), help="output folder"),
    photos: Path | None = typer.Option(
        None,
        help="your own folder of photos (default: the real photos "
        "shipped in scikit-image, scikit-learn and matplotlib)",
    ),
    views: int = typer.Option(6, min=2, help="warped views per photo"),
    size: int = typer.Option(320, min=32, help="long side of the warped views in pixels"),
    synthetic: bool = typer.Option(True, help="also the 3D synthetic objects wearing the photos (cameras: rrt-maxepi)"),
    num_instances: int = typer.Option(24, min=2, help="synthetic object instances"),
    num_views: int = typer.Option(5, min=2, help="views per synthetic instance"),
    image_size: int = typer.Option(224, min=32, help="synthetic image side in pixels"),
    rrt_epochs: int = typer.Option(15, min=0, help="RRT training epochs on the train split"),
    config: Path | None = typer.Option(None, "--config", "-c", help="experiment YAML (default configs/demo.yaml)"),
    overrides: list[str] = SET_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Real photos -> warped benchmark (+ 3D objects wearing them) -> real-weight features -> every reranker -> reports.

    Example: relook demo --out runs/demo   # what `make demo` runs
    Example: relook demo --photos my_photos/ --out runs/mine
    """
    from relook.demo import run_demo

    paths = run_demo(
        out,
        photos,
        views,
        size,
        synthetic,
        num_instances,
        num_views,
        image_size,
        rrt_epochs,
        overrides,
        config,
        progress=not quiet,
        log=typer.echo,
    )
    for path in paths:
        typer.echo(f"wrote {path}")
