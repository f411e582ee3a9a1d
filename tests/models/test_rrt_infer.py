"""RRTPairScorer (fast CPU scoring of one query vs K candidates) against the plain nn.TransformerEncoderLayer model."""

import pytest
import torch

from relook.errors import ConfigError, ShapeError
from relook.models.rrt import RRT
from relook.models.rrt.infer import RRTPairScorer

SMALL = {"num_layers": 2, "dim_feedforward": 64}
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: one OpenMP thread (workers still run in parallel)


def _model(seed=0, **conf):
    torch.manual_seed(seed)
    return RRT(**{**SMALL, **conf}).eval()


def _side(B, n, seed, d_global=0, pad=None):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, n, dtype=torch.bool)
    if pad is not None:
        for b, k in enumerate(pad):
            mask[b, k:] = True
    return {
        "local": torch.randn(B, n, 128, generator=g),
        "pos": torch.rand(B, n, 2, generator=g),
        "mask": mask,
        "scale_idx": torch.randint(0, 7, (B, n), generator=g),
        "global": torch.randn(B, d_global, generator=g) if d_global else None,
    }


def _reference(m, q, c, input_pe=None):
    """Plain model: embedding, then each nn.TransformerEncoderLayer as a module on the full sequence, pair by
    pair (no batching, no fast path), then the classifier on CLS."""
    out = []
    for k in range(c["local"].shape[0]):
        with torch.no_grad():
            x = m.embed(
                q["local"],
                c["local"][k : k + 1],
                q["pos"],
                c["pos"][k : k + 1],
                q["scale_idx"],
                c["scale_idx"][k : k + 1],
                q["global"],
                None if c["global"] is None else c["global"][k : k + 1],
                None if input_pe is None else input_pe[k : k + 1],
            )
            keep = (
                torch.cat(
                    [torch.ones(1, dtype=torch.bool), ~q["mask"][0], torch.ones(1, dtype=torch.bool), ~c["mask"][k]]
                )
                if not m.has_global
                else None
            )
            if keep is not None:  # drop padded tokens instead of masking them: an independent route
                x = x[:, keep]
            else:
                kpm = m.padding_mask(
                    q["mask"], c["mask"][k : k + 1], 1, q["local"].shape[1], c["local"].shape[1], x.device
                )
            for layer in m.encoder:
                x = layer(x) if keep is not None else layer(x, src_key_padding_mask=kpm)
            if m.final_norm is not None:
                x = m.final_norm(x)
            out.append(m.classifier(x[:, 0]).squeeze(-1))
    return torch.cat(out)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("workers", [1, 3])
def test_matches_reference(norm_first, workers):
    m = _model(norm_first=norm_first)
    q, c = _side(1, 9, 0), _side(7, 7, 1)
    s = RRTPairScorer(m, workers=workers, chunk_tokens=40)(q, c)  # 2 pairs per chunk: several chunks
    torch.testing.assert_close(s, _reference(m, q, c), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("share_query", [False, True])
def test_matches_reference_full_size_grid(share_query):
    """The benchmarked setting: 6 layers, FF 1024, 7x7 grids; with / without the shared layer-1 query
    projection."""
    m = _model(num_layers=6, dim_feedforward=1024)
    q, c = _side(1, 49, 0), _side(4, 49, 1)
    scorer = RRTPairScorer(m, workers=2)
    scorer.share_query = share_query
    torch.testing.assert_close(scorer(q, c), _reference(m, q, c), atol=1e-5, rtol=1e-5)


def test_padding_and_global_token():
    """Keypoint input: padded query / candidates, landmark variant with global tokens (shared query
    projection on, so its token count with a global token is checked), matmul attention route too."""
    m = _model(input="keypoints", position_encoding="none")
    q, c = _side(1, 8, 0, pad=[6]), _side(5, 6, 1, pad=[6, 3, 5, 1, 6])
    torch.testing.assert_close(RRTPairScorer(m, workers=2)(q, c), _reference(m, q, c), atol=1e-5, rtol=1e-5)
    lm = _model(variant="landmark", d_global=16)
    q, c = _side(1, 8, 2, 16, pad=[5]), _side(4, 6, 3, 16, pad=[6, 2, 4, 6])
    ref = _reference(lm, q, c)
    torch.testing.assert_close(RRTPairScorer(lm, workers=2)(q, c), ref, atol=1e-5, rtol=1e-5)
    for attention in ("sdpa", "matmul"):
        scorer = RRTPairScorer(lm, workers=1)
        scorer.share_query, scorer.short_attention = True, attention
        torch.testing.assert_close(scorer(q, c), ref, atol=1e-5, rtol=1e-5)


def test_input_pe_not_shared():
    """A per-pair additive PE makes the query tokens differ across pairs: the shortcut must be off."""
    m = _model()
    q, c = _side(1, 9, 0), _side(3, 7, 1)
    pe = torch.randn(3, 16, 128)
    scorer = RRTPairScorer(m, workers=2)
    scorer.share_query = True
    torch.testing.assert_close(scorer(q, c, input_pe=pe), _reference(m, q, c, pe), atol=1e-5, rtol=1e-5)


def test_threads_restored_and_empty():
    m = _model()
    torch.set_num_threads(2)  # the one_thread fixture restores the original count afterwards
    RRTPairScorer(m, workers=2)(_side(1, 9, 0), _side(3, 7, 1))
    assert torch.get_num_threads() == 2
    assert RRTPairScorer(m)(_side(1, 9, 0), _side(0, 7, 1)).shape == (0,)


@pytest.mark.skipif("fbgemm" not in torch.backends.quantized.supported_engines, reason="needs fbgemm")
@pytest.mark.parametrize("quantize", ["int8", "int8_ff"])
def test_int8_close(quantize):
    """Opt-in int8: close to the float32 logits and ranking (random init: the logits spread only ~0.1, so the
    bound is loose; benchmarks/rrt.py reports the measured deviation), not identical (it is really int8)."""
    m = _model(num_layers=6, dim_feedforward=1024)
    q, c = _side(1, 49, 0), _side(12, 49, 1)
    ref = _reference(m, q, c)
    s = RRTPairScorer(m, workers=2, quantize=quantize)(q, c)
    dev = (s - ref).abs().max()
    assert 0 < dev < 0.15
    assert torch.corrcoef(torch.stack([s, ref]))[0, 1] > 0.9


def test_bad_input():
    m = _model()
    with pytest.raises(ConfigError):
        RRTPairScorer(m, quantize="int4")
    with pytest.raises(ConfigError):
        RRTPairScorer(m, workers=0)
    with pytest.raises(ShapeError):
        RRTPairScorer(m)(_side(2, 9, 0), _side(3, 7, 1))
