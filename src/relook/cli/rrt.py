"""`relook train rrt` and `relook visualize rrt-matches` (thin: parse, call the library, print)."""

from __future__ import annotations

from pathlib import Path

import typer

from relook.cli.common import parse_kv, subgroup


def train_rrt_cmd(
    store: Path = typer.Argument(..., help="feature store of the training images (local_desc, global_desc, ...)"),
    dataset: str = typer.Option(..., help="registered dataset giving the labels, e.g. co3d_retrieve"),
    root: Path = typer.Option(..., help="dataset root"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (checkpoint.pt, log.jsonl, train_conf.json)"),
    data_opt: list[str] = typer.Option([], help="dataset option KEY=VALUE (repeatable), e.g. split=train"),
    variant: str = typer.Option("sop", help="RRT preset: sop (7x7 grid, sine PE) or landmark (keypoints, global)"),
    model_opt: list[str] = typer.Option([], help="RRT option KEY=VALUE, e.g. position_encoding=none"),
    recipe: str | None = typer.Option(
        None,
        help="training recipe: official-landmark | official-sop | "
        "epipolar-sop (seed 002: 40 epochs, constant 1e-4); flags override it",
    ),
    epochs: int | None = typer.Option(None, min=1, help="epochs (default 15, or the recipe's)"),
    lr: float | None = typer.Option(None, min=0.0, help="AdamW learning rate (default 1e-4)"),
    weight_decay: float | None = typer.Option(None, min=0.0, help="AdamW weight decay (default 5e-4; SOP 4e-4)"),
    milestones: str | None = typer.Option(
        None, help="comma-separated epochs where the lr drops x0.1, e.g. 60,80; 'none' = constant (default)"
    ),
    top_k: int | None = typer.Option(None, min=1, help="global neighbours negatives come from (default 100)"),
    positives: str | None = typer.Option(
        None, help="topk (same-label images in the top-k) | label (all same-label images, official SOP)"
    ),
    augment: bool | None = typer.Option(
        None,
        "--augment/--no-augment",
        help="fine-tuning: random resized crop + flip (official SOP), F adjusted to match",
    ),
    max_norm: float | None = typer.Option(None, min=0.0, help="gradient clipping max-norm (0 = off; 0.1 in supp. D)"),
    triplets_per_batch: int | None = typer.Option(None, min=1, help="(anchor, positive, negative) triplets per step"),
    min_positives: int | None = typer.Option(None, min=1, help="topk positives: anchors need this many in their top-k"),
    loss: str | None = typer.Option(
        None,
        help="bce (official, triplets; default) | distill (relook's own: MSE onto global+Chamfer over top-K pairs)",
    ),
    distill_pairs: int | None = typer.Option(None, min=1, help="distill: neighbours per anchor and epoch (all K)"),
    pairs_per_batch: int | None = typer.Option(None, min=1, help="distill: pairs per step (default 200)"),
    init_checkpoint: Path | None = typer.Option(
        None, help="warm start from this RRT checkpoint's weights (e.g. BCE after --loss distill)"
    ),
    finetune: bool = typer.Option(False, help="fine-tune the CNN backbone jointly (reads images)"),
    backbone_opt: list[str] = typer.Option([], help="cnn_local option KEY=VALUE for --finetune"),
    device: str = typer.Option("cpu", help="torch device"),
    seed: int = typer.Option(0, min=0, help="seed of model init and triplet sampling"),
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(True, help="show progress bars"),
    guidance: str = typer.Option(
        "none", help="epipolar guidance: none | epi | maxepi | epe (needs the dataset's cameras or --pseudo-gt)"
    ),
    pseudo_gt: Path | None = typer.Option(
        None,
        help="pseudo ground-truth F file (relook geometry pseudo-gt) "
        "for the guidance, e.g. where the data has no cameras",
    ),
    guidance_weight: float = typer.Option(1e-3, help="lambda of the epipolar loss"),
) -> None:
    """Train a Reranking Transformer with BCE on query/positive/hard-negative triplets from the top-100.

    Several GPUs: the same command under torchrun --nproc_per_node=N -m relook.cli.

    Example: relook train rrt runs/syn/train.h5 --dataset co3d_retrieve --root runs/syn/co3d_retrieve --data-opt split=train -o runs/syn/rrt --epochs 15
    """
    from relook.datasets.base import load_dataset
    from relook.io import ensure_dir
    from relook.train.rrt_stage import train_rrt_stage

    ensure_dir(out, "--out")  # before any work
    ds = load_dataset(dataset, root, **parse_kv(data_opt, "--data-opt"))
    from relook.errors import ConfigError
    from relook.train.rrt import resolve_train_conf

    ms = None
    if milestones is not None:
        try:
            ms = [] if milestones.strip().lower() in ("", "none") else [int(v) for v in milestones.split(",")]
        except ValueError:
            raise ConfigError(
                f"--milestones expects comma-separated epochs like 60,80 or 'none', got {milestones!r}"
            ) from None
    tc = resolve_train_conf(
        recipe,
        {
            "epochs": epochs,
            "lr": lr,
            "weight_decay": weight_decay,
            "milestones": ms,
            "top_k": top_k,
            "positives": positives,
            "augment": augment,
            "max_norm": max_norm,
            "triplets_per_batch": triplets_per_batch,
            "min_positives": min_positives,
            "loss": loss,
            "distill_pairs": distill_pairs,
            "pairs_per_batch": pairs_per_batch,
            "init_checkpoint": str(init_checkpoint) if init_checkpoint else None,
            "finetune": finetune,
            "device": device,
            "seed": seed,
        },
    )
    from relook.train.epipolar import guidance_hooks

    hooks = guidance_hooks(guidance, ds, store, pseudo_gt=pseudo_gt, weight=guidance_weight, seed=seed)
    path = train_rrt_stage(
        ds,
        store,
        out,
        {"variant": variant, **parse_kv(model_opt, "--model-opt")},
        tc,
        parse_kv(backbone_opt, "--backbone-opt"),
        resume=resume,
        progress=progress,
        seed=seed,
        **hooks,
    )
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
