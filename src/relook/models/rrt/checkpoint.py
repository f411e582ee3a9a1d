"""RRT checkpoints: relook's own format (config + state dict) and the official released ones.

Own format (``torch.save`` of a dict of tensors, numbers and strings; read with ``weights_only=True``)::

    {"format": "relook-rrt", "version": 2, "config_json": json.dumps(RRT.conf), "state_dict": ..., **extra}

``extra`` holds what a trainer needs to resume (optimizer state, epoch, backbone state, ...) and
``guidance_json``, the epipolar guidance the model was trained with (``relook.train.epipolar``:
``{"guidance": "none" | "epi" | "maxepi" | "epe", ...settings}``). ``load_rrt`` puts it on the model as
``model.guidance`` (``{"guidance": "none"}`` when absent, and for official checkpoints): an EPE model needs
the encoding at its input, which the reranker reproduces from these settings. Version 1 kept the config as
a plain dict under ``config``; it still loads.

Shipped format (``.safetensors``, ``export_rrt_safetensors``): the state dict (fp16 by default) in a
safetensors file, whose string metadata holds ``format`` = "relook-rrt", ``config_json`` and ``guidance_json``
(plus free-form provenance keys); reading it runs no code at all. ``load_rrt`` picks the format by suffix.

Official format (github.com/uvavision/RerankingTransformer): ``{"state": state_dict, "optim": ...}`` (a bare
state dict, or one under ``state_dict`` / ``model``, loads too),
the state dict saved from an ``nn.DataParallel`` (keys prefixed ``module.``). RRT_GLD keys are
``encoder.layers.{i}.{self_attn.in_proj_weight, ..., linear1, linear2, norm1, norm2}``, ``remap``
(Linear 2048->128), ``scale_encoder`` (7 x 128), ``seg_encoder`` (6 x 128; rows: query local, candidate
local, CLS, SEP, query global, candidate global) and ``classifier``. RRT_SOP nests the same matcher under
``matcher.`` (next to its ResNet backbone) with a 4-row ``seg_encoder`` (CLS, SEP, query local,
candidate local) and no ``remap``. The encoder layer keys are those of ``nn.TransformerEncoderLayer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from relook.checkpoints import (
    FORMATS,
    config_of,
    describe,
    load_checkpoint,
    load_state_into,
    to_json,
    unwrap_state_dict,
)
from relook.errors import DataError
from relook.io import atomic_path
from relook.models.rrt.model import CAND_GLOBAL, CAND_LOCAL, CLS, QUERY_GLOBAL, QUERY_LOCAL, RRT, SEP

FORMAT = "relook-rrt"

#: our segment row -> official row, per official variant
_GLD_SEGMENTS = {QUERY_LOCAL: 0, CAND_LOCAL: 1, CLS: 2, SEP: 3, QUERY_GLOBAL: 4, CAND_GLOBAL: 5}
_SOP_SEGMENTS = {CLS: 0, SEP: 1, QUERY_LOCAL: 2, CAND_LOCAL: 3}


def save_rrt(path: str | Path, model: RRT, **extra: Any) -> Path:
    """Write ``model`` (config + CPU state dict) and ``extra`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(
            {"format": FORMAT, "version": 2, "config_json": to_json(model.conf), "state_dict": state, **extra}, tmp
        )
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict (CPU tensors), read without running code; ``DataError`` when missing,
    unreadable, not a dict or pickling anything beyond tensors and plain containers."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such RRT checkpoint; train one with `relook train rrt`")
    ckpt = load_checkpoint(path, "RRT checkpoint")
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: expected an RRT checkpoint (a dict of tensors), found {describe(ckpt)}")
    return ckpt


def export_rrt_safetensors(path: str | Path, model: RRT, dtype: torch.dtype = torch.float16, **metadata: str) -> Path:
    """Write ``model`` as a safetensors file (weights cast to ``dtype``, config in the metadata), atomically."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {
        **{k: str(v) for k, v in metadata.items()},
        "format": FORMAT,
        "config_json": to_json(model.conf),
        "guidance_json": json.dumps(getattr(model, "guidance", None) or {"guidance": "none"}, sort_keys=True),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_safetensors(path: str | Path) -> dict:
    """A ``.safetensors`` RRT file as a checkpoint dict (float32 state dict + its metadata); ``DataError``
    when missing, unreadable or without relook's metadata."""

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such RRT checkpoint; train one with `relook train rrt`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT or "config_json" not in meta:
        raise DataError(f"{path}: safetensors file without relook RRT metadata (format {meta.get('format')!r})")
    return {**meta, "state_dict": {k: v.float() for k, v in state.items()}}


def load_rrt(path: str | Path) -> RRT:
    """Build an ``RRT`` from a relook checkpoint (``.pt`` or shipped ``.safetensors``), or from an official
    one (a state dict, maybe nested)."""
    ckpt = read_safetensors(path) if str(path).endswith(".safetensors") else read_checkpoint(path)
    fmt = ckpt.get("format")
    if fmt == FORMAT:
        conf = config_of(ckpt, path, "RRT checkpoint", legacy_key="config")
        try:
            model = RRT(**conf)
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: the RRT config in the checkpoint is not valid here ({e})") from None
        load_state_into(model, ckpt.get("state_dict"), path, f"RRT {conf.get('variant', '')}".strip())
        model.guidance = guidance_of(ckpt, path)
        return model.eval()
    if isinstance(fmt, str) and fmt in FORMATS:
        raise DataError(f"{path}: expected an RRT checkpoint, found {describe(ckpt)}")
    return load_official_rrt(ckpt, source=str(path))


def guidance_of(ckpt: dict, path: str | Path = "checkpoint") -> dict[str, Any]:
    """The epipolar guidance a relook checkpoint records (``guidance_json``); ``{"guidance": "none"}`` without."""
    raw = ckpt.get("guidance_json")
    if raw is None:
        return {"guidance": "none"}
    try:
        g = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        g = None
    if not isinstance(g, dict) or not isinstance(g.get("guidance"), str):
        raise DataError(
            f"{path}: RRT checkpoint has a malformed guidance_json (expected a JSON object with 'guidance')"
        )
    return g


def official_to_relook(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Map an official RRT state dict to ours; returns (state dict, variant "landmark" | "sop")."""
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    if any(k.startswith("matcher.") for k in state):  # RRT_SOP: backbone + matcher
        state = {k[len("matcher.") :]: v for k, v in state.items() if k.startswith("matcher.")}
    if "seg_encoder.weight" not in state:
        raise DataError(
            "not an official RRT state dict: no 'seg_encoder.weight' (looked under 'module.' and 'matcher.')"
        )
    seg = state["seg_encoder.weight"]
    rows = {6: _GLD_SEGMENTS, 4: _SOP_SEGMENTS}.get(seg.shape[0])
    if rows is None:
        raise DataError(f"official RRT seg_encoder has {seg.shape[0]} rows; expected 6 (GLD) or 4 (SOP)")
    out: dict[str, torch.Tensor] = {}
    new_seg = torch.zeros(6, seg.shape[1], dtype=seg.dtype)
    for ours, theirs in rows.items():
        new_seg[ours] = seg[theirs]
    out["segment_embed.weight"] = new_seg
    rename = {
        "remap.": "global_proj.",
        "scale_encoder.": "scale_embed.",
        "classifier.": "classifier.",
        "encoder.layers.": "encoder.",
    }
    for k, v in state.items():
        for old, new in rename.items():
            if k.startswith(old):
                out[new + k[len(old) :]] = v
    if "encoder.norm.weight" in state:  # pre-LN official models end with a LayerNorm
        out["final_norm.weight"], out["final_norm.bias"] = state["encoder.norm.weight"], state["encoder.norm.bias"]
    return out, "landmark" if seg.shape[0] == 6 else "sop"


def load_official_rrt(ckpt: dict | str | Path, source: str = "checkpoint", **conf: Any) -> RRT:
    """An ``RRT`` with the weights of an official checkpoint (dict with ``state``, or a path).

    The architecture is read off the tensors (layers, widths, global dim); ``conf`` overrides the rest.
    """
    if not isinstance(ckpt, dict):
        source, ckpt = str(ckpt), read_checkpoint(ckpt)
    state = unwrap_state_dict(ckpt, ("state", "state_dict", "model")) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            f"{source}: expected a relook RRT checkpoint or an official RRT state dict, found {describe(ckpt)}"
        )
    try:
        mapped, variant = official_to_relook(state)
    except DataError as e:
        raise DataError(f"{source}: {e}") from None
    layers = sorted({int(k.split(".")[1]) for k in mapped if k.startswith("encoder.") and k.split(".")[1].isdigit()})
    try:
        arch = {
            "variant": variant,
            "d_model": mapped["segment_embed.weight"].shape[1],
            "num_layers": len(layers),
            "dim_feedforward": mapped["encoder.0.linear1.weight"].shape[0],
            "norm_first": "final_norm.weight" in mapped,
        }
        if variant == "landmark":
            arch["d_global"] = mapped["global_proj.weight"].shape[1]
    except (KeyError, IndexError) as e:
        raise DataError(
            f"{source}: official RRT state dict without {e} (expected 'encoder.layers.0.linear1' and, "
            "for the landmark variant, 'remap')"
        ) from None
    model = RRT(**{**arch, **conf})
    load_state_into(model, mapped, source, f"official RRT ({variant}) mapped to relook's RRT")
    model.guidance = {"guidance": "none"}
    return model.eval()
