"""Attention rollout (Eq. 7) vs a slow per-layer numpy loop; relevancy is a probability vector."""

import numpy as np
import pytest
import torch

from relook.errors import ConfigError, ShapeError
from relook.features.rollout import (
    area_weights,
    drop_prefix,
    resize_attention,
    rollout,
    rollout_relevancy,
    stage_attention,
)


def _attn(b, layers, heads, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(b, layers, heads, n, n, generator=g, dtype=torch.float64) * 2, dim=-1)


def _slow_rollout(a, norm="l2"):  # a: (L, H, N, N) numpy, one image; Eq. 7 written out entry by entry
    """A~(l_0) = A(l_0); A~(l_i) = A^(l_i) A~(l_{i-1}) with A^ = A + I divided row by row by its L2 norm
    (``norm="l2"``, the paper's text) or by its sum, 2 for the row-stochastic head average (``"sum"``), every
    entry an explicit sum over the middle index."""
    L, H, n, _ = a.shape
    avg = [[[sum(a[layer, h, i, j] for h in range(H)) / H for j in range(n)] for i in range(n)] for layer in range(L)]
    out = avg[0]
    for layer in range(1, L):
        plus = [[avg[layer][i][j] + (i == j) for j in range(n)] for i in range(n)]
        scale = [sum(v * v for v in row) ** 0.5 if norm == "l2" else 2.0 for row in plus]
        hat = [[plus[i][j] / scale[i] for j in range(n)] for i in range(n)]
        out = [[sum(hat[i][k] * out[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    return np.array(out)


def test_two_layers_known_numbers():
    """By hand: A0 = [[.8, .2], [.4, .6]], A1 = [[.5, .5], [.1, .9]] (each the mean of two heads).
    Row sums: A^1 = (A1 + I) / 2 = [[.75, .25], [.05, .95]], A~ = A^1 A0 = [[.7, .3], [.42, .58]].
    L2 (the paper): A1 + I = [[1.5, .5], [.1, 1.9]], row norms sqrt(2.5) and sqrt(3.62), so
    A~ = [[1.4, .6] / sqrt(2.5), [.84, 1.16] / sqrt(3.62)]."""
    a0 = np.array([[[0.9, 0.1], [0.3, 0.7]], [[0.7, 0.3], [0.5, 0.5]]])  # heads average to A0
    a1 = np.array([[[0.6, 0.4], [0.0, 1.0]], [[0.4, 0.6], [0.2, 0.8]]])  # heads average to A1
    attn = [torch.tensor(a0[None]), torch.tensor(a1[None])]  # (B=1, H=2, 2, 2) per layer
    by_sum = np.array([[0.7, 0.3], [0.42, 0.58]])
    by_l2 = np.array([[1.4 / 2.5**0.5, 0.6 / 2.5**0.5], [0.84 / 3.62**0.5, 1.16 / 3.62**0.5]])
    np.testing.assert_allclose(rollout(attn, norm="sum")[0].numpy(), by_sum, atol=1e-12)
    np.testing.assert_allclose(_slow_rollout(np.stack([a0, a1]), "sum"), by_sum, atol=1e-12)
    np.testing.assert_allclose(rollout(attn)[0].numpy(), by_l2, atol=1e-12)  # the default is the paper's
    np.testing.assert_allclose(_slow_rollout(np.stack([a0, a1])), by_l2, atol=1e-12)


@pytest.mark.parametrize("norm", ["l2", "sum"])
def test_matches_reference(norm):
    a = _attn(2, 4, 3, 6)
    got = rollout([a[:, i] for i in range(4)], norm=norm)
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), _slow_rollout(a[b].numpy(), norm), atol=1e-12)
    torch.testing.assert_close(rollout(a.mean(2), norm=norm), got)


def test_relevancy_is_probability_vector():
    a = _attn(3, 5, 2, 1 + 16)  # CLS + 4x4 grid
    rel = rollout_relevancy(rollout(a.mean(2)), num_prefix=1, grid_hw=(4, 4), out_hw=(2, 2))
    assert rel.shape == (3, 4) and (rel >= 0).all()
    torch.testing.assert_close(rel.sum(1), torch.ones(3, dtype=rel.dtype))
    # slow reference: mean of the spatial rows over spatial columns, pooled by summing 2x2 cells
    r = _slow_rollout(a[0].numpy())[1:, 1:].mean(0).reshape(4, 4)
    r = r.reshape(2, 2, 2, 2).sum((1, 3)).ravel()
    np.testing.assert_allclose(rel[0].numpy(), r / r.sum(), atol=1e-12)


def test_resize_keeps_rows_stochastic():
    a = _attn(2, 1, 1, 16)[:, 0, 0]  # 4x4 grid
    small = resize_attention(a, (4, 4), (4, 4), (2, 2))
    assert small.shape == (2, 4, 4)
    torch.testing.assert_close(small.sum(-1), torch.ones(2, 4, dtype=small.dtype))
    # hand check of one entry: mean over the query cell's 4 rows of the sum over the key cell's 4 columns
    q_cell, k_cell = [0, 1, 4, 5], [2, 3, 6, 7]
    ref = a[0][q_cell][:, k_cell].sum(1).mean()
    torch.testing.assert_close(small[0, 0, 1], ref)


def test_area_weights_average():
    w = area_weights((4, 6), (2, 3))
    assert w.shape == (6, 24)
    torch.testing.assert_close(w.sum(1), torch.ones(6, dtype=w.dtype))


def test_drop_prefix():
    a = _attn(1, 1, 1, 5)[:, 0, 0]
    d = drop_prefix(a, 1)
    assert d.shape == (1, 4, 4)
    torch.testing.assert_close(d.sum(-1), torch.ones(1, 4, dtype=d.dtype))


def test_stage_attention_matches_loop():
    """A CvT stage-3 block: CLS + 4x4 queries, CLS + 2x2 keys (stride-2 projection), 2 heads -> 4x4 grid. By
    hand: heads averaged, CLS row and column dropped, rows renormalised; queries stay, each key's mass split
    evenly over the 2x2 cells it covers."""
    g = torch.Generator().manual_seed(2)
    a = torch.softmax(torch.randn(1, 2, 17, 5, generator=g, dtype=torch.float64), -1)
    got = stage_attention(a, (4, 4), (2, 2), (4, 4), num_prefix=1)[0].numpy()
    m = a[0].mean(0).numpy()[1:, 1:]
    m = m / m.sum(1, keepdims=True)
    ref = np.zeros((16, 16))
    for q in range(16):
        for cell in range(16):
            key = (cell // 4 // 2) * 2 + (cell % 4) // 2  # the 2x2-grid key above this 4x4 cell
            ref[q, cell] = m[q, key] / 4
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-12)


def test_bad_input():
    with pytest.raises(ShapeError):
        rollout([torch.rand(1, 4, 4), torch.rand(1, 5, 5)])
    with pytest.raises(ShapeError):
        rollout_relevancy(torch.rand(1, 10, 10), num_prefix=1, grid_hw=(4, 4))
    with pytest.raises(ShapeError):
        rollout([])
    with pytest.raises(ConfigError, match="norm"):
        rollout([torch.rand(1, 4, 4)], norm="l1")


def test_window_to_global_matches_loop():
    from relook.features.rollout import window_to_global

    h, w, ws, shift = 5, 6, 3, (1, 1)
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(2, 4, ws * ws, ws * ws, generator=g, dtype=torch.float64), -1)  # 2x2 windows
    got = window_to_global(a, (h, w), (ws, ws), shift)
    # slow reference: token (y, x) sits at ((y - 1) mod h, (x - 1) mod w) of the shifted, padded 6x6 grid
    ref = np.zeros((2, h * w, h * w))
    pos = {}
    for y in range(h):
        for x in range(w):
            sy, sx = (y - shift[0]) % h, (x - shift[1]) % w
            pos[y * w + x] = ((sy // ws) * 2 + sx // ws, (sy % ws) * ws + sx % ws)
    for p, (wp, ip) in pos.items():
        for q, (wq, iq) in pos.items():
            if wp == wq:
                ref[:, p, q] = a[:, wp, ip, iq].numpy()
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_window_attention_resized_matches_two_steps():
    from relook.features.rollout import window_attention_resized, window_to_global

    g = torch.Generator().manual_seed(1)
    a = torch.softmax(torch.randn(2, 4, 9, 9, generator=g, dtype=torch.float64), -1)  # 5x6 grid, 3x3 windows
    ref = resize_attention(window_to_global(a, (5, 6), (3, 3), (1, 1)), (5, 6), (5, 6), (2, 3))
    got = window_attention_resized(a, (5, 6), (3, 3), (1, 1), (2, 3))
    torch.testing.assert_close(got, ref)
