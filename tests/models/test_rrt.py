"""RRT model: shapes, invariances the paper implies, attention maps, raw cross-attention, checkpoints."""

import math

import pytest
import torch

from relook.errors import ConfigError, DataError, ShapeError
from relook.models.position_encoding import grid_positions, sine_position_encoding
from relook.models.rrt import CAND_LOCAL, QUERY_LOCAL, RRT, scale_indices
from relook.models.rrt.checkpoint import load_official_rrt, load_rrt, save_rrt

SMALL = {"num_layers": 2, "dim_feedforward": 64}


def _pair(B=2, n1=9, n2=7, d=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, n1, d, generator=g),
        torch.randn(B, n2, d, generator=g),
        torch.rand(B, n1, 2, generator=g),
        torch.rand(B, n2, 2, generator=g),
    )


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
    out = m(
        q,
        c,
        q_mask=mask,
        q_global=torch.randn(2, 2048),
        c_global=torch.randn(2, 2048),
        q_scale_idx=torch.full((2, 5), 3),
        return_attention=True,
    )
    L = 2 + 5 + 2 + 6
    assert out.attentions[0].shape == (2, 4, L, L)
    assert torch.all(out.attentions[0][0, :, :, 2 + 3 : 2 + 5] == 0)  # padded keys get no attention


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
    torch.testing.assert_close(
        m(q, c, pq, pc, input_pe=pe).logits, m(q + pe[:, :9], c + pe[:, 9:], pq, pc).logits, atol=1e-5, rtol=1e-5
    )
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


# -- official checkpoints ------------------------------------------------------------------------------------
# Module names and shapes written out from the official code (github.com/uvavision/RerankingTransformer):
# RRT_GLD/models/matcher.py MatchERT(d_global=2048, d_model=128, nhead=4, num_encoder_layers=6,
# dim_feedforward=1024, normalize_before=False) and RRT_SOP/models/{matcher,base_model}.py (the same matcher
# under ``matcher.`` of a ResNet-50 BaseModel, 4 segment rows, no remap); each encoder layer is DETR's
# TransformerEncoderLayer (nn.MultiheadAttention self_attn, linear1, linear2, norm1, norm2). Checkpoints are
# ``{"state": state_dict, "optim": ...}`` with "module." stripped (utils.state_dict_to_cpu).


def _official_layer_shapes(prefix, d=128, ff=1024):
    return {
        prefix + "self_attn.in_proj_weight": (3 * d, d),
        prefix + "self_attn.in_proj_bias": (3 * d,),
        prefix + "self_attn.out_proj.weight": (d, d),
        prefix + "self_attn.out_proj.bias": (d,),
        prefix + "linear1.weight": (ff, d),
        prefix + "linear1.bias": (ff,),
        prefix + "linear2.weight": (d, ff),
        prefix + "linear2.bias": (d,),
        prefix + "norm1.weight": (d,),
        prefix + "norm1.bias": (d,),
        prefix + "norm2.weight": (d,),
        prefix + "norm2.bias": (d,),
    }


OFFICIAL_GLD_SHAPES = {
    **{k: v for i in range(6) for k, v in _official_layer_shapes(f"encoder.layers.{i}.").items()},
    "remap.weight": (128, 2048),
    "remap.bias": (128,),
    "scale_encoder.weight": (7, 128),
    "seg_encoder.weight": (6, 128),
    "classifier.weight": (1, 128),
    "classifier.bias": (1,),
}
OFFICIAL_SOP_SHAPES = {
    **{k: v for i in range(6) for k, v in _official_layer_shapes(f"matcher.encoder.layers.{i}.").items()},
    "matcher.seg_encoder.weight": (4, 128),
    "matcher.classifier.weight": (1, 128),
    "matcher.classifier.bias": (1,),
    # a few backbone / global-head tensors of the BaseModel around it (ignored by the reranker)
    "mean": (1, 3, 1, 1),
    "std": (1, 3, 1, 1),
    "conv1.weight": (64, 3, 7, 7),
    "bn1.weight": (64,),
    "remap_local.weight": (128, 2048, 1, 1),
    "remap_local.bias": (128,),
    "classifier.weight": (11318, 128),
    "classifier.bias": (11318,),
}


def _random_state(shapes, seed):
    """Random tensors of the given shapes at sane scales (LayerNorm weights near 1, matrices ~ 1/sqrt(fan_in))."""
    g = torch.Generator().manual_seed(seed)
    st = {}
    for k, shape in shapes.items():
        t = torch.randn(*shape, generator=g)
        if k.endswith(("norm1.weight", "norm2.weight")):
            t = 1.0 + 0.1 * t
        elif len(shape) >= 2 and "seg_encoder" not in k and "scale_encoder" not in k:
            t = t / math.sqrt(shape[1])
        else:
            t = 0.1 * t
        st[k] = t
    return st


def _official_reference(st, prefix, tokens, mask=None):
    """Official forward of the encoder + classifier: 6 post-LN layers on (B, L, 128), logit of token 0."""
    from tests.rrt_reference import encoder_layer, layer_tensors

    x = tokens.double()
    for i in range(6):
        x = encoder_layer(x, layer_tensors(st, f"{prefix}encoder.layers.{i}."), nhead=4, key_padding_mask=mask)
    return x[:, 0] @ st[prefix + "classifier.weight"].double()[0] + st[prefix + "classifier.bias"].double()[0]


def test_official_gld_checkpoint_matches_reference(tmp_path):
    """An official RRT_GLD checkpoint (names and shapes of MatchERT, written out above) gives the logits of the
    official forward, rebuilt here from its tensors: remap + L2 norm of globals, L2 norm of locals, scale and
    segment rows (query local 0, candidate local 1, CLS 2, SEP 3, query global 4, candidate global 5),
    sequence [CLS, g, locals, SEP, g', locals'], padded locals masked, 6 post-LN layers, classifier on CLS."""
    st = _random_state(OFFICIAL_GLD_SHAPES, seed=11)
    path = tmp_path / "r50_gldv2.pt"
    torch.save({"state": st, "optim": None}, path)
    model = load_rrt(path)
    assert (model.conf["variant"], model.conf["num_layers"], model.conf["dim_feedforward"], model.conf["d_global"]) == (
        "landmark",
        6,
        1024,
        2048,
    )
    g = torch.Generator().manual_seed(1)
    B, n1, n2 = 3, 6, 5
    sg, tg = torch.randn(B, 2048, generator=g), torch.randn(B, 2048, generator=g)
    sl, tl = torch.randn(B, n1, 128, generator=g), torch.randn(B, n2, 128, generator=g)
    ss, ts = torch.randint(0, 7, (B, n1), generator=g), torch.randint(0, 7, (B, n2), generator=g)
    sm, tm = torch.zeros(B, n1, dtype=torch.bool), torch.zeros(B, n2, dtype=torch.bool)
    sm[0, 4:], tm[1, 3:] = True, True
    seg = st["seg_encoder.weight"].double()
    scale = st["scale_encoder.weight"].double()

    def glob(x):
        return torch.nn.functional.normalize(
            x.double() @ st["remap.weight"].double().T + st["remap.bias"].double(), dim=-1
        )

    def loc(x, s, row):
        return torch.nn.functional.normalize(x.double(), dim=-1) + scale[s] + seg[row]

    tokens = torch.cat(
        [
            seg[2].expand(B, 1, -1),
            (glob(sg) + seg[4])[:, None],
            loc(sl, ss, 0),
            seg[3].expand(B, 1, -1),
            (glob(tg) + seg[5])[:, None],
            loc(tl, ts, 1),
        ],
        1,
    )
    z = torch.zeros(B, 2, dtype=torch.bool)
    want = _official_reference(st, "", tokens, torch.cat([z, sm, z, tm], 1))
    with torch.no_grad():
        got = model(sl, tl, q_mask=sm, c_mask=tm, q_scale_idx=ss, c_scale_idx=ts, q_global=sg, c_global=tg).logits
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
    # a DataParallel-prefixed state dict loads the same
    m2 = load_official_rrt({"state": {f"module.{k}": v for k, v in st.items()}})
    with torch.no_grad():
        torch.testing.assert_close(
            m2(sl, tl, q_mask=sm, c_mask=tm, q_scale_idx=ss, c_scale_idx=ts, q_global=sg, c_global=tg).logits, got
        )


def test_official_sop_checkpoint_matches_reference():
    """An official RRT_SOP checkpoint (ResNet-50 BaseModel with the matcher under ``matcher.``) gives the logits
    of the official SOP forward rebuilt from its tensors: 7x7 local maps flattened row-major, DETR sine PE
    (normalize=True, scale=2, temperature 10000, y channels then x) added to both images, segment rows CLS 0,
    SEP 1, query local 2, candidate local 3, no normalisation, no global token."""
    st = _random_state(OFFICIAL_SOP_SHAPES, seed=12)
    model = load_official_rrt({"state": st, "optim": None})
    assert (model.conf["variant"], model.conf["num_layers"], model.has_global) == ("sop", 6, False)
    g = torch.Generator().manual_seed(2)
    B, h, w = 2, 7, 7
    src, tgt = torch.randn(B, 128, h, w, generator=g), torch.randn(B, 128, h, w, generator=g)
    pe = torch.zeros(128, h, w, dtype=torch.float64)  # DETR PositionEmbeddingSine(64, normalize=True, scale=2)
    for i in range(h):
        for j in range(w):
            for k in range(64):
                t = 10000.0 ** (2 * (k // 2) / 64)
                y, x = (i + 1) / (h + 1e-6) * 2.0, (j + 1) / (w + 1e-6) * 2.0
                pe[k, i, j] = math.sin(y / t) if k % 2 == 0 else math.cos(y / t)
                pe[64 + k, i, j] = math.sin(x / t) if k % 2 == 0 else math.cos(x / t)
    seg = st["matcher.seg_encoder.weight"].double()
    flat = lambda m: (m.double() + pe).flatten(2).transpose(1, 2)  # noqa: E731  (B, h*w, 128), row-major cells
    tokens = torch.cat([seg[0].expand(B, 1, -1), flat(src) + seg[2], seg[1].expand(B, 1, -1), flat(tgt) + seg[3]], 1)
    want = _official_reference(st, "matcher.", tokens)
    pos = torch.tensor([[(j + 1) / w, (i + 1) / h] for i in range(h) for j in range(w)]).expand(B, h * w, 2)
    with torch.no_grad():
        got = model(src.flatten(2).transpose(1, 2), tgt.flatten(2).transpose(1, 2), pos, pos).logits
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
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
    from relook.models.rrt.inputs import pack_side
    from relook.types import ImageFeatures

    f = ImageFeatures(
        "x",
        local_desc=np.zeros((49, 128), np.float32),
        keypoints=grid_keypoints(7, 7, 300, 400),
        image_size=np.array([300, 400]),
    )
    side = pack_side([f], RRT(**SMALL).conf)
    want = [[(j + 1) / 7, (i + 1) / 7] for i in range(7) for j in range(7)]
    torch.testing.assert_close(side["pos"][0], torch.tensor(want))
    kp = pack_side([f], RRT(**SMALL, input="keypoints").conf)  # keypoint inputs keep keypoint / size
    torch.testing.assert_close(kp["pos"][0], torch.from_numpy(f.keypoints / np.array([400, 300], np.float32)))
