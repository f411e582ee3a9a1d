"""`relook geometry ...` and `relook visualize epipolar-attention`: epipolar guidance tools (seed 002)."""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Epipolar geometry: pseudo ground-truth fundamental matrices.")


@app.command("pseudo-gt")
def pseudo_gt(pairs: Path = typer.Argument(..., help="text file, one pair per line: 'ID1 ID2' (image paths relative to --image-dir)"),
              image_dir: Path = typer.Option(..., "--image-dir", help="folder the ids are relative to"),
              output: Path = typer.Option(..., "--output", "-o", help="HDF5 file of F per pair (resumed if present)"),
              matcher: str = typer.Option("sift", help="sift (weight-free) or loftr (kornia; downloads weights)"),
              threshold: float = typer.Option(1.0, help="MAGSAC++ threshold in pixels"),
              seed: int = typer.Option(0, help="OpenCV RNG seed for MAGSAC++"),
              overwrite: bool = typer.Option(False, help="recompute every pair"),
              progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    """Pseudo ground-truth fundamental matrices: matches + MAGSAC++, reliability rule of Sec. 5.2.

    Example: relook geometry pseudo-gt pairs.txt --image-dir data/co3d -o runs/pgt.h5 --matcher sift
    """
    from relook.errors import DataError
    from relook.geometry.robust import main, read_pseudo_gt
    from relook.images import load_image

    if not pairs.exists():
        raise DataError(f"{pairs}: pairs file not found")
    todo = [tuple(line.split()[:2]) for line in pairs.read_text().splitlines() if line.strip() and not line.startswith("#")]
    bad = [p for p in todo if len(p) != 2]
    if bad:
        raise DataError(f"{pairs}: each line needs two ids, got {bad[0]}")
    main({"matcher": matcher, "ransac_threshold": threshold, "seed": seed}, todo,
         lambda i: load_image(image_dir / i), output, overwrite=overwrite, progress=progress)
    res = read_pseudo_gt(output, todo)
    n_ok = sum(r["reliable"] for r in res.values())
    typer.echo(f"wrote {output}: {len(res)} pairs, {n_ok} reliable")


visualize_app = typer.Typer(no_args_is_help=True, help="Plots (PNG) of what the models learned.")
