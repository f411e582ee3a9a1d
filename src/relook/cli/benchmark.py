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
    results = run_benchmark(bench, extra_test, eval_only, progress=not quiet, log=lambda m: say(quiet, m))
    typer.echo(markdown(results))
    say(quiet, f"wrote {Path(bench['out']) / 'results.md'}")


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark_cmd)
