"""Torch checkpoints that cannot run code: every read is ``torch.load(weights_only=True)``.

A file relook is handed (an RRT ``checkpoint:``, cnn_local ``weights:``, a DToP checkpoint, a weights file)
may only hold tensors, numbers, strings and plain containers (dict, list, tuple, OrderedDict, Counter):
torch's own weights-only unpickler refuses any other global before it is called, so a pickle whose
``__reduce__`` names a function fails to load instead of running it. relook's own checkpoints keep their
model config as a JSON string (``config_json``) next to the tensors, so nothing beyond those types is needed.

Every failure is one ``DataError`` line naming the file, what was expected and what was found.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relook.errors import DataError

#: the ``format`` tag of relook's own checkpoints -> what they hold
FORMATS = {"relook-rrt": "RRT checkpoint", "relook-dtop": "DToP checkpoint"}


def load_checkpoint(path: str | Path, what: str, map_location: Any = "cpu") -> Any:
    """The object saved in ``path``, read with ``weights_only=True``; ``DataError`` naming the file otherwise."""
    # lazy (start-up): loads torch; relook's entry points import this module
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with warnings.catch_warnings():  # torch warns on stderr about odd pickle protocols: keep one error line
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_global(str(e))
        if refused:
            raise DataError(
                f"{path}: refusing to load {what}: it pickles {refused}, not only tensors and plain "
                "containers (relook never runs code from a checkpoint)"
            ) from None
        raise DataError(f"{path}: not a readable {what} ({_first_line(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise DataError(
            f"{path}: not a torch checkpoint, expected a {what} ({type(e).__name__}: {_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else "empty or truncated file"


def _refused_global(message: str) -> str:
    """The global torch's weights-only unpickler refused (e.g. 'GLOBAL posix.system'), or ''."""
    for line in message.splitlines():
        line = line.strip()
        for marker in ("unsupported GLOBAL ", "Unsupported global: "):
            if marker in line:
                return line[line.index(marker) :].split(" whose ")[0].replace("Unsupported global: ", "")[:200]
    return ""


def to_json(conf: Mapping[str, Any]) -> str:
    """A model config as the JSON string stored in a checkpoint (tuples become lists)."""
    return json.dumps(dict(conf), sort_keys=True)


def config_of(ckpt: Mapping[str, Any], path: str | Path, what: str, legacy_key: str) -> dict[str, Any]:
    """The model config of one of relook's checkpoints: ``config_json``, or a plain dict under ``legacy_key``."""
    raw = ckpt.get("config_json")
    if isinstance(raw, str):
        try:
            conf = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: {what} has a malformed config_json ({e})") from None
    else:
        conf = ckpt.get(legacy_key)
    if not isinstance(conf, dict):
        raise DataError(
            f"{path}: {what} has no model config (expected a JSON string under 'config_json', "
            f"found keys {sorted(map(str, ckpt))[:8]})"
        )
    return conf


def describe(obj: Any) -> str:
    """A few words on what a loaded checkpoint is, for 'expected X, found Y' messages."""
    if isinstance(obj, Mapping):
        fmt = obj.get("format")
        if isinstance(fmt, str) and fmt in FORMATS:
            return f"a relook {FORMATS[fmt]} ({fmt})"
        keys = sorted(map(str, obj))
        return f"a dict with keys {keys[:6]}{' ...' if len(keys) > 6 else ''}"
    return f"a {type(obj).__name__}"


def unwrap_state_dict(obj: Any, keys: tuple[str, ...] = ("state_dict", "model", "state")) -> Any:
    """The state dict inside ``obj``: ``obj`` itself or the first dict found under one of ``keys``."""
    for key in keys:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def load_state_into(module: Any, state: Any, path: str | Path, what: str) -> None:
    """``module.load_state_dict(state)`` after checking names and shapes; one ``DataError`` line otherwise."""
    # lazy (start-up): loads torch; relook's entry points import this module
    import torch

    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: expected a state dict of tensors for {what}, found {describe(state)}")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k, found, expected = wrong[0]
            parts.append(f"{len(wrong)} tensor(s) of the wrong shape (e.g. {k!r}: expected {expected}, found {found})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        raise DataError(f"{path}: weights do not fit {what}: {', '.join(parts)}")
    module.load_state_dict(state)
