"""`relook datasets ...`: build CO3D-Retrieve, make the synthetic and warped-photo benchmarks, list the readers."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True, help="Dataset readers, CO3D-Retrieve builder, synthetic and warped-photo benchmarks."
)


@app.command("build-co3d-retrieve")
def build_co3d_retrieve_cmd(
    root: Path = typer.Argument(..., help="CO3Dv2 root (holds <category>/frame_annotations.jgz)"),
    out: Path = typer.Argument(..., help="output folder for manifest.json and masked/"),
    seed: int = typer.Option(0, min=0, help="seed of the train/test instance split"),
    num_frames: int = typer.Option(5, min=1, help="frames per video (paper: 5)"),
    step_deg: float = typer.Option(72.0, help="degrees about the object between frames"),
    masked: bool = typer.Option(True, help="also write the masked-background images"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Pick 5 frames ~72 degrees apart per video, split instances in seeded halves, write the manifest.

    Example: relook datasets build-co3d-retrieve /data/co3d runs/co3d_retrieve
    """
    from relook.datasets.co3d_retrieve import build_co3d_retrieve, read_manifest

    path = build_co3d_retrieve(
        root, out, seed=seed, num_frames=num_frames, step_deg=step_deg, masked=masked, progress=progress
    )
    frames = read_manifest(path)["frames"]
    path = path / "manifest.json"
    for split in ("train", "test"):
        sel = [r for r in frames if r["split"] == split]
        typer.echo(f"{split}: {len(sel)} images of {len({r['instance'] for r in sel})} instances")
    typer.echo(f"wrote {path}")


@app.command("synthetic")
def synthetic_cmd(
    out: Path = typer.Argument(..., help="output folder (CO3Dv2 layout)"),
    num_instances: int = typer.Option(60, min=1, help="object instances (one video each)"),
    num_views: int = typer.Option(5, min=1, help="views per instance, 360/num_views degrees apart"),
    image_size: int = typer.Option(224, min=16, help="square image side in pixels"),
    seed: int = typer.Option(0, min=0, help="seed of everything generated"),
    shared_textures: bool = typer.Option(True, help="draw part of the textures from shared pools"),
    textures: Path = typer.Option(None, help="folder of real photos the objects wear (one per object)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Write the synthetic multi-view benchmark (exact cameras, masks, depth) in the CO3Dv2 layout.

    Example: relook datasets synthetic runs/synth --num-instances 60 --num-views 5 --textures my_photos/
    """
    from relook.datasets.synthetic import generate_synthetic

    path = generate_synthetic(
        out,
        num_instances=num_instances,
        num_views=num_views,
        image_size=image_size,
        seed=seed,
        shared_textures=shared_textures,
        textures=textures,
        progress=progress,
    )
    typer.echo(f"wrote {num_instances} x {num_views} synthetic views to {path}")


@app.command("warp")
def warp_cmd(
    photos: Path = typer.Argument(..., help="folder of real photos (.jpg/.png, at any depth); one group each"),
    out: Path = typer.Argument(..., help="output folder: <split>/<group>/<k>.jpg, H_0_<k>.txt, groups.csv"),
    views: int = typer.Option(5, "--views", min=2, help="views per photo: the photo itself + views-1 warps"),
    seed: int = typer.Option(0, min=0, help="seed of everything drawn (same seed: byte-identical files)"),
    size: int = typer.Option(480, min=32, help="long side of every view in pixels"),
    test_fraction: float = typer.Option(0.3, min=0.0, max=1.0, help="share of the photos in the test split"),
    occluders: bool = typer.Option(True, help="1-3 random filled rectangles/ellipses on each warped view"),
    photometric: bool = typer.Option(True, help="contrast, brightness, gamma, blur and JPEG quality changes"),
    image_format: str = typer.Option("jpg", "--format", help="jpg, or png (lossless: for checking H)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Make a retrieval benchmark from your photos: random homographies with the exact H to every view.

    Finished photos are skipped on a rerun. Read it with the folder dataset, e.g. in a config:
    dataset: {name: folder, root: OUT, csv: groups.csv, split: test} (or {name: warp, root: OUT}).

    Example: relook datasets warp ../shared/data/photos/Kodak24 runs/warp --views 5 --seed 0
    """
    from relook.datasets.warp import generate_warp

    path = generate_warp(
        photos,
        out,
        views=views,
        seed=seed,
        size=size,
        test_fraction=test_fraction,
        occluders=occluders,
        photometric=photometric,
        image_format=image_format,
        progress=progress,
    )
    lines = (path / "groups.csv").read_text().splitlines()[1:]
    for split in ("train", "test"):
        rows = [r.split(",") for r in lines if r.endswith("," + split)]
        typer.echo(f"{split}: {len({r[1] for r in rows})} photos, {len(rows)} images")
    typer.echo(
        f"wrote {path / 'groups.csv'}; read it as dataset {{name: folder, root: {path}, csv: groups.csv, split: test}}"
    )


@app.command("info")
def info_cmd(
    name: str = typer.Argument(..., help="registered reader, e.g. roxford5k, sop, co3d_retrieve"),
    root: Path = typer.Argument(..., help="the dataset's official folder"),
    option: list[str] = typer.Option([], "--option", "-o", help="reader option key=value (repeatable)"),
    verify: bool = typer.Option(False, help="decode every image once (finds corrupt files)"),
) -> None:
    """Read a dataset and print its size and protocol; optionally decode every image.

    Example: relook datasets info sop /data/Stanford_Online_Products -o split=test --verify
    """
    from relook.cli.common import parse_kv
    from relook.datasets import load_dataset
    from relook.datasets.verify import verify_images

    ds = load_dataset(name, root, **parse_kv(option, "--option"))
    typer.echo(repr(ds))
    if verify:
        typer.echo(f"decoded {verify_images(ds, progress=True)} images")


@app.command("list")
def list_cmd() -> None:
    """List the registered dataset readers.

    Example: relook datasets list
    """
    import relook.datasets  # noqa: F401
    from relook.datasets.base import DATASETS

    for name in DATASETS.names():
        typer.echo(name)
