"""Reading a DToP checkpoint written by ``relook train dtop`` (``relook.train.dtop.train_dtop``).

Inference needs only the trained model: the extractor (``features/global_dtop.py``) loads it from here,
never from the training module, so extraction does not depend on training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relook.checkpoints import config_of, describe, load_checkpoint, load_state_into
from relook.errors import DataError
from relook.models.dtop.model import DToP


def load_dtop(checkpoint: str | Path, device: str = "cpu") -> DToP:
    """The trained model of a ``train_dtop`` checkpoint (no download: weights come from the file)."""
    path = Path(checkpoint)
    if not path.exists():
        raise DataError(f"dtop checkpoint {path} not found: train with `relook train dtop` first")
    state = read_dtop_checkpoint(path, device)
    conf = config_of(state, path, "DToP checkpoint", legacy_key="model_conf")
    try:
        model = DToP(**{**conf, "pretrained": False})
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: the DToP config in the checkpoint is not valid here ({e})") from None
    load_state_into(model, state.get("model"), path, f"DToP {conf.get('backbone', '')}".strip())
    return model.to(device).eval()


def read_dtop_checkpoint(path: Path, device: Any = "cpu") -> dict:
    """A ``train_dtop`` checkpoint read without running code (``weights_only=True``)."""
    state = load_checkpoint(path, "DToP checkpoint", map_location=device)
    fmt = state.get("format", "relook-dtop") if isinstance(state, dict) else None
    if fmt != "relook-dtop" or "model" not in state:
        raise DataError(f"{path}: expected a DToP checkpoint written by `relook train dtop`, found {describe(state)}")
    return state
