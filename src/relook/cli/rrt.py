"""`relook train rrt` and `relook visualize rrt-matches` (thin: parse, call the library, print)."""

from __future__ import annotations

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


def train_rrt_cmd(
    store: Path | None = typer.Argument(None, help="feature store of the training images (config key store)"),
    config: list[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    out: Path | None = TRAIN_OUT_OPT,
    device: str | None = DEVICE_OPT,
    seed: int | None = SEED_OPT,
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Train a Reranking Transformer with BCE on query/positive/hard-negative triplets from the top-100.

    Everything but the per-run flags is a config key (relook.train.config): dataset, store, out, model (RRT
    options), train (epochs, lr, ...), backbone, guidance. Recipes are config files under configs/train/.
    The resolved config is written to OUT/train.yaml. Several GPUs: the same command under torchrun
    --nproc_per_node=N -m relook.cli.

    Example: relook train rrt runs/syn/train.h5 -c configs/train/rrt-official-landmark.yaml -o runs/syn/rrt
             -s dataset.name=co3d_retrieve -s dataset.root=runs/syn/co3d_retrieve -s dataset.split=train
             -s train.epochs=15
    """
    from relook.train.config import save_train_config
    from relook.train.epipolar import guidance_hooks
    from relook.train.rrt_stage import train_rrt_stage

    conf = train_config("rrt", config, overrides, store=store, out=out, **{"train.device": device, "train.seed": seed})
    tc, g = conf["train"], dict(conf["guidance"])
    ds = training_dataset(conf)
    kind, pseudo_gt = g.pop("kind"), g.pop("pseudo_gt")
    hooks = guidance_hooks(kind, ds, conf["store"], pseudo_gt=pseudo_gt, **{"seed": tc["seed"], **g})
    path = train_rrt_stage(
        ds,
        conf["store"],
        conf["out"],
        conf["model"],
        tc,
        conf["backbone"],
        resume=resume,
        progress=progress,
        seed=tc["seed"],
        **hooks,
    )
    save_train_config(conf, conf["out"])
    typer.echo(f"wrote {path}")


def visualize_rrt_matches(
    checkpoint: Path = typer.Argument(..., help="RRT checkpoint (relook or official)"),
    store: Path = typer.Argument(..., help="feature store holding both images"),
    query_id: str = typer.Argument(..., help="query image id in STORE"),
    candidate_id: str = typer.Argument(..., help="candidate image id in STORE"),
    query_image: Path = typer.Option(..., help="query image file"),
    candidate_image: Path = typer.Option(..., help="candidate image file"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write"),
    max_locals: int | None = typer.Option(None, min=1, help="locals per image (default: the model's)"),
    max_lines: int | None = typer.Option(None, min=1, help="draw only the strongest N matches"),
) -> None:
    """Draw the correspondences RRT's last-layer attention implies (linear sum assignment, supp. Sec. E).

    Example: relook visualize rrt-matches rrt.pt test.h5 q001 g042 --query-image q.jpg --candidate-image g.jpg -o matches.png
    """
    from relook.images import load_image
    from relook.models.rrt.checkpoint import load_rrt
    from relook.models.rrt.correspondences import rrt_correspondences
    from relook.models.rrt.inputs import required_fields
    from relook.store import FeatureStore
    from relook.viz.correspondences import draw_matches

    model = load_rrt(checkpoint)
    with FeatureStore(store, "r") as st:
        fields = lambda i: required_fields(model.conf) + (["attention"] if "attention" in st.fields(i) else [])  # noqa: E731
        q, c = st.read(query_id, fields(query_id)), st.read(candidate_id, fields(candidate_id))
    m = rrt_correspondences(model, q, c, max_locals)
    path = draw_matches(
        load_image(query_image),
        load_image(candidate_image),
        m["kp_query"],
        m["kp_candidate"],
        out,
        m["affinity"],
        title=f"RRT matches {query_id} vs {candidate_id}: logit {float(m['logit']):.3f}",
        max_lines=max_lines,
    )
    typer.echo(f"wrote {path} ({len(m['pairs'])} matches)")


def register(app: typer.Typer) -> None:
    """Attach the commands to ``app``'s ``train`` and ``visualize`` groups (created when missing)."""
    subgroup(app, "train", "Train models (RRT, DToP).").command("rrt")(train_rrt_cmd)
    subgroup(app, "visualize", "Write PNG visualisations.").command("rrt-matches")(visualize_rrt_matches)
