"""`relook train global`: the learned 128-d global head on a frozen CNN (thin: parse, call train/global_head.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from relook.cli.common import parse_kv, subgroup


def train_global_cmd(
    dataset: str = typer.Option(..., help="registered dataset with image labels, e.g. warp or folder"),
    root: Path = typer.Option(..., help="dataset root"),
    out: Path = typer.Option(
        ..., "--out", "-o", help="output folder (head.pt, head.json, checkpoint.pt, log.jsonl, train_conf.json)"
    ),
    dataset_opt: list[str] = typer.Option([], help="dataset option key=value (repeatable), e.g. split=train"),
    backbone_opt: list[str] = typer.Option(
        [],
        help="cnn_local option key=value of the frozen backbone "
        "(repeatable), e.g. arch=tf_efficientnet_lite0, image_size=224",
    ),
    loss: str | None = typer.Option(
        None, help="contrastive (default, seed 002) | multi_similarity | softmax (official SOP: temperature 0.05)"
    ),
    loss_opt: list[str] = typer.Option([], help="loss parameter key=value, e.g. neg_margin=0.8"),
    dim: int | None = typer.Option(None, min=1, help="head dims, locals and global (default 128)"),
    epochs: int | None = typer.Option(None, min=1, help="epochs (default 10)"),
    lr: float | None = typer.Option(None, min=0.0, help="AdamW learning rate (default 1e-3)"),
    weight_decay: float | None = typer.Option(None, min=0.0, help="AdamW weight decay (default 1e-4)"),
    labels_per_batch: int | None = typer.Option(None, min=2, help="labels per class-balanced batch (default 32)"),
    per_label: int | None = typer.Option(None, min=2, help="images per label in a batch (default 4)"),
    seed: int = typer.Option(0, min=0, help="seed of the initial (seeded) projection and of the batches"),
    device: str = typer.Option("cpu", help="torch device"),
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(True, help="show progress bars"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars and no 'wrote ...' line"),
) -> None:
    """Train the learned 128-d head (1x1 conv + GeM global) on a frozen CNN's grid, shared by RRT and OT.

    A 1x1 conv W (C -> 128, with bias) on the frozen backbone's map gives the locals, W GeM(map) + b
    (L2-normalised) the global descriptor; a batch-wise contrastive loss (or multi_similarity) on
    class-balanced batches trains it. Use it as cnn_local / vit_tokens `projection: OUT/head.pt`.

    Example: relook train global --dataset warp --root runs/warp --dataset-opt split=train -o runs/head --epochs 10
    """
    from relook.datasets.base import load_dataset
    from relook.io import ensure_dir
    from relook.train.global_head import resolve_conf, train_global_head

    ensure_dir(out, "--out")  # before any work
    conf = resolve_conf(
        {
            "loss": loss,
            "loss_params": parse_kv(loss_opt, "--loss-opt"),
            "dim": dim,
            "epochs": epochs,
            "lr": lr,
            "weight_decay": weight_decay,
            "labels_per_batch": labels_per_batch,
            "per_label": per_label,
            "seed": seed,
            "device": device,
        }
    )
    bconf = {"device": device, **parse_kv(backbone_opt, "--backbone-opt")}
    options = parse_kv(dataset_opt, "--dataset-opt")
    ds = load_dataset(dataset, root, **options)
    path = train_global_head(
        ds,
        out,
        conf,
        bconf,
        resume=resume,
        progress=progress and not quiet,
        data_record={"options": json.loads(json.dumps(options, default=str))},
    )
    if not quiet:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Attach ``relook train global`` to ``app``'s ``train`` group (created when missing)."""
    subgroup(app, "train", "Train models (RRT, DToP).").command("global")(train_global_cmd)
