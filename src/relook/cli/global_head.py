"""`relook train global`: the learned 128-d global head on a frozen CNN (thin: parse, call train/global_head.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from relook.cli.common import (
    CONFIG_OPT,
    DEVICE_OPT,
    SEED_OPT,
    SET_OPT,
    TRAIN_OUT_OPT,
    subgroup,
    train_config,
    training_dataset,
)


def train_global_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    out: Path | None = TRAIN_OUT_OPT,
    device: str | None = DEVICE_OPT,
    seed: int | None = SEED_OPT,
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(True, help="show progress bars"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars and no 'wrote ...' line"),
) -> None:
    """Train the learned 128-d head (1x1 conv + GeM global) on a frozen CNN's grid, shared by RRT and OT.

    A 1x1 conv W (C -> 128, with bias) on the frozen backbone's map gives the locals, W GeM(map) + b
    (L2-normalised) the global descriptor; a batch-wise contrastive loss (or multi_similarity) on
    class-balanced batches trains it. Use it as cnn_local / vit_tokens `projection: OUT/head.pt`.
    Config keys (relook.train.config): dataset, out, backbone (cnn_local options), train (loss, dim, ...).

    Example: relook train global -s dataset.name=warp -s dataset.root=runs/warp -s dataset.split=train
             -o runs/head -s train.epochs=10
    """
    from relook.train.config import save_train_config
    from relook.train.global_head import train_global_head

    conf = train_config("global", config, overrides, out=out, **{"train.device": device, "train.seed": seed})
    options = {k: v for k, v in conf["dataset"].items() if k not in ("name", "root")}
    path = train_global_head(
        training_dataset(conf),
        conf["out"],
        conf["train"],
        {"device": conf["train"]["device"], **conf["backbone"]},
        resume=resume,
        progress=progress and not quiet,
        data_record={"options": json.loads(json.dumps(options, default=str))},
    )
    save_train_config(conf, conf["out"])
    if not quiet:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Attach ``relook train global`` to ``app``'s ``train`` group (created when missing)."""
    subgroup(app, "train", "Train models (RRT, DToP).").command("global")(train_global_cmd)
