import numpy as np
import pytest

from relook.errors import ShapeError
from relook.viz.epipolar import grid_of_patches, plot_epipolar_attention


def test_grid_of_patches_matches_reference():
    s = 3
    M = np.arange(81, dtype=float).reshape(9, 9)
    G = grid_of_patches(M, s, gap=1)
    assert G.shape == (11, 11)
    # patch of cell (r, c) = (1, 2) -> row i = 5 reshaped to 3x3 at rows 4..6, cols 8..10
    assert np.array_equal(G[4:7, 8:11], M[5].reshape(3, 3))
    assert np.isnan(G[3]).all() and np.isnan(G[:, 7]).all()
    with pytest.raises(ShapeError):
        grid_of_patches(M[:5], s)


def test_smoke(tmp_path):
    from relook.geometry.epipolar import epipolar_indicator, random_fundamental

    F = random_fundamental(seed=0).numpy()
    I12, _ = epipolar_indicator(F, (64, 64), (64, 64), 4)
    img = np.zeros((64, 64, 3), np.uint8)
    out = plot_epipolar_attention(
        img, img, F, I12.numpy(), np.random.default_rng(0).random((16, 16)), tmp_path / "a.png", s=4, title="synthetic"
    )
    assert out.exists() and out.stat().st_size > 1000


def test_cross_attention_maps_read_the_cross_blocks():
    """The block the epipolar share is read from: rows of image-1 locals, columns of image-2 locals (and back)
    of the head-averaged last-layer softmax, each row renormalised. Reference: the probabilities computed
    from the weights (tests/rrt_reference.py) sliced at hand-written positions [CLS, q_1..q_9, SEP, c_1..c_7];
    n1 != n2 so that a transposed or shifted block cannot pass."""
    import torch

    from relook.models.rrt import RRT
    from relook.viz.epipolar import cross_attention_maps
    from tests.rrt_reference import attention, encoder_layer, layer_tensors

    torch.manual_seed(0)
    model = RRT(variant="sop", num_layers=2, position_encoding="none").eval()
    B, n1, n2 = 2, 9, 7
    q, c = torch.randn(B, n1, 128), torch.randn(B, n2, 128)
    st = model.state_dict()
    seg = st["segment_embed.weight"].double()
    x = torch.cat([seg[0].expand(B, 1, -1), q.double() + seg[2], seg[1].expand(B, 1, -1), c.double() + seg[3]], 1)
    y = encoder_layer(x, layer_tensors(st, "encoder.0."), nhead=4)
    _, P = attention(y, layer_tensors(st, "encoder.1."), nhead=4)
    P = P.mean(1)
    w12, w21 = P[:, 1:10, 11:18], P[:, 11:18, 1:10]
    w12, w21 = w12 / w12.sum(-1, keepdim=True), w21 / w21.sum(-1, keepdim=True)

    def side(local):
        n = local.shape[1]
        return {
            "local": local,
            "pos": None,
            "mask": torch.zeros(B, n, dtype=torch.bool),
            "scale_idx": None,
            "global": None,
        }

    a12, a21 = cross_attention_maps(model, side(q), side(c))
    assert a12.shape == (B, n1, n2) and a21.shape == (B, n2, n1)
    torch.testing.assert_close(a12.double(), w12, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a21.double(), w21, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("d_global", [0, 96])
def test_share_block_is_the_supervised_block(d_global):
    """The epipolar share is read from the block L_EPI / L_MaxEPI supervise. With ONE head the head-mean
    logits the loss reads (``TrainingGuidance.supervised_logits``: last layer, Q K'^T / sqrt(d)) are exactly
    that layer's softmax logits, and a softmax row renormalised over the other image's keys is the softmax of
    those keys' logits alone; so ``cross_attention_maps`` must equal softmax(A12) / softmax(A21) row-wise.
    With a global token per image (``d_global``, as the shipped RRT checkpoints) the locals start one slot
    later on each side: a block read at the no-global offsets, or from another layer, fails."""
    import torch

    from relook.models.rrt import RRT
    from relook.train.epipolar import TrainingGuidance
    from relook.viz.epipolar import cross_attention_maps

    torch.manual_seed(0)
    model = RRT(variant="sop", num_layers=2, nhead=1, position_encoding="none", d_global=d_global).eval()
    B, n1, n2 = 2, 9, 7
    q, c = torch.randn(B, n1, 128), torch.randn(B, n2, 128)
    gq, gc = (torch.randn(B, d_global), torch.randn(B, d_global)) if d_global else (None, None)

    def side(local, glob):
        n = local.shape[1]
        return {
            "local": local,
            "pos": None,
            "mask": torch.zeros(B, n, dtype=torch.bool),
            "scale_idx": None,
            "global": glob,
        }

    a12, a21 = cross_attention_maps(model, side(q, gq), side(c, gc))
    with torch.no_grad():
        out = model(q, c, q_global=gq, c_global=gc, return_last_input=True, return_raw_cross=True)
        A12, A21 = TrainingGuidance(cameras={}, guidance="epi", grid=3).supervised_logits(model, out)
    torch.testing.assert_close(a12, A12.softmax(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a21, A21.softmax(-1), atol=1e-5, rtol=1e-4)
