"""``relook visualize ot``: importance heatmaps and top transport pairs of the OT reranker (thin CLI)."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import resolve_conf, subgroup


def visualize_ot(
    query_id: str = typer.Argument(..., help="query image id (in the query store)"),
    match_id: str = typer.Argument(..., help="candidate image id (in the gallery store)"),
    query_store: Path = typer.Option(..., help="store written by the vit_tokens extractor"),
    gallery_store: Path = typer.Option(None, help="gallery store (default: the query store)"),
    query_image: Path = typer.Option(None, help="query image file (default: IMAGE_ROOT/QUERY_ID)"),
    match_image: Path = typer.Option(None, help="candidate image file (default: IMAGE_ROOT/MATCH_ID)"),
    image_root: Path = typer.Option(Path("."), help="folder the image ids are relative to"),
    output: Path = typer.Option(..., "--output", "-o", help="PNG to write"),
    marginal: str = typer.Option("relevancy", help="uniform | cross | relevancy"),
    partial: float = typer.Option(
        1.0, min=0.0, max=1.0, help="transported mass a (1 = standard OT; 0.9 = SOP setting)"
    ),
    eps: float = typer.Option(0.05, min=1e-6, help="entropic regularisation of Sinkhorn"),
    top: int = typer.Option(5, min=1, help="number of top matching patch pairs drawn"),
) -> None:
    """Draw the patch-importance heatmaps of a pair and its top matching patch pairs (highest T_ij S_ij).

    The title names the backbone and the weights record of the store the tokens came from.

    Example: relook visualize ot q/001.jpg db/042.jpg --query-store q.h5 --gallery-store db.h5 --image-root data/ -o pair.png
    """
    from relook.viz.ot import ot_figure

    ot_figure(
        query_id,
        match_id,
        query_store,
        output,
        gallery_store,
        query_image,
        match_image,
        image_root,
        marginal,
        partial,
        eps,
        top,
    )
    typer.echo(f"wrote {output}")


def visualize_ot_sweep(
    config: list[Path] = typer.Option(..., "--config", "-c", help="experiment YAML(s)"),
    overrides: list[str] = typer.Option([], "--set", "-s", help="key=value config overrides"),
    reranker: str = typer.Option("", help="label of the ot reranker to sweep (default: the first)"),
    masses: str = typer.Option("0.5,0.6,0.7,0.8,0.9,1.0", help="comma-separated values of a"),
    output: Path = typer.Option(None, "--output", "-o", help="PNG (default <out>/ot_mass_sweep.png)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Fig. 3 of the OT paper: rerank with each transported mass a, plot P@1 / R-Precision / MAP@R against a.

    Needs the features and the shortlist (run `relook run` first). Example:
    relook visualize ot-sweep -c configs/ot_sop.yaml --masses 0.7,0.8,0.9,1.0
    """
    from relook.viz.ot import sweep_mass

    conf = resolve_conf(config, overrides, writes=False)
    values = [float(v) for v in masses.split(",") if v.strip()]
    path, table = sweep_mass(conf, values, reranker or None, output, progress=not quiet)
    for a, row in table.items():
        typer.echo(f"a={a:g}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items()))
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Attach ``visualize ot`` and ``visualize ot-sweep`` to ``app`` (the group is created when missing)."""
    group = subgroup(app, "visualize", "Write PNG visualisations.")
    group.command("ot")(visualize_ot)
    group.command("ot-sweep")(visualize_ot_sweep)
