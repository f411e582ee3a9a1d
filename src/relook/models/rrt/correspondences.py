"""Keypoint correspondences from RRT's last-layer attention (RRT supplementary, Sec. E).

"We extract the attention scores from the last transformer layer of RRT. Correspondences are computed
by solving a linear sum assignment problem using the attentions as the affinity." The supplementary does
not say which of the two cross blocks or how heads are merged; here the affinity of query local i and
candidate local j is the head-averaged softmax attention, symmetrised:
``(A[q_i -> c_j] + A[c_j -> q_i]) / 2`` (``symmetric=False`` uses the query -> candidate block only).
The assignment maximises the summed affinity (scipy's Hungarian solver), one-to-one.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from relook.errors import ShapeError
from relook.models.rrt.inputs import model_kwargs, pack_side
from relook.models.rrt.model import RRT
from relook.types import ImageFeatures


def assignment_matches(affinity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches maximising the total ``affinity`` (n1, n2).

    Returns ``pairs`` (M, 2) int64 (row i, column j), M = min(n1, n2), sorted by row, and their
    affinities (M,). Empty in, empty out.
    """
    affinity = np.asarray(affinity, dtype=np.float64)
    if affinity.ndim != 2:
        raise ShapeError(f"affinity must be (n1, n2), got shape {affinity.shape}")
    if affinity.size == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    if not np.isfinite(affinity).all():
        raise ShapeError("affinity has non-finite entries")
    rows, cols = linear_sum_assignment(affinity, maximize=True)
    return np.stack([rows, cols], 1).astype(np.int64), affinity[rows, cols].astype(np.float32)


def cross_affinity(
    attention: torch.Tensor, n1: int, n2: int, offsets: tuple[int, int], symmetric: bool = True
) -> torch.Tensor:
    """Affinity (B, n1, n2) from a layer's attention (B, H, L, L) and the locals' sequence offsets."""
    s1, s2 = offsets
    a = attention.float().mean(1)
    a12 = a[:, s1 : s1 + n1, s2 : s2 + n2]
    return (a12 + a[:, s2 : s2 + n2, s1 : s1 + n1].transpose(1, 2)) / 2 if symmetric else a12


@torch.no_grad()
def rrt_correspondences(
    model: RRT, query: ImageFeatures, candidate: ImageFeatures, max_locals: int | None = None, symmetric: bool = True
) -> dict[str, np.ndarray]:
    """Matched keypoints of a pair: ``kp_query`` (M, 2), ``kp_candidate`` (M, 2) pixels, ``affinity`` (M,),
    ``pairs`` (M, 2) indices into the selected locals, and the pair's ``logit`` (scalar array)."""
    model = model.eval()
    device = next(model.parameters()).device
    q = pack_side([query], model.conf, max_locals, device)
    c = pack_side([candidate], model.conf, max_locals, device)
    out = model(**model_kwargs(q, c), return_attention=True)
    n1, n2 = q["local"].shape[1], c["local"].shape[1]
    aff = cross_affinity(out.attentions[-1], n1, n2, model.offsets(n1), symmetric)[0].cpu().numpy()
    v1, v2 = np.flatnonzero(~q["mask"][0].cpu().numpy()), np.flatnonzero(~c["mask"][0].cpu().numpy())
    pairs, score = assignment_matches(aff[np.ix_(v1, v2)])
    pairs = np.stack([v1[pairs[:, 0]], v2[pairs[:, 1]]], 1) if len(pairs) else pairs
    kq, kc = q["keypoints"][0].cpu().numpy(), c["keypoints"][0].cpu().numpy()
    return {
        "kp_query": kq[pairs[:, 0]],
        "kp_candidate": kc[pairs[:, 1]],
        "affinity": score,
        "pairs": pairs,
        "logit": out.logits[0].float().cpu().numpy(),
    }
