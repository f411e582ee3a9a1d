"""Fast CPU scoring of one query against its K candidates with a trained RRT (inference only).

``RRTPairScorer(model)(query_side, cand_side) -> (K,) logits`` computes the logits of ``RRT.forward``
(same weights, same equations, float32 to round-off) for the case reranking needs: one query image
paired with K candidates, no attention maps. Why a separate path: on a few CPU cores the plain forward
of 100 pairs x 100 tokens runs at ~0.4-0.55 of the machine's dense matmul rate; ``benchmarks/rrt.py``
measures each of the following against it.

1. **Pair-parallel workers.** The K pairs are split into ``workers`` contiguous slices, each scored by
   its own Python thread with ONE intra-op torch thread (torch releases the GIL inside ops); the input
   embedding runs inside the workers too. A 100-token layer is a few mid-size GEMMs and many small ops;
   with 2 OpenMP threads per op every op ends in a barrier, and when another process holds one core
   that barrier stalls both (seen here on a busy machine: 10-pair batches of the plain forward with 2
   threads took 7.6 s per query, the same work in 2 single-thread workers 0.9 s). With both cores free
   the gain is small: 369 ms vs 375 ms for the plain forward in 25-pair batches (benchmark, matmul at
   122 GFLOP/s); the point is robustness on a shared machine.
2. **Chunks** of ``chunk_tokens`` tokens per forward (10 pairs of 100 tokens) keep a chunk's
   activations (the 1024-wide feed-forward hidden layer above all) near the core's caches: 25-pair
   batches of the plain forward cost 0.76x the CPU time of one 100-pair batch in the quietest run.
3. **Shared query work in layer 1** (``share_query``, off by default). The query's tokens (CLS,
   [global,] query locals, SEP) enter layer 1 identical in every pair, so their Q/K/V projections can be
   computed once and broadcast (only layer 1: after its attention every token depends on the
   candidate; never with ``input_pe``, which may differ per pair). It saves 1.4% of the FLOPs of a 7x7
   query, and the broadcast into a per-pair buffer costs copies: in 7 benchmark runs on a busy machine
   it was faster 4 times (2-14%), slower 3 times (5-8%), ~1% on average: no clear gain; off by default.
4. **One layer = four GEMMs** (``addmm`` on the model's weights) and ``F.scaled_dot_product_attention``
   reading Q/K/V as strided views of the projection's output (no head-major copy: 1.3 ms instead of
   3.2 ms for matmul + softmax + matmul on 10 pairs x 4 heads x 100 tokens alone; within noise in the
   whole forward); the last layer runs for the CLS row only, as ``RRT.forward`` does. On one thread
   this float32 path costs about the CPU time of the fused ``nn.TransformerEncoderLayer`` kernels in the
   same chunks (the GEMMs dominate both); its gains are 1, 2 and 5.
5. **quantize="int8"** (opt-in, CPU): every encoder Linear (Q/K/V, output, feed-forward) becomes an
   fbgemm dynamic int8 linear (``"int8_ff"``: the feed-forward pair only, 74% of the FLOPs): int8
   weights per output channel, activations quantized per call to 7-bit range (``reduce_range``, as
   fbgemm needs on AVX2 without VNNI). Not exact: the logit deviation and the ranking agreement against
   float32 are measured and printed by ``benchmarks/rrt.py``.

Float32 reads the model's parameters live; int8 packs a snapshot of them at construction (rebuild the
scorer after changing the model). Padding masks (keypoint input) and pre-/post-LayerNorm models are
supported.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from relook.errors import ConfigError, ShapeError
from relook.models.rrt.inputs import model_kwargs
from relook.models.rrt.model import RRT

#: None = float32; "int8" = every encoder Linear in int8; "int8_ff" = the feed-forward Linears only
QUANTIZE = (None, "int8", "int8_ff")


def _int8_linear(w: torch.Tensor, b: torch.Tensor, relu: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (M, in) -> (M, out) through an fbgemm dynamic int8 linear (per-channel symmetric weights)."""
    w = w.detach().float().contiguous()
    scale = (w.abs().amax(1) / 127).clamp(min=1e-12).double()
    with warnings.catch_warnings():  # quantized tensor creation is deprecated in torch 2.14, still supported
        warnings.simplefilter("ignore", UserWarning)
        qw = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qw, b.detach().float().contiguous())
    op = torch.ops.quantized.linear_relu_dynamic if relu else torch.ops.quantized.linear_dynamic
    return lambda x: op(x, packed, True)


def _float_linear(w: torch.Tensor, b: torch.Tensor, relu: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (M, in) -> (M, out) = x W^T + b: one ``addmm`` reading the model's own weights (no copy)."""
    wt, b = w.detach().t(), b.detach()
    if relu:
        return lambda x: torch.addmm(b, x, wt).relu_()
    return lambda x: torch.addmm(b, x, wt)


class _Layer:
    """The weights of one ``nn.TransformerEncoderLayer`` as four linear maps and two LayerNorms."""

    def __init__(self, layer: torch.nn.TransformerEncoderLayer, quantize: str | None) -> None:
        attn = layer.self_attn
        self.heads, self.norm_first = attn.num_heads, layer.norm_first
        w_in, b_in = attn.in_proj_weight, attn.in_proj_bias
        lin = _int8_linear if quantize == "int8" else _float_linear
        ff = _int8_linear if quantize else _float_linear
        self.qkv, self.out = lin(w_in, b_in), lin(attn.out_proj.weight, attn.out_proj.bias)
        self.ff1 = ff(layer.linear1.weight, layer.linear1.bias, relu=True)
        self.ff2 = ff(layer.linear2.weight, layer.linear2.bias)
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        if layer.activation is not F.relu and not isinstance(layer.activation, torch.nn.ReLU):
            raise ConfigError("RRTPairScorer: only ReLU feed-forward layers are supported")

    def __call__(
        self, x: torch.Tensor, kpm: torch.Tensor | None, shared: int = 0, cls_only: bool = False, sdpa: bool = False
    ) -> torch.Tensor:
        """x (b, L, C) -> (b, L, C), or (b, 1, C) for CLS only. ``shared`` = number of leading tokens equal
        in every row of the batch (their Q/K/V are projected once); kpm (b, L) True = padded key."""
        b, L, C = x.shape
        H, dh = self.heads, C // self.heads
        h = self.norm1(x) if self.norm_first else x
        if shared:  # shared rows broadcast, candidate rows per pair
            qkv = x.new_empty(b, L, 3 * C)
            qkv[:, :shared] = self.qkv(h[0, :shared])
            qkv[:, shared:] = self.qkv(h[:, shared:].reshape(-1, C)).view(b, L - shared, 3 * C)
        else:
            qkv = self.qkv(h.reshape(b * L, C))
        qkv = qkv.view(b, L, 3, H, dh).permute(2, 0, 3, 1, 4)  # strided (3, b, H, L, dh) views, no copy
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cls_only:
            q, x = q[:, :, :1], x[:, :1]
        if sdpa:
            mask = None if kpm is None else ~kpm[:, None, None, :]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            q, k, v = q * dh**-0.5, k.contiguous(), v.contiguous()
            s = torch.matmul(q, k.transpose(-1, -2))
            if kpm is not None:
                s.masked_fill_(kpm[:, None, None, :], float("-inf"))
            a = torch.matmul(torch.softmax(s, -1), v)
        Lq = q.shape[2]
        x2 = x.reshape(b * Lq, C)
        a = self.out(a.transpose(1, 2).reshape(b * Lq, C))
        if self.norm_first:
            y = x2 + a
            z = y + self.ff2(self.ff1(self.norm2(y)))
        else:
            y = self.norm1(a.add_(x2))
            z = self.norm2(self.ff2(self.ff1(y)).add_(y))
        return z.view(b, Lq, C)


class RRTPairScorer:
    """Scores one query side against K candidate sides (``inputs.pack_side`` dicts); see module doc.

    workers: threads scoring disjoint slices of the pairs, each with one torch thread
    (None = ``torch.get_num_threads()`` at call time; 1 = this thread with the current torch threads);
    chunk_tokens: tokens per forward inside a worker (pairs per chunk = max(1, chunk_tokens // L));
    quantize: None (float32), "int8" or "int8_ff" (opt-in, approximate; see ``QUANTIZE``).
    """

    #: ablation switches (benchmarks/rrt.py): share the query's layer-1 projections; attention kernel for
    #: sequences shorter than ``RRT.SDPA_MIN_LEN``: "sdpa" (``F.scaled_dot_product_attention`` on strided
    #: views of the Q/K/V projection) or "matmul" (contiguous head-major copies, matmul + softmax + matmul)
    share_query: bool = False
    short_attention: str = "sdpa"

    def __init__(
        self, model: RRT, workers: int | None = None, chunk_tokens: int = 1000, quantize: str | None = None
    ) -> None:
        if quantize not in QUANTIZE:
            raise ConfigError(f"RRTPairScorer: quantize must be one of {QUANTIZE}, got {quantize!r}")
        if quantize and "fbgemm" not in torch.backends.quantized.supported_engines:
            raise ConfigError("RRTPairScorer: quantize='int8' needs torch's fbgemm engine (x86 CPU)")
        if workers is not None and workers < 1:
            raise ConfigError(f"RRTPairScorer: workers must be >= 1 or None, got {workers}")
        self.model, self.workers, self.chunk_tokens, self.quantize = model, workers, int(chunk_tokens), quantize
        if quantize:  # process-wide setting; fbgemm is the x86 engine these weights are packed for
            torch.backends.quantized.engine = "fbgemm"
        with torch.no_grad():
            self.layers = [_Layer(layer, quantize) for layer in model.encoder]
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def _encode(self, x: torch.Tensor, kpm: torch.Tensor | None, shared: int) -> torch.Tensor:
        """Token sequences (b, L, C) -> logits (b,)."""
        sdpa = self.short_attention == "sdpa" or x.shape[1] >= self.model.SDPA_MIN_LEN
        for i, layer in enumerate(self.layers):
            x = layer(x, kpm, shared if i == 0 else 0, cls_only=i == len(self.layers) - 1, sdpa=sdpa)
        if self.model.final_norm is not None:
            x = self.model.final_norm(x)
        return self.model.classifier(x[:, 0]).squeeze(-1)

    def _run(self, kw: dict, shared: int, out: torch.Tensor, lo: int, hi: int) -> None:
        """Logits of pairs lo..hi into ``out``, chunk by chunk (embedding included: it runs in parallel too)."""
        n1, n2 = kw["q_local"].shape[1], kw["c_local"].shape[1]
        step = max(1, self.chunk_tokens // (self.model.offsets(n1)[1] + n2))  # pairs per chunk
        with torch.inference_mode():  # grad mode is per thread
            for s in range(lo, hi, step):
                e = min(hi, s + step)
                c = {k: (None if v is None else v[s:e]) for k, v in kw.items()}
                x = self.model.embed(
                    c["q_local"],
                    c["c_local"],
                    c["q_pos"],
                    c["c_pos"],
                    c["q_scale_idx"],
                    c["c_scale_idx"],
                    c["q_global"],
                    c["c_global"],
                    c["input_pe"],
                )
                kpm = self.model.padding_mask(c.get("q_mask"), c.get("c_mask"), e - s, n1, n2, x.device)
                out[s:e] = self._encode(x, kpm, shared)

    def __call__(self, query: dict, cands: dict, input_pe: torch.Tensor | None = None) -> torch.Tensor:
        """query: a side of 1 image; cands: a side of K images -> logits (K,) float32.
        input_pe (K, n1+n2, C): optional additive embedding of the local tokens (see ``RRT.forward``)."""
        if query["local"].shape[0] != 1:
            raise ShapeError(f"RRTPairScorer: the query side must hold 1 image, got {query['local'].shape[0]}")
        K = cands["local"].shape[0]
        out = torch.zeros(K)
        if K == 0:
            return out
        q = {k: (v.expand(K, *v.shape[1:]) if isinstance(v, torch.Tensor) else v) for k, v in query.items()}
        kw = {**model_kwargs(q, cands), "input_pe": input_pe}
        n1 = kw["q_local"].shape[1]
        # tokens before the candidate's: CLS, [query global], query locals, SEP (the last query-side token)
        shared = self.model.offsets(n1)[1] - int(self.model.has_global)
        if input_pe is not None or not self.share_query:
            shared = 0
        workers = min(K, self.workers or torch.get_num_threads())
        bounds = np.linspace(0, K, workers + 1).round().astype(int)
        if workers == 1:
            self._run(kw, shared, out, 0, K)
            return out
        if self._pool is None or self._pool_size < workers:
            self._pool, self._pool_size = ThreadPoolExecutor(workers, thread_name_prefix="rrt"), workers
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # process-wide: each worker runs its ops on one core
        try:
            jobs = [
                self._pool.submit(self._run, kw, shared, out, int(lo), int(hi))
                for lo, hi in zip(bounds[:-1], bounds[1:])
            ]
            for j in jobs:
                j.result()
        finally:
            torch.set_num_threads(threads)
        return out
