"""`relook benchmark`: the standard suite on real multi-view photos, one table (thin over relook.benchmark)."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import QUIET_OPT, SET_OPT, say


def benchmark_cmd(
    config: list[Path] = typer.Option(
        [Path("configs/benchmark.yaml")], "--config", "-c", help="benchmark YAML file(s); later ones override"
    ),
    overrides: list[str] = SET_OPT,
    extra_test: list[Path] = typer.Option(
        [], "--extra-test", help="a folder dataset (sub-folders or groups.csv) added as a zero-shot test set"
    ),
    eval_only: bool = typer.Option(
        False, "--eval-only", help="train nothing: learned rows and the ASMK codebook only from shipped files"
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="output folder (default: the config's out)"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Run global, gv, gv-lightglue, aqe, asmk, chamfer, ot and the learned rows on every test set; write
    results.md, results.json and deltas.png (settings chosen on the val halves, test read once).

    Example: relook benchmark -c configs/benchmark.yaml --extra-test my_photos/
    """
    from relook.benchmark import load_benchmark_config, run_benchmark
    from relook.benchmark_report import markdown
    from relook.io import ensure_dir

    bench = load_benchmark_config(config, [*overrides, *([f"out={out}"] if out else [])])
    ensure_dir(bench["out"], "out")
    say(quiet, plan_line(bench, extra_test, eval_only))  # before run_benchmark imports the models (seconds)
    results = run_benchmark(bench, extra_test, eval_only, progress=not quiet, log=lambda m: say(quiet, m))
    typer.echo(markdown(results))
    say(quiet, f"wrote {Path(bench['out']) / 'results.md'}")


def plan_line(bench: dict, extra_test: list[Path], eval_only: bool) -> str:
    """The first line of a benchmark: which sets (under which data root), which rows and weights, where."""
    sets = [*bench["sets"], *(p.name for p in extra_test)]
    rows = [r["label"] + (f"({r['checkpoint']})" if r.get("checkpoint") else "") for r in bench["rows"]]
    train = (
        f"learned rows trained on {bench['train_set']}" if bench["train_set"] and not eval_only else "shipped weights"
    )
    return (
        f"benchmark: sets {', '.join(sets)} under {bench.get('data_root')} -> {bench['out']}; rows global, "
        f"{', '.join(rows)}; {train} (loading the models...)"
    )


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark_cmd)
