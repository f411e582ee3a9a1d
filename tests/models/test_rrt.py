"""RRT model: shapes, invariances the paper implies, attention maps, raw cross-attention, checkpoints."""
import math

import pytest
import torch

from relook.errors import ConfigError, DataError, ShapeError
from relook.models.position_encoding import grid_positions, sine_position_encoding
from relook.models.rrt import CAND_LOCAL, QUERY_LOCAL, RRT, scale_indices
from relook.models.rrt_checkpoint import load_official_rrt, load_rrt, save_rrt

SMALL = {"num_layers": 2, "dim_feedforward": 64}


def _pair(B=2, n1=9, n2=7, d=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, n1, d, generator=g), torch.randn(B, n2, d, generator=g),
            torch.rand(B, n1, 2, generator=g), torch.rand(B, n2, 2, generator=g))


def _model(seed=0, **conf):
    torch.manual_seed(seed)
    return RRT(**{**SMALL, **conf}).eval()


def test_shapes():
    m = _model()
    q, c, pq, pc = _pair(B=3, n1=9, n2=7)
    out = m(q, c, pq, pc, return_attention=True, return_last_input=True, return_raw_cross=True)
    L = 1 + 9 + 1 + 7
    assert out.logits.shape == (3,)
    assert len(out.attentions) == 2 and all(a.shape == (3, 4, L, L) for a in out.attentions)
    torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(3, 4, L))
    assert out.last_input.shape == (3, L, 128)
    assert out.raw_cross[0].shape == (3, 9, 7) and out.raw_cross[1].shape == (3, 7, 9)
    a12, a21 = m.raw_cross_attention(out.last_input, 9, 7, per_head=True)
    assert a12.shape == (3, 4, 9, 7) and a21.shape == (3, 4, 7, 9)


def test_landmark_shapes():
    m = _model(variant="landmark")
    q, c, _, _ = _pair(B=2, n1=5, n2=6)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 3:] = True
    out = m(q, c, q_mask=mask, q_global=torch.randn(2, 2048), c_global=torch.randn(2, 2048),
            q_scale_idx=torch.full((2, 5), 3), return_attention=True)
    L = 2 + 5 + 2 + 6
    assert out.attentions[0].shape == (2, 4, L, L)
    assert torch.all(out.attentions[0][0, :, :, 2 + 3:2 + 5] == 0)  # padded keys get no attention


def test_fast_path_matches_attention_path():
    m = _model()
    q, c, pq, pc = _pair()
    with torch.inference_mode():
        fast = m(q, c, pq, pc).logits
    slow = m(q, c, pq, pc, return_attention=True).logits
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_no_pe_permutation_invariant():
    m = _model(position_encoding="none")
    q, c, pq, pc = _pair()
    pi1, pi2 = torch.randperm(9), torch.randperm(7)
    a = m(q, c, pq, pc).logits
    b = m(q[:, pi1], c[:, pi2], pq, pc).logits  # descriptors permuted, positions not: no effect w/o PE
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pe_breaks_permutation_invariance_but_follows_positions():
    m = _model(position_encoding="sine")
    q, c, pq, pc = _pair()
    pi1, pi2 = torch.randperm(9), torch.randperm(7)
    a = m(q, c, pq, pc).logits
    assert not torch.allclose(a, m(q[:, pi1], c[:, pi2], pq, pc).logits, atol=1e-4)
    torch.testing.assert_close(a, m(q[:, pi1], c[:, pi2], pq[:, pi1], pc[:, pi2]).logits, atol=1e-5, rtol=1e-5)


def test_swap_images_is_swap_of_segment_embeddings():
    """The paper's f and f' differ only by beta / beta': swapping images == swapping the betas."""
    m = _model()
    q, c, pq, pc = _pair(n1=8, n2=8)
    a = m(q, c, pq, pc).logits
    assert not torch.allclose(a, m(c, q, pc, pq).logits, atol=1e-4)  # the model is not symmetric
    w = m.segment_embed.weight.data
    w[[QUERY_LOCAL, CAND_LOCAL]] = w[[CAND_LOCAL, QUERY_LOCAL]].clone()
    torch.testing.assert_close(a, m(c, q, pc, pq).logits, atol=1e-5, rtol=1e-5)


def test_raw_cross_attention_matches_reference():
    """softmax(scaled raw logits) over the whole sequence == nn.MultiheadAttention's last-layer map."""
    m = _model()
    q, c, pq, pc = _pair(B=2, n1=9, n2=7)
    out = m(q, c, pq, pc, return_attention=True, return_last_input=True)
    y = out.last_input
    attn = m.encoder[-1].self_attn
    W, b = attn.in_proj_weight, attn.in_proj_bias
    H, dh = 4, 32
    Q = (y @ W[:128].T + b[:128]).view(2, -1, H, dh)
    K = (y @ W[128:256].T + b[128:256]).view(2, -1, H, dh)
    full = torch.einsum("bihd,bjhd->bhij", Q, K)  # (B, H, L, L) unscaled
    torch.testing.assert_close(torch.softmax(full / math.sqrt(dh), -1), out.attentions[-1], atol=1e-5, rtol=1e-4)
    a12, a21 = m.raw_cross_attention(y, 9, 7, per_head=True)
    torch.testing.assert_close(a12, full[:, :, 1:10, 11:18], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a21, full[:, :, 11:18, 1:10], atol=1e-4, rtol=1e-4)
    s12, _ = m.raw_cross_attention(y, 9, 7, scaled=True)
    torch.testing.assert_close(s12, full[:, :, 1:10, 11:18].sum(1) / math.sqrt(dh), atol=1e-4, rtol=1e-4)


def test_raw_cross_full_width_matches_reference():
    """Eq. 1-2 of the epipolar paper: ONE W_Q, W_K of width 128, A12 = (W_Q y)(W_K y')^T, no head split."""
    m = _model()
    q, c, pq, pc = _pair(B=2, n1=9, n2=7)
    out = m(q, c, pq, pc, return_last_input=True, return_raw_cross=True)
    y = out.last_input.double()
    W, b = (t.detach().double() for t in (m.encoder[-1].self_attn.in_proj_weight, m.encoder[-1].self_attn.in_proj_bias))
    A12, A21 = torch.zeros(2, 9, 7, dtype=torch.float64), torch.zeros(2, 7, 9, dtype=torch.float64)
    for bi in range(2):  # slow loop over token pairs, full-width dot products
        for i in range(9):
            for j in range(7):
                qa, kb = W[:128] @ y[bi, 1 + i] + b[:128], W[128:256] @ y[bi, 11 + j] + b[128:256]
                qb, ka = W[:128] @ y[bi, 11 + j] + b[:128], W[128:256] @ y[bi, 1 + i] + b[128:256]
                A12[bi, i, j], A21[bi, j, i] = qa @ kb, qb @ ka
    torch.testing.assert_close(out.raw_cross[0].double(), A12, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out.raw_cross[1].double(), A21, atol=1e-3, rtol=1e-4)
    # the literal equation without projection biases
    n12, _ = m.raw_cross_attention(out.last_input, 9, 7, bias=False)
    ref = torch.einsum("bic,bjc->bij", y[:, 1:10] @ W[:128].T, y[:, 11:18] @ W[128:256].T)
    torch.testing.assert_close(n12.double(), ref, atol=1e-3, rtol=1e-4)


def test_input_pe_hook():
    m = _model()
    q, c, pq, pc = _pair(n1=9, n2=7)
    zero = m(q, c, pq, pc, input_pe=torch.zeros(2, 16, 128)).logits
    torch.testing.assert_close(zero, m(q, c, pq, pc).logits)
    # adding the PE through the hook == adding it to the descriptors themselves
    pe = torch.randn(2, 16, 128)
    torch.testing.assert_close(m(q, c, pq, pc, input_pe=pe).logits,
                               m(q + pe[:, :9], c + pe[:, 9:], pq, pc).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ShapeError):
        m(q, c, pq, pc, input_pe=torch.zeros(2, 15, 128))


def test_sine_pe_matches_reference():
    """Against a loop over the DETR/official formula on a 7x7 grid (cumsum-normalised, scale 2)."""
    h = w = 7
    d, T, s = 128, 10000.0, 2.0
    pe = sine_position_encoding(grid_positions(h, w), d, T, s)
    npf = d // 2
    for i in range(h):
        for j in range(w):
            ref = []
            for v in ((i + 1) / h * s, (j + 1) / w * s):  # y then x
                for k in range(npf):
                    t = T ** (2 * (k // 2) / npf)
                    ref.append(math.sin(v / t) if k % 2 == 0 else math.cos(v / t))
            torch.testing.assert_close(pe[i * w + j], torch.tensor(ref), atol=1e-5, rtol=1e-5)


def test_scale_indices():
    s = torch.tensor([0.5, 0.7, 0.71, 1.0, 1.5, 4.0, 8.0, 0.1])
    assert scale_indices(s).tolist() == [0, 0, 1, 2, 3, 6, 6, 0]


def test_bad_input():
    with pytest.raises(ConfigError):
        RRT(variant="nope")
    with pytest.raises(ConfigError):
        RRT(position_encoding="learned")
    with pytest.raises(ConfigError):
        RRT(nhead=3)
    m = _model()
    with pytest.raises(ShapeError):
        m(torch.zeros(2, 3, 128), torch.zeros(3, 3, 128), torch.zeros(2, 3, 2), torch.zeros(3, 3, 2))
    with pytest.raises(ShapeError):
        m(torch.zeros(2, 3, 128), torch.zeros(2, 3, 128))  # sine PE needs positions


def test_checkpoint_roundtrip(tmp_path):
    m = _model(seed=3, variant="landmark", d_local=64)
    path = save_rrt(tmp_path / "rrt.pt", m, epoch=4)
    m2 = load_rrt(path)
    assert m2.conf == m.conf
    q, c = torch.randn(2, 5, 64), torch.randn(2, 4, 64)
    g = torch.randn(2, 2048)
    torch.testing.assert_close(m(q, c, q_global=g, c_global=g).logits, m2(q, c, q_global=g, c_global=g).logits)
    with pytest.raises(DataError):
        load_rrt(tmp_path / "missing.pt")


def _official_gld_state(m: RRT) -> dict:
    """Write our weights in the official RRT_GLD layout (DataParallel prefix, official row order)."""
    seg = m.segment_embed.weight.detach()
    st = {"module.seg_encoder.weight": seg[[QUERY_LOCAL, CAND_LOCAL, 0, 1, 4, 5]].clone(),
          "module.remap.weight": m.global_proj.weight, "module.remap.bias": m.global_proj.bias,
          "module.scale_encoder.weight": m.scale_embed.weight,
          "module.classifier.weight": m.classifier.weight, "module.classifier.bias": m.classifier.bias}
    for k, v in m.encoder.state_dict().items():
        st[f"module.encoder.layers.{k}"] = v
    return {"state": {k: v.detach().clone() for k, v in st.items()}, "optim": None}


def test_official_checkpoint_loads(tmp_path):
    m = _model(seed=5, variant="landmark")
    path = tmp_path / "r50_gldv1.pt"
    torch.save(_official_gld_state(m), path)
    m2 = load_rrt(path)
    assert m2.conf["variant"] == "landmark" and m2.conf["num_layers"] == 2 and m2.conf["dim_feedforward"] == 64
    q, c = torch.randn(2, 5, 128), torch.randn(2, 4, 128)
    g = torch.randn(2, 2048)
    si = torch.randint(0, 7, (2, 5)), torch.randint(0, 7, (2, 4))
    torch.testing.assert_close(m(q, c, q_global=g, c_global=g, q_scale_idx=si[0], c_scale_idx=si[1]).logits,
                               m2(q, c, q_global=g, c_global=g, q_scale_idx=si[0], c_scale_idx=si[1]).logits)


def test_official_sop_layout_loads():
    m = _model(seed=6)
    seg = m.segment_embed.weight.detach()
    st = {"module.matcher.seg_encoder.weight": seg[[0, 1, QUERY_LOCAL, CAND_LOCAL]].clone(),
          "module.matcher.classifier.weight": m.classifier.weight, "module.matcher.classifier.bias": m.classifier.bias,
          "module.layer4.0.conv1.weight": torch.zeros(1)}
    st.update({f"module.matcher.encoder.layers.{k}": v for k, v in m.encoder.state_dict().items()})
    m2 = load_official_rrt({"state": st})
    q, c, pq, pc = _pair()
    torch.testing.assert_close(m(q, c, pq, pc).logits, m2(q, c, pq, pc).logits)
    with pytest.raises(DataError):
        load_official_rrt({"state": {"foo": torch.zeros(1)}})


@pytest.mark.parametrize("norm_first", [False, True])
def test_sdpa_layer_matches_reference(norm_first):
    """The SDPA layer (full and CLS-only) equals nn.TransformerEncoderLayer, with and without padding."""
    m = _model(norm_first=norm_first)
    layer = m.encoder[0]
    x = torch.randn(3, 12, 128)
    kpm = torch.zeros(3, 12, dtype=torch.bool)
    kpm[1, 8:] = True
    with torch.no_grad():
        for mask in (None, kpm):
            ref = layer(x, src_key_padding_mask=mask)
            full = RRT._layer_sdpa(layer, x, mask)
            cls = RRT._layer_sdpa(layer, x, mask, cls_only=True)
            keep = slice(None) if mask is None else ~mask  # padded rows are undefined in the reference
            torch.testing.assert_close(full[keep], ref[keep], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(cls, ref[:, :1], atol=1e-5, rtol=1e-4)


def test_long_sequence_path_matches_attention_path():
    m = _model(variant="landmark")
    m.SDPA_MIN_LEN = 8  # force the SDPA path on a short test sequence
    q, c, _, _ = _pair(B=2, n1=6, n2=5)
    g = torch.randn(2, 2048)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    with torch.inference_mode():
        fast = m(q, c, q_mask=mask, q_global=g, c_global=g).logits
    slow = m(q, c, q_mask=mask, q_global=g, c_global=g, return_attention=True).logits
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_grid_positions_official_sop():
    """A stored 7x7 cnn_local grid enters RRT at the official SOP positions (DETR normalised cumsum:
    ((j + 1) / 7, (i + 1) / 7)), not at the cell centres ((j + 0.5) / 7, ...) half a cell off."""
    import numpy as np

    from relook.features.cnn_local import grid_keypoints
    from relook.models.rrt_inputs import pack_side
    from relook.types import ImageFeatures

    f = ImageFeatures("x", local_desc=np.zeros((49, 128), np.float32), keypoints=grid_keypoints(7, 7, 300, 400),
                      image_size=np.array([300, 400]))
    side = pack_side([f], RRT(**SMALL).conf)
    want = [[(j + 1) / 7, (i + 1) / 7] for i in range(7) for j in range(7)]
    torch.testing.assert_close(side["pos"][0], torch.tensor(want))
    kp = pack_side([f], RRT(**SMALL, input="keypoints").conf)  # keypoint inputs keep keypoint / size
    torch.testing.assert_close(kp["pos"][0], torch.from_numpy(f.keypoints / np.array([400, 300], np.float32)))
