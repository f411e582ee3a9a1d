"""`relook geometry ...` and `relook visualize epipolar-attention`: epipolar guidance tools (seed 002)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Epipolar geometry: pseudo ground-truth fundamental matrices.")


@app.command("pseudo-gt")
def pseudo_gt(
    pairs: Path = typer.Argument(
        ..., help="text file, one pair per line: 'ID1 ID2' (image paths relative to --image-dir)"
    ),
    image_dir: Path = typer.Option(..., "--image-dir", help="folder the ids are relative to"),
    output: Path = typer.Option(..., "--output", "-o", help="HDF5 file of F per pair (resumed if present)"),
    matcher: str = typer.Option(
        "sift", help="sift (weight-free), loftr (kornia; downloads weights), aliked+lightglue, disk+lightglue"
    ),
    threshold: float = typer.Option(1.0, min=0.0, help="MAGSAC++ threshold in pixels"),
    seed: int = typer.Option(0, min=0, help="OpenCV RNG seed for MAGSAC++"),
    overwrite: bool = typer.Option(False, help="recompute every pair"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Pseudo ground-truth fundamental matrices: matches + MAGSAC++, reliability rule of Sec. 5.2.

    Example: relook geometry pseudo-gt pairs.txt --image-dir data/co3d -o runs/pgt.h5 --matcher sift
    """
    from relook.errors import DataError
    from relook.geometry.robust import main, read_pseudo_gt
    from relook.images import load_image

    if not pairs.exists():
        raise DataError(f"{pairs}: pairs file not found")
    todo = [
        tuple(line.split()[:2]) for line in pairs.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    bad = [p for p in todo if len(p) != 2]
    if bad:
        raise DataError(f"{pairs}: each line needs two ids, got {bad[0]}")
    main(
        {"matcher": matcher, "ransac_threshold": threshold, "seed": seed},
        todo,
        lambda i: load_image(image_dir / i),
        output,
        overwrite=overwrite,
        progress=progress,
    )
    res = read_pseudo_gt(output, todo)
    n_ok = sum(r["reliable"] for r in res.values())
    typer.echo(f"wrote {output}: {len(res)} pairs, {n_ok} reliable")


@app.command("pseudo-gt-shortlist")
def pseudo_gt_shortlist_cmd(
    config: list[Path] = typer.Option(..., "--config", "-c", help="experiment YAML file(s)"),
    overrides: list[str] = typer.Option([], "--set", "-s", help="override a config value"),
    output: Path = typer.Option(..., "--output", "-o", help="HDF5 file of F per pair"),
    top_k: int | None = typer.Option(None, min=1, help="shortlist entries per query (default: the rerankers' top_k)"),
    matcher: str = typer.Option(
        "sift", help="sift (weight-free), loftr (kornia, as the paper), aliked+lightglue, disk+lightglue"
    ),
    threshold: float = typer.Option(1.0, min=0.0, help="MAGSAC++ threshold in pixels"),
    seed: int = typer.Option(0, min=0, help="OpenCV RNG seed for MAGSAC++"),
    overwrite: bool = typer.Option(False, help="recompute every pair"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Pseudo ground-truth F of every (query, candidate) pair of a run's shortlist: the input an RRT trained
    with guidance.kind=epe needs at reranking (reranker option pseudo_gt=FILE; Sec. 5.2 of the epipolar paper).

    Example: relook geometry pseudo-gt-shortlist -c configs/co3d_retrieve.yaml -o runs/co3d/pgt_test.h5 --top-k 100
    """
    from relook.experiment import load_config
    from relook.geometry.robust import read_pseudo_gt
    from relook.pipeline import pseudo_gt_shortlist

    conf = load_config(config, overrides)
    path = pseudo_gt_shortlist(
        conf,
        output,
        top_k,
        {"matcher": matcher, "ransac_threshold": threshold, "seed": seed},
        overwrite=overwrite,
        progress=progress,
    )
    res = read_pseudo_gt(path)
    typer.echo(f"wrote {path}: {len(res)} pairs, {sum(r['reliable'] for r in res.values())} reliable")


def visualize_epipolar_attention(
    checkpoint: Path = typer.Argument(..., help="RRT checkpoint (relook format)"),
    store: Path = typer.Argument(..., help="feature store holding both images (7x7 grid locals)"),
    query_id: str = typer.Argument(..., help="first image id"),
    candidate_id: str = typer.Argument(..., help="second image id"),
    dataset: str = typer.Option("co3d_retrieve", help="registered dataset with info['cameras'] (K, R, t)"),
    root: Path = typer.Option(..., help="dataset root"),
    split: str = typer.Option("test", help="dataset split holding both images"),
    variant: str = typer.Option("full", help="dataset variant (full | masked)"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write"),
    net_size: int = typer.Option(224, min=16, help="square network input size the grid covers"),
) -> None:
    """Predicted s x s x s x s cross-attention next to the ground-truth epipolar grid (Fig. 4), and the
    share of attention on epipolar cells for this pair. Cameras are used for the ground truth only.

    Example: relook visualize epipolar-attention runs/rrt_epi/checkpoint.pt test.h5 ID1 ID2
    --root runs/syn/co3d_retrieve -o epi.png
    """
    from relook.viz.epipolar import epipolar_attention_figure

    _, summary = epipolar_attention_figure(
        checkpoint, store, query_id, candidate_id, root, out, dataset, split, variant, net_size
    )
    typer.echo(f"wrote {out}: {summary}")


def register(root: typer.Typer) -> None:
    """Attach ``geometry`` and ``visualize epipolar-attention`` to the main app (groups created when missing)."""
    root.add_typer(app, name="geometry")
    from relook.cli.common import subgroup

    subgroup(root, "visualize", "Write PNG visualisations.").command("epipolar-attention")(visualize_epipolar_attention)
