"""``rrt``: rerank the top-K of each query with a trained Reranking Transformer.

Each query is paired with each of its top-K candidates (query first: segment beta, candidate: beta');
all pairs of a query are scored together. On the CPU in float32 / int8 this goes through
``models.rrt.infer.RRTPairScorer`` (pair-parallel single-thread workers, small chunks, SDPA; same logits
to float round-off, see its docstring and ``benchmarks/rrt.py``); otherwise
(GPU, bf16/fp16 autocast, or ``workers=0``) through ``RRT.forward`` in batches of ``batch_size`` pairs.
Score combination: the official code (RRT_GLD ``mean_average_precision_revisited_rerank``, RRT_SOP
``recall_at_ks_rerank``) sorts the top-K by the RRT logit alone and keeps the global order below it;
that is ``global_weight = 0`` here (default). ``global_weight = w`` ranks by ``logit + w * global score``
instead (an extension, not in the paper).

EPE checkpoints (trained with ``-s guidance.kind=epe``, recorded in the checkpoint, ``model.guidance``) need
the Epipolar Positional Encoding of every pair at their input (Sec. 3.4 / 5.2 of the epipolar paper: at
test time F always comes from matches + MAGSAC++ on the images, never from cameras). Rerankers read stores,
not images, so F comes from ``pseudo_gt``: the HDF5 file ``relook geometry pseudo-gt-shortlist`` (or
``relook geometry pseudo-gt`` on a pairs file) writes for the shortlist's (query, candidate) pairs, with
the paper's reliability rule (``#matches <= 20`` or ``#inliers <= 0.2 #matches``: unreliable). Each F is
mapped into the network frame exactly as in training (``EpipolarGuidance.fundamentals``, image sizes from
the store's ``image_size``); unreliable pairs get a random rank-2 F from a generator seeded by the pair
(``EpipolarGuidance.pair_input_pe``). An EPE checkpoint without ``pseudo_gt`` is refused, as is a pair
missing from the file: it never runs without its encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from relook.errors import ConfigError, DataError
from relook.geometry.robust import read_pseudo_gt
from relook.models.epipolar_guidance import EpipolarGuidance
from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import load_rrt
from relook.models.rrt.infer import RRTPairScorer
from relook.models.rrt.inputs import index_side, model_kwargs, pack_side, required_fields
from relook.rerank.base import DEFAULTS, Reranker, apply_scores, register_reranker
from relook.types import ImageFeatures, Ranking, Shortlist


@register_reranker("rrt")
class RRTReranker(Reranker):
    name = "rrt"
    default_conf: ClassVar[dict[str, Any]] = {
        "top_k": DEFAULTS["top_k"],  # shortlist entries rescored per query
        "checkpoint": None,  # RRT checkpoint (relook format or an official release); or pass model=
        "batch_size": 100,  # plain path: pairs per RRT.forward (100 = a whole top-100 at once)
        "global_weight": 0.0,  # score = logit + w * global score; 0 = RRT logit only (official)
        "max_locals": None,  # locals per image; None = the model's max_locals (sop 49, landmark 500)
        "device": "cpu",  # torch device
        "dtype": "float32",  # float32 | bfloat16 | float16 (autocast on the device)
        "num_threads": None,  # torch CPU threads (None = torch default)
        "workers": None,  # CPU fast path: threads over pair slices, 1 torch thread each (None = torch
        # threads; 0 = plain RRT.forward in batch_size batches)
        "chunk_tokens": 1000,  # CPU fast path: tokens per forward in a worker (10 pairs of 7x7 grids)
        "pseudo_gt": None,  # EPE checkpoints: pseudo ground-truth F of the pairs (relook geometry pseudo-gt-shortlist)
        "quantize": None,  # CPU fast path, opt-in and approximate: "int8" (all encoder Linears) or
        # "int8_ff" (feed-forward only), fbgemm dynamic int8; deviation: benchmarks/rrt.py
    }
    requires: ClassVar[frozenset[str]] = frozenset({"local_desc", "keypoints"})

    def __init__(self, model: RRT | None = None, **conf: Any) -> None:
        super().__init__(**conf)
        if model is None:
            if not self.conf["checkpoint"]:
                raise ConfigError(
                    "reranker 'rrt' needs checkpoint=PATH (train one with `relook train rrt`) or a model object"
                )

            model = load_rrt(self.conf["checkpoint"])
        if self.conf["dtype"] not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"reranker 'rrt': dtype must be float32, bfloat16 or float16, got {self.conf['dtype']!r}")
        if self.conf["num_threads"]:
            torch.set_num_threads(int(self.conf["num_threads"]))
        self.device = torch.device(self.conf["device"])
        self.model = model.to(self.device).eval()
        self.fields = required_fields(self.model.conf)
        self.guidance = self._guidance(getattr(self.model, "guidance", None) or {"guidance": "none"})
        if self.guidance is not None and "image_size" not in self.fields:
            self.fields.append("image_size")
        fast = self.device.type == "cpu" and self.conf["dtype"] == "float32" and self.conf["workers"] != 0
        if self.conf["quantize"] is not None and not fast:
            raise ConfigError("reranker 'rrt': quantize needs device=cpu, dtype=float32 and workers != 0")
        self.scorer = (
            RRTPairScorer(self.model, self.conf["workers"], self.conf["chunk_tokens"], self.conf["quantize"])
            if fast
            else None
        )

    def _guidance(self, record: dict):
        """``EpipolarGuidance`` that reproduces an EPE checkpoint's encoding, or None for other guidance."""
        name = record.get("guidance", "none")
        if name != "epe":
            return None
        src = self.conf["checkpoint"] or "the model"
        if not self.conf["pseudo_gt"]:
            raise ConfigError(
                f"reranker 'rrt': {src} was trained with guidance 'epe' (Epipolar Positional Encoding) "
                "and needs pseudo_gt=FILE from `relook geometry pseudo-gt-shortlist`; it never runs "
                "without the encoding"
            )
        conf = {k: v for k, v in record.items() if k in EpipolarGuidance.default_conf}
        if int(conf.get("dim", self.model.conf["d_model"])) != self.model.conf["d_model"]:
            raise ConfigError(
                f"reranker 'rrt': {src} records EPE width {conf['dim']}, the model has d_model "
                f"{self.model.conf['d_model']}"
            )
        return EpipolarGuidance(pseudo_gt=read_pseudo_gt(self.conf["pseudo_gt"]), **conf)

    def epe_inputs(self, query: ImageFeatures, candidates: Sequence[ImageFeatures]) -> torch.Tensor:
        """EPE (K, 2 s^2, d_model) of the pairs (query, candidate_k) (module docstring)."""
        g = self.guidance
        s = int(g.conf["grid"])
        for f in (query, *candidates):
            if f.image_size is None:
                raise DataError(f"reranker 'rrt' (EPE): image {f.image_id!r} has no image_size in its store")
            if f.num_local != s * s:
                raise DataError(
                    f"reranker 'rrt' (EPE): image {f.image_id!r} has {f.num_local} locals, the "
                    f"checkpoint's encoding covers a {s}x{s} grid"
                )
            g.image_sizes[f.image_id] = tuple(int(v) for v in f.image_size)
        missing = [
            c.image_id
            for c in candidates
            if (query.image_id, c.image_id) not in g.pseudo_gt and (c.image_id, query.image_id) not in g.pseudo_gt
        ]
        if missing:
            raise DataError(
                f"reranker 'rrt' (EPE): {len(missing)} pair(s) of query {query.image_id!r} missing from "
                f"{self.conf['pseudo_gt']} (e.g. with {missing[0]!r}); run `relook geometry "
                "pseudo-gt-shortlist` with this run's config and top_k"
            )
        return g.pair_input_pe(query.image_id, [c.image_id for c in candidates]).to(self.device)

    def _pack(self, feats: Sequence[ImageFeatures]) -> dict:
        return pack_side(feats, self.model.conf, self.conf["max_locals"], self.device)

    @torch.inference_mode()
    def score_pairs(self, query: dict, cands: dict, input_pe: torch.Tensor | None = None) -> np.ndarray:
        """RRT logits (K,) of one packed query side (1 image) against K packed candidates; ``input_pe``
        (K, n1+n2, C): the pairs' additive encodings (EPE), or None."""
        if self.scorer is not None:
            return self.scorer(query, cands, input_pe).numpy()
        K = cands["local"].shape[0]
        out = np.zeros(K, np.float32)
        bs = int(self.conf["batch_size"])
        dtype = getattr(torch, self.conf["dtype"])
        for s in range(0, K, bs):
            c = index_side(cands, torch.arange(s, min(K, s + bs), device=self.device))
            q = index_side(query, torch.zeros(c["local"].shape[0], dtype=torch.long, device=self.device))
            pe = None if input_pe is None else input_pe[s : s + bs]
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
                out[s : s + bs] = self.model(**model_kwargs(q, c), input_pe=pe).logits.float().cpu().numpy()
        return out

    def combine(self, logits: np.ndarray, global_scores: np.ndarray) -> np.ndarray:
        w = float(self.conf["global_weight"])
        return logits + w * np.asarray(global_scores, np.float32)[: len(logits)] if w else logits

    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0, np.float32)
        pe = self.epe_inputs(query, candidates) if self.guidance is not None else None
        logits = self.score_pairs(self._pack([query]), self._pack(candidates), pe)
        return self.combine(logits, global_scores)

    def _read(self, store, image_id: str) -> ImageFeatures:
        fields = list(self.fields)
        if self.model.conf["input"] == "keypoints" and "attention" in store.fields(image_id):
            fields.append("attention")
        return store.read(image_id, fields)

    def rerank_shortlist(self, shortlist: Shortlist, query_store, gallery_store, progress: bool = True) -> Ranking:
        """Batched over each query's top-K; gallery features are read once and cached."""
        top_k = int(self.conf["top_k"])
        cache: dict[str, ImageFeatures] = {}
        new_scores = []
        for q in tqdm(range(shortlist.num_queries), desc=self.progress_desc, disable=not progress):
            cand = shortlist.indices[q, :top_k]
            cand = cand[cand >= 0]
            ids = [shortlist.gallery_ids[i] for i in cand]
            for i in ids:
                if i not in cache:
                    cache[i] = self._read(gallery_store, i)
            query = self._read(query_store, shortlist.query_ids[q])
            new_scores.append(self.rerank(query, [cache[i] for i in ids], shortlist.scores[q, : len(cand)]))
        return apply_scores(shortlist, new_scores, top_k, method=self.name)
