"""``relook train dtop`` and ``relook train dtop-whitening``: thin wrappers over train/dtop.py and
models/whitening.py."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from relook.cli.common import parse_kv

app = typer.Typer(no_args_is_help=True, help="Train models (DToP global descriptor and its whitening).")


def _labelled(dataset: str, root: Path, opts: list[str]):
    from relook.datasets.base import load_dataset
    from relook.errors import DataError

    ds = load_dataset(dataset, root, **parse_kv(opts, "--dataset-opt"))
    if ds.gallery_labels is None:
        raise DataError(
            f"dataset {dataset!r} at {root} has no image labels (protocol {ds.protocol}); "
            "DToP trains on a labelled training split"
        )
    return ds


@app.command("dtop")
def train_dtop_cmd(
    dataset: str = typer.Option(..., help="registered dataset with labels, e.g. co3d_retrieve"),
    root: Path = typer.Option(..., help="dataset root"),
    out: Path = typer.Option(..., "--out", "-o", help="run folder (config.yaml, checkpoint.pt, history.json)"),
    dataset_opt: list[str] = typer.Option([], help="dataset option key=value, e.g. split=train (repeatable)"),
    config: Path | None = typer.Option(None, help="YAML with train options (train/dtop.py DEFAULT_CONF)"),
    model: str = typer.Option("{}", help='JSON of DToP options, e.g. \'{"backbone": "vit_b16"}\''),
    epochs: int | None = typer.Option(None, min=1, help="number of epochs"),
    batch_size: int | None = typer.Option(None, min=1, help="mini-batch size (paper: 64)"),
    sampling: str | None = typer.Option(None, help="group | fixed"),
    max_size: int | None = typer.Option(None, min=16, help="longer side of training batches"),
    device: str | None = typer.Option(None, help="auto | cpu | cuda"),
    resume: bool = typer.Option(True, help="continue from OUT/checkpoint.pt when present"),
) -> None:
    """Train DToP with ArcFace on a labelled split; checkpoint every epoch (torchrun for several GPUs).

    Example: relook train dtop --dataset co3d_retrieve --root data/co3dr --dataset-opt split=train
    -o runs/dtop --model '{"backbone": "timm:vit_small_patch16_224"}' --epochs 5
    """
    import yaml

    from relook.train.dtop import train_dtop

    conf = yaml.safe_load(config.read_text()) if config else {}
    conf["model"] = {**conf.get("model", {}), **json.loads(model)}
    for key, val in dict(
        epochs=epochs, batch_size=batch_size, sampling=sampling, max_size=max_size, device=device
    ).items():
        if val is not None:
            conf[key] = val
    ds = _labelled(dataset, root, dataset_opt)
    if conf["model"].get("backbone") == "dinov2_s14_imgfocus":  # frozen real ViT, cached tokens: cli/dtop_vit.py
        from relook.cli.dtop_vit import train_frozen_vit

        typer.echo(f"wrote {train_frozen_vit(conf, ds, out)}")
        return
    items = [(p, b) for _, p, b in ds.gallery]
    ckpt = train_dtop(conf, items, ds.gallery_labels, out, resume=resume)
    typer.echo(f"wrote {ckpt}")


@app.command("dtop-whitening")
def train_whitening_cmd(
    store: Path = typer.Argument(..., help="feature store with the training images' global_desc"),
    dataset: str = typer.Option(..., help="registered dataset with labels (its gallery = training images)"),
    root: Path = typer.Option(..., help="dataset root"),
    out: Path = typer.Option(..., "--out", "-o", help="whitening file (.npz) to write"),
    dataset_opt: list[str] = typer.Option([], help="dataset option key=value (repeatable)"),
    kind: str = typer.Option("supervised", help="supervised (matching pairs) | pca"),
    max_pairs: int = typer.Option(100000, min=1, help="at most this many matching pairs (seeded subset)"),
) -> None:
    """Learn whitening of global descriptors: supervised from matching pairs, or PCA.

    Supervised: the dataset's own (query, positive) pairs where it has them (SfM-120k's official pairs),
    else same-label pairs; the rotation is computed over all the dataset's images.

    Example: relook train dtop-whitening runs/train.h5 --dataset co3d_retrieve --root data/co3dr
    --dataset-opt split=train -o runs/whiten.npz
    """
    from relook.errors import ConfigError
    from relook.models.whitening import (
        learn_pca_whitening,
        learn_supervised_whitening,
        pairs_from_labels,
        save_whitening,
    )
    from relook.store import FeatureStore

    ds = _labelled(dataset, root, dataset_opt)
    with FeatureStore(store, "r") as fs:
        x = fs.stack("global_desc", ds.gallery_ids)
    if kind == "supervised":
        pairs = ds.info.get("pairs")
        if pairs is None:
            pairs = pairs_from_labels(ds.gallery_labels, max_pairs)
        mean, proj = learn_supervised_whitening(x, pairs)
    elif kind == "pca":
        mean, proj = learn_pca_whitening(x)
    else:
        raise ConfigError(f"--kind must be supervised or pca, got {kind!r}")
    save_whitening(out, mean, proj, kind)
    typer.echo(f"wrote {out}: {kind} whitening {proj.shape[1]} -> {proj.shape[0]} dims")
