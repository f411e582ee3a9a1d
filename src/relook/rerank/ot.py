"""Structural reranking with optimal transport on patch tokens ("Beyond the CLS Token", BMVC 2022).

For a query s and a candidate t with global descriptors g and patch tokens f (h*w of them):

* Eq. (5): ``S_global = cos(g^s, g^t)`` (the shortlist score) and ``S = cos(f^s_i, f^t_j)``, (P, P');
* Eq. (6): ``T = Sinkhorn(S, mu^s, mu^t)`` with cost ``1 - S``, kernel ``exp(-(1 - S) / eps)``, eps = 0.05,
  at most 100 iterations (DIML's solver), or its partial version moving mass ``a`` (Sec. 3.3). The
  default is standard OT (``partial`` = a = 1.0, the paper's Tables 1-2); a = 0.9 (``SOP_MASS``) is the
  setting tuned on SOP (Fig. 3), used by ``configs/ot_sop.yaml``;
* Eq. (3): ``S_struct = sum_ij S_ij T_ij``; the top-K (100) candidates are reordered by
  ``S_global + S_struct`` (DIML's rule, also the paper's official evaluation code).

Marginals ``mu`` (``marginals.py``): ``uniform``, ``cross`` (DIML's cross-correlation) or ``relevancy``
(attention rollout written by the ``vit_tokens`` extractor). All Q x K pairs of a shortlist are solved in
batched Sinkhorn calls (``batch_pairs`` pairs each) on ``device``.

S_global is the shortlist's score: the cosine of the same store's ``global_desc`` (``vit_tokens``: the CLS of
the block the tokens come from), so one model gives S_global and the tokens. Controls (not in the paper; they
ask what the structural term adds): ``structure: chamfer`` replaces OT by the Chamfer similarity
``(mean_i max_j S_ij + mean_j max_i S_ij) / 2`` (best matches, no transport, no marginal);
``shuffle_tokens: SEED`` permutes each image's tokens over the grid with a seeded permutation (from the seed
and the image id) while its marginal stays in place, so a marginal tied to positions no longer matches its
tokens; ``struct_weight`` scales S_struct in the final score (full OT with the term scaled by a, against
partial OT moving mass a).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from relook.errors import ConfigError, ShapeError
from relook.rerank import marginals
from relook.rerank.base import DEFAULTS, Reranker, apply_scores, register_reranker
from relook.rerank.sinkhorn import partial_sinkhorn
from relook.types import ImageFeatures, Ranking, Shortlist


def structural_similarity(
    tok_s: torch.Tensor,
    tok_t: torch.Tensor,
    glob_s: torch.Tensor,
    glob_t: torch.Tensor,
    rel_s: torch.Tensor | None = None,
    rel_t: torch.Tensor | None = None,
    marginal: str = "relevancy",
    mass: float = 1.0,
    eps: float = 0.05,
    iters: int = 100,
    tol: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Eq. (3)-(6) for a batch of B pairs.

    tok_s: (B, P, D), tok_t: (B, P', D) patch tokens; glob_s, glob_t: (B, D) global descriptors (used by the
    ``cross`` marginal); rel_s: (B, P), rel_t: (B, P') relevancy (``relevancy`` marginal). Returns
    ``{"score": (B,) S_struct, "plan": (B, P, P') T, "sim": (B, P, P') S, "mu_s": (B, P), "mu_t": (B, P')}``.
    """
    sim = F.normalize(tok_s, dim=-1) @ F.normalize(tok_t, dim=-1).transpose(1, 2)
    b, p, p2 = sim.shape
    if marginal == "uniform":
        mu_s, mu_t = marginals.uniform(b, p, sim), marginals.uniform(b, p2, sim)
    elif marginal == "cross":
        mu_s, mu_t = marginals.cross_correlation(tok_s, glob_t), marginals.cross_correlation(tok_t, glob_s)
    elif marginal == "relevancy":
        if rel_s is None or rel_t is None:
            raise ConfigError("marginal 'relevancy' needs the relevancy field: extract with vit_tokens")
        mu_s, mu_t = marginals.relevancy(rel_s), marginals.relevancy(rel_t)
    else:
        raise ConfigError(f"ot: unknown marginal {marginal!r}; choose one of {marginals.MARGINALS}")
    plan = partial_sinkhorn(1.0 - sim, mu_s, mu_t, mass=mass, eps=eps, iters=iters, tol=tol)
    return {"score": (sim * plan).sum((1, 2)), "plan": plan, "sim": sim, "mu_s": mu_s, "mu_t": mu_t}


def chamfer_similarity(tok_s: torch.Tensor, tok_t: torch.Tensor) -> torch.Tensor:
    """Chamfer similarity (a control for Eq. 3): (B, P, D), (B, P', D) -> (B,)
    ``(mean_i max_j S_ij + mean_j max_i S_ij) / 2`` with ``S`` the token cosines of Eq. (5)."""
    sim = F.normalize(tok_s, dim=-1) @ F.normalize(tok_t, dim=-1).transpose(1, 2)
    return 0.5 * (sim.amax(2).mean(1) + sim.amax(1).mean(1))


def shuffle_permutation(image_id: str, n: int, seed: int) -> np.ndarray:
    """The seeded grid permutation of ``image_id``'s ``n`` tokens (the ``shuffle_tokens`` control)."""
    return np.random.default_rng([int(seed), zlib.crc32(image_id.encode())]).permutation(n)


#: the transported mass a that the paper found best on SOP (Fig. 3); standard OT (a = 1) elsewhere
SOP_MASS = 0.9
STRUCTURES = ("ot", "chamfer")


def final_score(s_global: np.ndarray, s_struct: np.ndarray, conf: dict) -> np.ndarray:
    """The reordering score: ``S_global + struct_weight * S_struct`` (DIML's rule, the paper's code; weight 1)."""
    return s_global + float(conf["struct_weight"]) * s_struct


@register_reranker("ot")
class OTReranker(Reranker):
    """Training-free structural reranker: S_global + S_struct from (partial) OT on patch tokens."""

    name = "ot"
    default_conf = {
        "top_k": DEFAULTS["top_k"],  # shortlist entries rescored (the paper's truncation K = 100)
        "marginal": "relevancy",  # uniform | cross (DIML cross-correlation) | relevancy (rollout, Eq. 7)
        "partial": 1.0,  # transported mass a: 1.0 = standard OT (Tables 1-2); 0.9 = SOP-tuned partial OT (Fig. 3)
        "eps": 0.05,  # entropic regularisation: kernel exp(-(1 - cos) / eps), DIML's value
        "iters": 100,  # maximum Sinkhorn iterations (DIML's bound)
        "tol": 0.0,  # stop early when every column marginal is within tol (0: always run `iters`)
        "batch_pairs": 512,  # query-candidate pairs per batched Sinkhorn call (512 keeps CPU work in cache)
        "device": "cpu",  # torch device for the solver, e.g. "cuda"
        "dtype": "float32",  # float32 or float64 solver precision
        "structure": "ot",  # ot (Eq. 3-6) | chamfer (control: best-match similarity, no transport)
        "struct_weight": 1.0,  # final score S_global + struct_weight * S_struct (1: the paper)
        "shuffle_tokens": None,  # control: seed of a per-image grid permutation of the tokens (marginals stay)
    }
    requires = frozenset({"global_desc", "patch_tokens"})

    def __init__(self, **conf) -> None:
        super().__init__(**conf)
        c = self.conf
        if c["marginal"] not in marginals.MARGINALS:
            raise ConfigError(f"reranker 'ot': marginal={c['marginal']!r}; choose one of {marginals.MARGINALS}")
        if not 0.0 <= float(c["partial"]) <= 1.0:
            raise ConfigError(f"reranker 'ot': partial={c['partial']} must lie in [0, 1]")
        if c["structure"] not in STRUCTURES:
            raise ConfigError(f"reranker 'ot': structure={c['structure']!r}; choose one of {STRUCTURES}")
        if c["dtype"] not in ("float32", "float64"):
            raise ConfigError(f"reranker 'ot': dtype={c['dtype']!r} must be float32 or float64")
        self.requires = self.requires | ({"relevancy"} if c["marginal"] == "relevancy" else set())

    def _tensors(self, feats: Sequence[ImageFeatures]) -> dict[str, torch.Tensor | None]:
        """Stack the fields of ``feats``: tokens (N, P, D), global (N, D), relevancy (N, P) or None."""
        kw = {"dtype": getattr(torch, self.conf["dtype"]), "device": self.conf["device"]}
        tok = [f.get("patch_tokens") for f in feats]
        shapes = {t.shape for t in tok}
        if len(shapes) > 1:
            raise ShapeError(
                f"reranker 'ot': patch_tokens of different shapes {sorted(shapes)}; extract all "
                "images with the same vit_tokens settings"
            )
        tok = np.stack(tok).reshape(len(feats), -1, tok[0].shape[-1])
        if self.conf["shuffle_tokens"] is not None:  # control: tokens moved over the grid, marginals kept
            seed = int(self.conf["shuffle_tokens"])
            tok = np.stack([t[shuffle_permutation(f.image_id, len(t), seed)] for f, t in zip(feats, tok)])
        out = {
            "tok": torch.as_tensor(tok, **kw),
            "glob": torch.as_tensor(np.stack([f.get("global_desc") for f in feats]), **kw),
            "rel": None,
        }
        if self.conf["marginal"] == "relevancy":
            out["rel"] = torch.as_tensor(np.stack([f.get("relevancy") for f in feats]), **kw)
        return out

    def _solve(self, s: dict, t: dict, si: torch.Tensor, ti: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.conf

        def pick(d: dict, i: torch.Tensor, k: str) -> torch.Tensor | None:
            return None if d[k] is None else d[k][i]

        if c["structure"] == "chamfer":
            return {"score": chamfer_similarity(s["tok"][si], t["tok"][ti])}
        return structural_similarity(
            s["tok"][si],
            t["tok"][ti],
            s["glob"][si],
            t["glob"][ti],
            pick(s, si, "rel"),
            pick(t, ti, "rel"),
            c["marginal"],
            float(c["partial"]),
            float(c["eps"]),
            int(c["iters"]),
            float(c["tol"]),
        )

    def explain(self, query: ImageFeatures, candidates: Sequence[ImageFeatures]) -> dict[str, np.ndarray]:
        """Plans, similarities and marginals of ``query`` vs each candidate (for ``relook visualize ot``)."""
        if not candidates:
            return {}
        s, t = self._tensors([query]), self._tensors(candidates)
        k = torch.arange(len(candidates), device=self.conf["device"])
        out = self._solve(s, t, torch.zeros_like(k), k)
        return {name: v.detach().cpu().numpy() for name, v in out.items()}

    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        """S_global + S_struct for each candidate (``struct_weight`` x S_struct): (K,)."""
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float32)
        struct = self.explain(query, candidates)["score"]
        return final_score(np.asarray(global_scores, dtype=np.float64)[: len(candidates)], struct, self.conf)

    def rerank_shortlist(self, shortlist: Shortlist, query_store, gallery_store, progress: bool = True) -> Ranking:
        """All Q x top_k pairs at once: every image read once, pairs solved in batches of ``batch_pairs``."""
        top_k = int(self.conf["top_k"])
        idx = shortlist.indices[:, :top_k]
        rows, cols = np.nonzero(idx >= 0)
        if rows.size == 0:
            return apply_scores(shortlist, [np.zeros(0)] * shortlist.num_queries, top_k, method=self.name)
        fields = sorted(self.requires)
        used_q, q_pos = np.unique(rows, return_inverse=True)
        used_g, g_pos = np.unique(idx[rows, cols], return_inverse=True)
        s = self._tensors([query_store.read(shortlist.query_ids[q], fields) for q in used_q])
        t = self._tensors([gallery_store.read(shortlist.gallery_ids[g], fields) for g in used_g])
        dev = self.conf["device"]
        q_pos, g_pos = torch.as_tensor(q_pos, device=dev), torch.as_tensor(g_pos, device=dev)
        step = max(1, int(self.conf["batch_pairs"]))
        struct = np.empty(rows.size, dtype=np.float64)
        for a in tqdm(range(0, rows.size, step), desc=self.progress_desc, disable=not progress):
            struct[a : a + step] = self._solve(s, t, q_pos[a : a + step], g_pos[a : a + step])["score"].cpu().numpy()
        total = final_score(shortlist.scores[rows, cols].astype(np.float64), struct, self.conf)
        new_scores = [total[rows == q] for q in range(shortlist.num_queries)]
        return apply_scores(shortlist, new_scores, top_k, method=self.name)
