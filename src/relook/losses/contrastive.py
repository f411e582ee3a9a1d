"""Pair losses on a batch of embeddings with class labels: every ordered pair (i, j), i != j, is a pair.

``contrastive_loss`` (Eq. C1 below) is the batch-wise contrastive loss the epipolar paper (seed 002,
Sec. 5, baseline 1 and "Training details") trains its "R50 (trained)" global descriptor with;
``multi_similarity_loss`` (Eq. MS1 below) is the pair-weighting loss of Wang et al. (CVPR 2019), an
alternative on the same in-batch pairs. The equations are written out in full in each docstring: the
papers behind them are not in ``shared/papers``, so their own equation numbers are not quoted here. Both are pure functions of
``emb`` (B, D) and ``labels`` (B,), normalise the embeddings themselves (as pytorch-metric-learning's
distances do, the reference the tests compare with) and return a scalar; an empty batch, or one without a
single pair, gives 0 (still attached to ``emb``'s graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relook.errors import ShapeError


def _pair_masks(emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if emb.ndim != 2 or labels.ndim != 1 or len(labels) != len(emb):
        raise ShapeError(
            f"pair loss: expected emb (B, D) and labels (B,), got {tuple(emb.shape)} and {tuple(labels.shape)}"
        )
    x = F.normalize(emb, dim=1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    return x, same & ~eye, ~same


def contrastive_loss(
    emb: torch.Tensor, labels: torch.Tensor, pos_margin: float = 0.0, neg_margin: float = 1.0
) -> torch.Tensor:
    """Double-margin contrastive loss on all in-batch pairs, each part averaged over its active pairs.

    With ``d_ij = ||x_i - x_j||_2`` of the L2-normalised embeddings (so d in [0, 2]), ``P`` the positive
    pairs (same label, i != j) and ``N`` the negative pairs::

        L = mean_{(i,j) in P, l > 0} [d_ij - m_pos]_+  +  mean_{(i,j) in N, l > 0} [m_neg - d_ij]_+   (C1)

    the contrastive loss of Hadsell, Chopra & LeCun (CVPR 2006) with its squares dropped and a
    positive margin added, each mean taken over the pairs whose term is non-zero (an empty mean is 0), as in
    pytorch-metric-learning's ``ContrastiveLoss`` with its default ``AvgNonZeroReducer``.

    emb: (B, D); labels: (B,) ints. Returns a scalar tensor.
    """
    x, pos, neg = _pair_masks(emb, labels)
    if len(x) < 2:
        return emb.sum() * 0.0
    d = torch.cdist(x, x)

    def active_mean(v: torch.Tensor) -> torch.Tensor:
        v = v[v > 0]
        return v.mean() if len(v) else emb.sum() * 0.0

    return active_mean(F.relu(d[pos] - pos_margin)) + active_mean(F.relu(neg_margin - d[neg]))


def multi_similarity_loss(
    emb: torch.Tensor, labels: torch.Tensor, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5
) -> torch.Tensor:
    """Multi-similarity loss (Wang et al., CVPR 2019) on all in-batch pairs, without the paper's pair mining.

    With ``S_ik`` the cosine similarity, ``P_i`` / ``N_i`` the positives / negatives of anchor ``i`` and
    ``lambda = base``::

        L = 1/B sum_i { 1/alpha log[1 + sum_{k in P_i} exp(-alpha (S_ik - lambda))]
                        + 1/beta log[1 + sum_{k in N_i} exp(beta (S_ik - lambda))] }          (MS1)

    An anchor without positives (negatives) contributes 0 for that part. pytorch-metric-learning's
    ``MultiSimilarityLoss`` defaults (alpha 2, beta 50, base 0.5).

    emb: (B, D); labels: (B,) ints. Returns a scalar tensor.
    """
    x, pos, neg = _pair_masks(emb, labels)
    if len(x) < 2:
        return emb.sum() * 0.0
    s = x @ x.T

    def soft(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # log(1 + sum_mask exp(z)) per row
        z = z.masked_fill(~mask, float("-inf"))
        z = torch.cat([z, torch.zeros(len(z), 1, dtype=z.dtype, device=z.device)], dim=1)
        return torch.logsumexp(z, dim=1)

    per_anchor = soft(-alpha * (s - base), pos) / alpha + soft(beta * (s - base), neg) / beta
    return per_anchor.mean()


def softmax_contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Temperature-scaled softmax (multi-positive InfoNCE / supervised contrastive) loss on in-batch pairs.

    The official RRT SOP code trains its "R50 (trained)" 128-d global with a softmax over cosine
    similarities at temperature 0.05 (``shared/papers/rrt-method-notes.md`` Sec. 3: "contrastive loss
    (temperature 0.05)"). With ``S_ik`` the cosine similarity, ``tau`` the temperature and ``P_i`` the
    positives of anchor ``i`` (same label, k != i)::

        L = mean_{i: P_i != {}} 1/|P_i| sum_{p in P_i} -log[ exp(S_ip / tau) / sum_{k != i} exp(S_ik / tau) ]   (SM1)

    the form of pytorch-metric-learning's ``SupConLoss`` (the test's reference). Anchors without a
    positive are left out; a batch without any positive pair gives 0.

    emb: (B, D); labels: (B,) ints. Returns a scalar tensor.
    """
    x, pos, _ = _pair_masks(emb, labels)
    if len(x) < 2 or not bool(pos.any()):
        return emb.sum() * 0.0
    eye = torch.eye(len(x), dtype=torch.bool, device=emb.device)
    s = (x @ x.T / temperature).masked_fill(eye, float("-inf"))
    logp = s - torch.logsumexp(s, dim=1, keepdim=True)
    has = pos.any(1)
    per_anchor = -(logp.masked_fill(~pos, 0.0).sum(1)[has] / pos.sum(1)[has])
    return per_anchor.mean()


#: loss name -> (function, its keyword defaults): what ``relook train global --loss`` accepts
PAIR_LOSSES = {
    "contrastive": (contrastive_loss, {"pos_margin": 0.0, "neg_margin": 1.0}),
    "multi_similarity": (multi_similarity_loss, {"alpha": 2.0, "beta": 50.0, "base": 0.5}),
    "softmax": (softmax_contrastive_loss, {"temperature": 0.05}),
}
