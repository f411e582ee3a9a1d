import json

import numpy as np
import pytest
import torch

from relook.errors import ConfigError
from relook.geometry.epipolar import epipolar_indicator, fundamental_from_cameras, random_fundamental
from relook.losses.epipolar import epipolar_loss, max_epipolar_loss
from relook.models.rrt import RRT
from relook.train.epipolar import TrainingGuidance, guidance_hooks


def cams():
    K = np.array([[300.0, 0, 223.5], [0, 300.0, 111.5], [0, 0, 1]])  # stored images are 224 x 448
    c, s = np.cos(0.4), np.sin(0.4)
    R2 = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    return {"a": {"K": K, "R": np.eye(3), "t": np.zeros(3)}, "b": {"K": K, "R": R2, "t": np.array([1.0, 0.1, 0.3])}}


def batch_and_output(B=4, s=7, seed=0):
    """A 2-layer RRT (no sine PE, so the embedding is locals + segment rows) on random locals, and a batch."""
    torch.manual_seed(seed)
    model = RRT(variant="sop", num_layers=2, position_encoding="none")
    q, c = torch.randn(B, s * s, 128), torch.randn(B, s * s, 128)
    out = model(q, c, return_last_input=True, return_raw_cross=True)
    batch = {
        "query_ids": ["a", "a", "b", "a"][:B],
        "candidate_ids": ["b", "b", "a", "x"][:B],
        "labels": torch.tensor([1.0, 0.0, 1.0, 1.0])[:B],
        "model": model,
        "locals": (q, c),
    }
    return model, batch, out


def last_layer_input(model, q, c):
    """y_{L-1} of Sec. 3.3 without the model's forward: [CLS, q + beta, SEP, c + beta'] from the segment rows
    (CLS 0, SEP 1, query local 2, candidate local 3), through layer 1 written out (tests/rrt_reference.py)."""
    from tests.rrt_reference import encoder_layer, layer_tensors

    state = model.state_dict()
    seg = state["segment_embed.weight"].double()
    B = q.shape[0]
    x = torch.cat([seg[0].expand(B, 1, -1), q.double() + seg[2], seg[1].expand(B, 1, -1), c.double() + seg[3]], 1)
    return encoder_layer(x, layer_tensors(state, "encoder.0."), nhead=4)


def full_width_logits(model, y, n1, n2):
    """Eq. 1-2 written out from the last layer's weights: A12 = (W_Q y + b_Q)(W_K y' + b_K)^T over all 128
    dims, and per head (4 heads of 32 dims), both without ``raw_cross_attention``."""
    W = model.encoder[-1].self_attn.in_proj_weight.detach().double()
    b = model.encoder[-1].self_attn.in_proj_bias.detach().double()
    y = y.detach().double()
    Q, K = y @ W[:128].T + b[:128], y @ W[128:256].T + b[128:256]
    qa, ka, qb, kb = Q[:, 1 : 1 + n1], K[:, 1 : 1 + n1], Q[:, 2 + n1 :], K[:, 2 + n1 :]
    full = (torch.einsum("bic,bjc->bij", qa, kb), torch.einsum("bic,bjc->bij", qb, ka))
    heads = tuple(
        torch.stack(
            [
                torch.einsum("bic,bjc->bij", x[..., 32 * h : 32 * h + 32], z[..., 32 * h : 32 * h + 32])
                for h in range(4)
            ],
            1,
        )
        for x, z in ((qa, kb), (qb, ka))
    )
    return full, heads


def test_attention_maps_match_manual_softmax():
    """The last layer's attention probabilities the model reports (return_attention, read by the epipolar
    attention share and figure) equal softmax(Q_h K_h^T / sqrt(32)) computed from the weights on y_{L-1}."""
    from tests.rrt_reference import attention, layer_tensors

    model, batch, _ = batch_and_output(B=2)
    q, c = batch["locals"]
    y = last_layer_input(model, q, c)
    _, want = attention(y, layer_tensors(model.state_dict(), "encoder.1."), nhead=4)
    with torch.no_grad():
        got = model(q, c, return_attention=True).attentions[-1]
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)


def test_extra_loss_matches_direct_computation():
    model, batch, out = batch_and_output()
    sizes = {"a": (224, 448), "b": (224, 448)}
    g = TrainingGuidance(cameras=cams(), image_sizes=sizes, guidance="epi", weight=0.5)
    got = g.extra_loss(batch, out)
    # by hand: network frame = 224 x 224, so x is scaled by 0.5 (pixel centres: x' = (x + .5) / 2 - .5)
    A = np.diag([0.5, 1.0, 1.0])
    A[0, 2] = 0.5 * 0.5 - 0.5
    C = cams()
    F_ab = fundamental_from_cameras(
        A @ C["a"]["K"], C["a"]["R"], C["a"]["t"], A @ C["b"]["K"], C["b"]["R"], C["b"]["t"]
    )
    F_ba = fundamental_from_cameras(
        A @ C["b"]["K"], C["b"]["R"], C["b"]["t"], A @ C["a"]["K"], C["a"]["R"], C["a"]["t"]
    )
    F = torch.stack([F_ab, F_ab, F_ba, F_ab])
    I12, I21 = epipolar_indicator(F, (224, 224), (224, 224), 7, mode=g.conf["mode"])
    valid = torch.tensor([True, False, True, False])  # pair 1 is a non-match, pair 3 has no geometry ("x")
    (A12, A21), (H12, H21) = full_width_logits(model, last_layer_input(model, *batch["locals"]), 49, 49)
    # default reading: head MEAN of the scaled logits = full width / (H sqrt(d_h)) = / (4 sqrt(32))
    k = 4 * 32**0.5
    want = 0.5 * epipolar_loss(A12 / k, A21 / k, I12.double(), I21.double(), valid)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
    g_sum = TrainingGuidance(cameras=cams(), image_sizes=sizes, guidance="epi", weight=0.5, logits="sum")
    want = 0.5 * epipolar_loss(A12, A21, I12.double(), I21.double(), valid)
    torch.testing.assert_close(g_sum.extra_loss(batch, out).double(), want, rtol=1e-4, atol=1e-6)
    got.backward()
    assert model.encoder[-1].self_attn.in_proj_weight.grad.abs().sum() > 0
    gm = TrainingGuidance(cameras=cams(), image_sizes=sizes, guidance="maxepi", weight=0.5, per_head=True)
    want = 0.5 * max_epipolar_loss(H12 / 32**0.5, H21 / 32**0.5, I12.double(), I21.double(), valid, per_head=True)
    out.last_input = out.last_input.detach()
    torch.testing.assert_close(gm.extra_loss(batch, out).double(), want, rtol=1e-4, atol=1e-6)


def test_input_pe_random_for_non_matches():
    _, batch, _ = batch_and_output()
    g = TrainingGuidance(cameras=cams(), guidance="epe", dim=128, seed=0)
    pe = g.input_pe(batch)
    assert pe.shape == (4, 98, 128) and torch.isfinite(pe).all()
    assert g.extra_loss(batch, type("O", (), {"logits": torch.zeros(4, requires_grad=True)})()).item() == 0
    # test time: pseudo-GT F for every pair; a missing estimate -> random rank-2 F
    F = random_fundamental(2, seed=3)
    assert g.test_input_pe(F, torch.tensor([True, False])).shape == (2, 98, 128)


def test_bad_input():
    with pytest.raises(ConfigError):
        TrainingGuidance(cameras=cams(), guidance="bogus")
    with pytest.raises(ConfigError):
        TrainingGuidance(guidance="epi")
    with pytest.raises(ConfigError):
        guidance_hooks("epi", type("D", (), {"info": {}, "name": "d"})())
    assert guidance_hooks("none", None) == {"guidance": {"guidance": "none"}}


def _project(K, R, t, X):
    p = (X @ np.asarray(R).T + t) @ np.asarray(K).T
    return p[:, :2] / p[:, 2:]


def test_pseudo_gt_in_network_frame():
    """Pseudo-GT F estimated on the ORIGINAL 224 x 448 images must satisfy x2'^T F x1' = 0 for the points as
    the network sees them (224 x 224, x' = (x + 0.5) / 2 - 0.5), in either stored pair order."""
    C = cams()
    F_orig = fundamental_from_cameras(C["a"]["K"], C["a"]["R"], C["a"]["t"], C["b"]["K"], C["b"]["R"], C["b"]["t"])
    sizes = {"a": (224, 448), "b": (224, 448)}
    X = np.random.default_rng(0).normal(size=(40, 3)) * [1.0, 0.5, 0.5] + [0, 0, 5]
    net = lambda x: np.c_[(x[:, 0] + 0.5) * 0.5 - 0.5, x[:, 1], np.ones(len(x))]  # noqa: E731  by hand
    x1, x2 = net(_project(**C["a"], X=X)), net(_project(**C["b"], X=X))
    for pgt in (
        {("a", "b"): {"F": F_orig.numpy(), "reliable": True}},
        {("b", "a"): {"F": F_orig.numpy().T, "reliable": True}},
    ):
        g = TrainingGuidance(pseudo_gt=pgt, image_sizes=sizes, guidance="epi")
        F, known = g.fundamentals(["a"], ["b"])
        lines = x1 @ F[0].numpy().T
        dist = np.abs((x2 * lines).sum(1)) / np.linalg.norm(lines[:, :2], axis=1)
        assert bool(known[0]) and dist.max() < 1e-6
        # the indicator of the pseudo-GT F is the camera F's on the network grid
        Fc, _ = TrainingGuidance(cameras=C, image_sizes=sizes, guidance="epi").fundamentals(["a"], ["b"])
        for I, J in zip(g.indicators(F), g.indicators(Fc)):
            assert torch.equal(I, J)


def test_guidance_hooks_pseudo_gt_file(tmp_path):
    import h5py

    from relook.geometry.robust import pair_key
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    C = cams()
    F_orig = fundamental_from_cameras(C["a"]["K"], C["a"]["R"], C["a"]["t"], C["b"]["K"], C["b"]["R"], C["b"]["t"])
    with h5py.File(tmp_path / "pgt.h5", "w") as f:
        gr = f.create_group(pair_key("a", "b"))
        gr.create_dataset("F", data=F_orig.numpy())
        gr.attrs.update({"id1": "a", "id2": "b", "num_matches": 50, "num_inliers": 40, "reliable": True, "done": True})
    with FeatureStore(tmp_path / "s.h5", "w") as st:
        for i in "ab":
            st.write(
                ImageFeatures(
                    i, local_desc=np.zeros((49, 128)), keypoints=np.zeros((49, 2)), image_size=np.array([224, 448])
                )
            )
    ds = type("D", (), {"info": {}, "name": "nocams"})()
    hooks = guidance_hooks("epi", ds, tmp_path / "s.h5", pseudo_gt=tmp_path / "pgt.h5", weight=1.0)
    g = hooks["extra_loss"].__self__
    Fc, _ = TrainingGuidance(cameras=C, image_sizes={"a": (224, 448), "b": (224, 448)}).fundamentals(["a"], ["b"])
    F, known = g.fundamentals(["a"], ["b"])
    assert bool(known[0]) and torch.allclose(F, Fc, atol=1e-9)


def test_guidance_indicator_default_literal_rule():
    """The guidance's indicator: cells of the 7x7 grid whose rectangle the epipolar line crosses (corner signs)."""
    g = TrainingGuidance(cameras=cams(), image_sizes={"a": (224, 448), "b": (224, 448)}, guidance="epi")
    F, _ = g.fundamentals(["a"], ["b"])
    I12, _ = g.indicators(F)
    Fn = F[0].numpy()
    for i in range(49):
        r, c = divmod(i, 7)
        a, b, cc = Fn @ np.array([(c + 0.5) * 32 - 0.5, (r + 0.5) * 32 - 0.5, 1.0])
        for j in range(49):
            rj, cj = divmod(j, 7)
            v = [a * (cj + dx) * 32 - a * 0.5 + b * ((rj + dy) * 32 - 0.5) + cc for dx in (0, 1) for dy in (0, 1)]
            assert I12[0, i, j] == float(min(v) <= 0 <= max(v))


def test_crop_flip_adjusted_fundamental():
    """Random resized crop + flip of both images (one draw per image): the guidance's F, given the transforms'
    pixel maps, passes through where a 3D point's blob actually lands in each transformed image."""
    from relook.datasets.transforms import TrainTransform

    C = cams()
    tf = TrainTransform(size=112, scale=(0.3, 0.6), flip=0.5, brightness=0, contrast=0, gamma=0)
    yy, xx = np.mgrid[0:224, 0:448]
    X = np.array([[0.3, 0.1, 5.0], [-0.4, -0.2, 6.0], [0.1, 0.3, 4.5], [0.0, 0.0, 5.5]])
    g = TrainingGuidance(cameras=C, image_sizes={"a": (224, 448), "b": (224, 448)}, guidance="epi")
    n_vis, flips = 0, 0
    for seed in range(6):
        pts, maps = {}, {}
        for name, off in (("a", 0), ("b", 100)):
            uv = _project(**C[name], X=X)
            cents = []
            for p in uv:  # one blob per image, same crop (same seed) for all the image's blobs
                img = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 4.0**2))
                out, _, A = tf(
                    np.repeat((img * 255).astype(np.uint8)[..., None], 3, 2), None, np.random.default_rng(seed + off)
                )
                o = out[..., 0].astype(np.float64)
                w = np.clip(o - 0.3 * o.max(), 0, None)
                gy, gx = np.mgrid[0:112, 0:112]
                cents.append([(w * gx).sum() / max(w.sum(), 1e-9), (w * gy).sum() / max(w.sum(), 1e-9), o.max()])
            pts[name], maps[name] = np.array(cents), A
        F, known = g.fundamentals(["a"], ["b"], maps["a"][None], maps["b"][None])
        vis = (pts["a"][:, 2] > 100) & (pts["b"][:, 2] > 100)  # blob inside both crops
        x1 = np.c_[pts["a"][vis, :2], np.ones(vis.sum())]
        x2 = np.c_[pts["b"][vis, :2], np.ones(vis.sum())]
        lines = x1 @ F[0].numpy().T
        assert bool(known[0]) and (np.abs((x2 * lines).sum(1)) / np.linalg.norm(lines[:, :2], axis=1) < 0.3).all()
        n_vis += int(vis.sum())
        flips += int(maps["a"][0, 0] < 0) + int(maps["b"][0, 0] < 0)
    assert n_vis >= 8 and 0 < flips < 12


def test_checkpoint_records_guidance(tmp_path):
    """An EPE run's checkpoint records its guidance and EPE settings; load_rrt hands them to the reranker;
    resuming with another guidance, or EPE without its encoding hook, is refused."""
    from relook.models.rrt.checkpoint import load_rrt, read_checkpoint
    from relook.train.rrt import PairData, StoreSource, train_rrt
    from relook.types import ImageFeatures

    r = np.random.default_rng(0)
    ids = [f"{k}_{v}" for k in range(3) for v in range(3)]
    C = cams()
    cameras = {i: C["a" if i.endswith("_0") else "b"] for i in ids}
    feats = [
        ImageFeatures(
            i, local_desc=r.standard_normal((9, 128)), keypoints=r.random((9, 2)) * 64, image_size=np.array([224, 448])
        )
        for i in ids
    ]
    labels = np.repeat(np.arange(3), 3)
    data = PairData(ids, labels, np.array([[j for j in range(9) if j != i] for i in range(9)]))
    g = TrainingGuidance(cameras=cameras, image_sizes={i: (224, 448) for i in ids}, guidance="epe", grid=3, bands=6)
    torch.manual_seed(0)
    model = RRT(num_layers=1, dim_feedforward=64)
    path = train_rrt(
        model,
        data,
        StoreSource(feats),
        tmp_path,
        {"epochs": 1, "triplets_per_batch": 4},
        input_pe=g.input_pe,
        guidance=g.record(),
        progress=False,
    )
    rec = json.loads(read_checkpoint(path)["guidance_json"])
    assert (rec["guidance"], rec["grid"], rec["bands"], rec["dim"], rec["net_size"]) == ("epe", 3, 6, 128, [224, 224])
    assert load_rrt(path).guidance == rec
    with pytest.raises(ConfigError, match="guidance"):
        train_rrt(
            RRT(num_layers=1, dim_feedforward=64),
            data,
            StoreSource(feats),
            tmp_path,
            {"epochs": 2, "triplets_per_batch": 4},
            resume=True,
            progress=False,
        )
    with pytest.raises(ConfigError, match="input_pe"):
        train_rrt(
            RRT(num_layers=1, dim_feedforward=64),
            data,
            StoreSource(feats),
            tmp_path / "x",
            {"epochs": 1},
            guidance=g.record(),
            progress=False,
        )
    plain = train_rrt(
        RRT(num_layers=1, dim_feedforward=64),
        data,
        StoreSource(feats),
        tmp_path / "none",
        {"epochs": 1, "triplets_per_batch": 4},
        progress=False,
    )
    assert load_rrt(plain).guidance == {"guidance": "none"}


def test_guidance_hooks_follow_store_eval_resize(tmp_path):
    """A store extracted with cnn_local eval_resize=256 (resize 256 x 256, centre 224 crop) gives guidance in
    that frame: F maps the original pixels through the same resize + crop (by hand: x' = (x + .5) 256 / W
    - .5 - 16), not the plain resize."""
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    C = cams()
    meta = {"extractor": "cnn_local", "extractor.image_size": "224", "extractor.eval_resize": "256"}
    with FeatureStore(tmp_path / "s.h5", "w", meta=meta) as st:
        for i in "ab":
            st.write(
                ImageFeatures(
                    i, local_desc=np.zeros((49, 128)), keypoints=np.zeros((49, 2)), image_size=np.array([224, 448])
                )
            )
    ds = type("D", (), {"info": {"cameras": C}, "name": "cams"})()
    hooks = guidance_hooks("epi", ds, tmp_path / "s.h5")
    assert hooks["guidance"]["eval_resize"] == 256 and hooks["guidance"]["net_size"] == [224, 224]
    g = hooks["extra_loss"].__self__
    A = np.array([[256 / 448, 0, 0.5 * 256 / 448 - 0.5 - 16], [0, 256 / 224, 0.5 * 256 / 224 - 0.5 - 16], [0, 0, 1]])
    want = fundamental_from_cameras(
        A @ C["a"]["K"], C["a"]["R"], C["a"]["t"], A @ C["b"]["K"], C["b"]["R"], C["b"]["t"]
    ).numpy()
    F, _ = g.fundamentals(["a"], ["b"])
    want = want / np.linalg.norm(want) * np.sign(want.ravel() @ F[0].numpy().ravel())
    np.testing.assert_allclose(F[0].numpy(), want, atol=1e-9)
    # without the provenance keys: the plain resize to 224 x 224 (the old behaviour for every store)
    with FeatureStore(tmp_path / "s.h5", "a") as st:
        st.meta = {"extractor": "cnn_local"}
    F2, _ = guidance_hooks("epi", ds, tmp_path / "s.h5")["extra_loss"].__self__.fundamentals(["a"], ["b"])
    assert not torch.allclose(F2, F, atol=1e-3)


def test_input_pe_never_encodes_true_f_of_non_matches():
    """EPE in training (Sec. 5.2): a matching pair encodes its F (network frame, by hand as in
    ``test_extra_loss_matches_direct_computation``); a NON-matching pair gets a random rank-2 F even though
    both images have cameras (so a "true" F between them exists and would leak the label); a pair without
    geometry gets a random one too. The F handed to the encoder is recorded."""
    _, batch, _ = batch_and_output()
    g = TrainingGuidance(cameras=cams(), image_sizes={"a": (224, 448), "b": (224, 448)}, guidance="epe", seed=0)
    seen = []
    encode = g.epe.forward
    g.epe.forward = lambda F, *a, **k: seen.append(F.clone()) or encode(F, *a, **k)
    pe = g.input_pe(batch)
    assert pe.shape == (4, 98, 128) and len(seen) == 1
    (F,) = seen
    A = np.diag([0.5, 1.0, 1.0])
    A[0, 2] = 0.5 * 0.5 - 0.5
    C = cams()
    F_ab = fundamental_from_cameras(
        A @ C["a"]["K"], C["a"]["R"], C["a"]["t"], A @ C["b"]["K"], C["b"]["R"], C["b"]["t"]
    )
    F_ba = fundamental_from_cameras(
        A @ C["b"]["K"], C["b"]["R"], C["b"]["t"], A @ C["a"]["K"], C["a"]["R"], C["a"]["t"]
    )

    def same(X, Y):  # equal up to scale and sign
        X, Y = X / X.norm(), Y / Y.norm()
        return bool(torch.allclose(X, Y, atol=1e-9) or torch.allclose(X, -Y, atol=1e-9))

    assert same(F[0], F_ab) and same(F[2], F_ba)  # matches (labels 1, 1)
    assert not same(F[1], F_ab) and not same(F[1], F_ba)  # non-match (label 0) with cameras: random
    for b in (1, 3):  # pair 3: label 1 but "x" has no geometry
        sv = torch.linalg.svdvals(F[b])
        assert sv[2] < 1e-12 * sv[0] and sv[1] > 1e-6 * sv[0]


def test_training_loop_never_hands_epe_the_true_f_of_non_matches(tmp_path):
    """EPE through ``train_rrt`` (not only the hook): every image has a camera, so a true F exists between
    the images of a NON-matching pair too and would leak the label. The loop must give the hook each pair's
    match label (same object), and the encoder must then see a random rank-2 F for every non-matching pair
    and the true F (network frame) for every matching one. Reference: labels from ``data.labels`` and F
    from the cameras, computed here."""
    from relook.geometry.pixel_maps import resize_matrix
    from relook.train.rrt import PairData, StoreSource, train_rrt
    from relook.types import ImageFeatures

    r = np.random.default_rng(0)
    ids = [f"{k}_{v}" for k in range(3) for v in range(3)]
    C = cams()
    cameras = {
        i: C["a" if i.endswith("_0") else "b"] if i[0] != "2" else C["b" if i.endswith("_0") else "a"] for i in ids
    }
    feats = [
        ImageFeatures(
            i, local_desc=r.standard_normal((9, 128)), keypoints=r.random((9, 2)) * 64, image_size=np.array([224, 448])
        )
        for i in ids
    ]
    labels = np.repeat(np.arange(3), 3)
    data = PairData(ids, labels, np.array([[j for j in range(9) if j != i] for i in range(9)]))
    g = TrainingGuidance(cameras=cameras, image_sizes={i: (224, 448) for i in ids}, guidance="epe", grid=3, bands=6)
    seen = []
    hook = g.input_pe
    encode = g.epe.forward

    def record(batch):
        seen.append({"q": list(batch["query_ids"]), "c": list(batch["candidate_ids"]), "y": batch["labels"].clone()})
        return hook(batch)

    g.epe.forward = lambda F, *a, **k: seen[-1].update(F=F.clone()) or encode(F, *a, **k)
    torch.manual_seed(0)
    train_rrt(
        RRT(num_layers=1, dim_feedforward=64),
        data,
        StoreSource(feats),
        tmp_path,
        {"epochs": 2, "triplets_per_batch": 4},
        input_pe=record,
        guidance=g.record(),
        progress=False,
    )
    A = resize_matrix((448, 224), (224, 224))

    def true_f(a, b):
        ca, cb = cameras[a], cameras[b]
        return fundamental_from_cameras(A @ ca["K"], ca["R"], ca["t"], A @ cb["K"], cb["R"], cb["t"])

    def same(X, Y):  # equal up to scale and sign
        X, Y = X / X.norm(), Y / Y.norm()
        return bool(torch.allclose(X, Y, atol=1e-8) or torch.allclose(X, -Y, atol=1e-8))

    n_neg = n_pos = 0
    for s in seen:
        for k, (a, b) in enumerate(zip(s["q"], s["c"])):
            match = a[0] == b[0]
            assert float(s["y"][k]) == float(match)
            Ft = true_f(a, b)
            if torch.linalg.matrix_rank(Ft) < 2:  # same camera: no epipolar geometry to compare with
                continue
            if match:
                n_pos += 1
                assert same(s["F"][k], Ft)
            else:
                n_neg += 1
                assert not same(s["F"][k], Ft) and not same(s["F"][k], Ft.T)
    assert n_neg > 0 and n_pos > 0
