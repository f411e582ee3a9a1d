"""Marginal distributions ``mu_s, mu_t`` of the structural OT (Sec. 3.3 of "Beyond the CLS Token").

Each function returns probability vectors over the ``P = h*w`` patches of one side of a batch of pairs.

* ``uniform``: every patch weighs ``1/P``.
* ``cross_correlation`` (DIML, Zhao et al. ICCV 2021): a patch of image s weighs ``relu(<f^s_i, g^t>)``,
  the correlation of its (L2-normalised) token with the *other* image's (L2-normalised) global
  descriptor, normalised to sum 1 -- so the marginal depends on the pair.
* ``relevancy`` (the paper's proposal): the image's attention-rollout relevancy (``rollout.py``), made a
  probability vector.

Where every weight is zero (all correlations negative) the uniform marginal is used instead of
DIML's division by ``sum + 1e-5``, which would leave the OT problem with no mass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relook.checks import check_shape

MARGINALS = ("uniform", "cross", "relevancy")


def _normalise(w: torch.Tensor) -> torch.Tensor:
    """Rows of (B, P) non-negative weights -> probability vectors (uniform where a row sums to 0)."""
    w = w.clamp_min(0)
    total = w.sum(-1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / max(w.shape[-1], 1))
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), uniform)


def uniform(batch: int, patches: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, patches) filled with ``1 / patches``."""
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    return torch.full((batch, patches), 1.0 / max(patches, 1), **kw)


def cross_correlation(tokens: torch.Tensor, other_global: torch.Tensor) -> torch.Tensor:
    """DIML's cross-correlation marginal.

    tokens: (B, P, D) patch tokens of one image of each pair; other_global: (B, D) global descriptor of
    the other image. Both are L2-normalised here. Returns (B, P).
    """
    sizes = check_shape(tokens, ["B", "P", "D"], "tokens")
    check_shape(other_global, ["B", "D"], "other_global", sizes)
    corr = torch.einsum("bpd,bd->bp", F.normalize(tokens, dim=-1), F.normalize(other_global, dim=-1))
    return _normalise(torch.relu(corr))


def relevancy(scores: torch.Tensor) -> torch.Tensor:
    """Relevancy marginal: (B, P) non-negative rollout relevancy -> (B, P) probability vectors."""
    check_shape(scores, ["B", "P"], "relevancy")
    return _normalise(scores)
