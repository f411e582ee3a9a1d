"""RRT training: triplet sampling rule, neighbours, learning, resume, extra-loss hook, fine-tuning."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relook.errors import ConfigError, DataError
from relook.models.rrt import RRT
from relook.train.rrt import ImageSource, PairData, StoreSource, global_neighbours, sample_triplets, train_rrt
from relook.types import ImageFeatures


def _data(n_classes=6, per=4, n_loc=9, seed=0):
    """Each class has its own local prototypes; views are noisy copies; globals are noisier still."""
    r = np.random.default_rng(seed)
    protos = r.standard_normal((n_classes, n_loc, 128))
    feats, labels = [], []
    for k in range(n_classes):
        for v in range(per):
            loc = protos[k] + 0.5 * r.standard_normal((n_loc, 128))
            g = protos[k].mean(0) + 2.0 * r.standard_normal(128)
            feats.append(
                ImageFeatures(
                    f"{k}_{v}",
                    global_desc=g / np.linalg.norm(g),
                    local_desc=loc,
                    keypoints=r.random((n_loc, 2)) * 64,
                    image_size=np.array([64, 64]),
                )
            )
            labels.append(k)
    glob = np.stack([f.global_desc for f in feats])
    data = PairData([f.image_id for f in feats], np.array(labels), global_neighbours(glob, 10))
    return feats, data


def _model(seed=0):
    torch.manual_seed(seed)
    return RRT(num_layers=1, dim_feedforward=64)


def test_global_neighbours_matches_reference():
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    nn_ = global_neighbours(x, 3)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    np.testing.assert_array_equal(nn_, np.argsort(-s, axis=1)[:, :3])
    assert (global_neighbours(x[:2], 3)[:, 1:] == -1).all()


def test_sample_triplets_rule_and_seeded():
    _, data = _data()
    trip = sample_triplets(data, 2, np.random.default_rng(0))
    valid = 0
    for a in range(len(data.ids)):  # the official rule, written out
        nn_ = data.neighbours[a]
        n_pos = sum(data.labels[j] == data.labels[a] for j in nn_)
        valid += n_pos >= 2 and n_pos < len(nn_)
    assert len(trip) == valid and len(set(trip[:, 0])) == valid
    for a, p, n in trip:
        assert p in data.neighbours[a] and n in data.neighbours[a]
        assert data.labels[p] == data.labels[a] != data.labels[n]
    np.testing.assert_array_equal(trip, sample_triplets(data, 2, np.random.default_rng(0)))


def test_smoke_learns(tmp_path):
    feats, data = _data(n_classes=4)
    path = train_rrt(
        _model(), data, StoreSource(feats), tmp_path, {"epochs": 4, "triplets_per_batch": 8, "lr": 1e-3}, progress=False
    )
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and path.exists()
    assert log[-1]["bce"] < log[0]["bce"]


def test_resume_equals_straight_run(tmp_path):
    feats, data = _data()
    conf = {"epochs": 2, "triplets_per_batch": 6}
    m1 = _model()
    train_rrt(m1, data, StoreSource(feats), tmp_path / "a", conf, progress=False)
    m2 = _model()
    train_rrt(m2, data, StoreSource(feats), tmp_path / "b", {**conf, "epochs": 1}, progress=False)
    m3 = _model(seed=9)  # different init: everything must come from the checkpoint
    train_rrt(m3, data, StoreSource(feats), tmp_path / "b", conf, resume=True, progress=False)
    for (k, v), v3 in zip(m1.state_dict().items(), m3.state_dict().values()):
        torch.testing.assert_close(v, v3, msg=k)


def test_resume_log_and_dropout_exact(tmp_path):
    """A run killed after its epoch-1 checkpoint but before its log line, then resumed: the log has one line
    per epoch and the weights equal a straight run's, dropout included (the torch RNG is in the checkpoint)."""
    feats, data = _data()
    conf = {"epochs": 2, "triplets_per_batch": 6}

    def model(seed=0):
        torch.manual_seed(seed)
        return RRT(num_layers=1, dim_feedforward=64, dropout=0.3)

    m1 = model()
    train_rrt(m1, data, StoreSource(feats), tmp_path / "a", conf, progress=False)
    train_rrt(model(), data, StoreSource(feats), tmp_path / "b", {**conf, "epochs": 1}, progress=False)
    (tmp_path / "b" / "log.jsonl").write_text("")  # the kill landed between the checkpoint and the log
    torch.manual_seed(123)  # whatever the RNG did in between
    m2 = model(seed=9)
    train_rrt(m2, data, StoreSource(feats), tmp_path / "b", conf, resume=True, progress=False)
    for (k, v), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v, v2), k
    log_a, log_b = ((tmp_path / d / "log.jsonl").read_text().splitlines() for d in "ab")
    assert [json.loads(x)["epoch"] for x in log_b] == [1, 2] and log_a == log_b


def test_extra_loss_hook(tmp_path):
    """The hook sees the last layer's raw cross-attention A12 = Q K'^T over the full width (Eq. 1 of the epipolar
    paper: one W_Q, one W_K), checked against the encoder written out from the weights (tests/rrt_reference.py):
    the embedding by hand, layer 1 by hand, then (W_Q y + b_Q)(W_K y' + b_K)^T between query and candidate
    tokens of y, the input of the last layer."""
    from tests.rrt_reference import encoder_layer, layer_tensors, qkv

    feats, data = _data()
    torch.manual_seed(0)
    model = RRT(num_layers=2, dim_feedforward=64, position_encoding="none")
    seen = []

    def hook(batch, out):
        a12, a21 = out.raw_cross
        n = batch["query"]["local"].shape[0]
        assert a12.shape == (n, 9, 9) and a21.shape == (n, 9, 9) and out.last_input is not None
        assert batch["labels"].shape == (n,) and len(batch["query_ids"]) == n
        assert batch["pair_info"][0] == (batch["query_ids"][0], batch["candidate_ids"][0])
        state = model.state_dict()
        seg = state["segment_embed.weight"].double()  # rows: CLS 0, SEP 1, query local 2, candidate local 3
        q, c = (batch[side]["local"].detach().double() for side in ("query", "candidate"))
        x = torch.cat([seg[0].expand(n, 1, -1), q + seg[2], seg[1].expand(n, 1, -1), c + seg[3]], 1)
        y = encoder_layer(x, layer_tensors(state, "encoder.0."), nhead=4)
        Q, K, _ = qkv(y, layer_tensors(state, "encoder.1."))
        qi, ci = slice(1, 10), slice(11, 20)  # [CLS, 9 query locals, SEP, 9 candidate locals]
        torch.testing.assert_close(a12.double(), Q[:, qi] @ K[:, ci].transpose(1, 2), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a21.double(), Q[:, ci] @ K[:, qi].transpose(1, 2), atol=1e-4, rtol=1e-4)
        seen.append(n)
        return 0.0 * a12.sum() + 1.0

    train_rrt(
        model,
        data,
        StoreSource(feats),
        tmp_path,
        {"epochs": 1, "triplets_per_batch": 8},
        extra_loss=hook,
        pair_info=lambda q, c: (q, c),
        progress=False,
    )
    log = json.loads((tmp_path / "log.jsonl").read_text())
    assert seen and abs(log["loss"] - log["bce"] - 1.0) < 1e-5


def test_finetune_smoke(tmp_path):
    from relook.features.cnn_local import CNNLocalNet

    feats, data = _data(n_classes=2, per=3)
    r = np.random.default_rng(0)
    imgs = [r.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in feats]
    net = CNNLocalNet("resnet10t", False, 128)
    before = net.proj.weight.detach().clone()
    src = ImageSource(net, [lambda im=im: im for im in imgs], image_size=64)
    path = train_rrt(_model(), data, src, tmp_path, {"epochs": 1, "finetune": True}, progress=False)
    assert not torch.equal(before, net.proj.weight.detach())
    ck = torch.load(path, weights_only=False)
    assert "backbone_state" in ck and ck["epoch"] == 1


def test_bad_input(tmp_path):
    feats, data = _data()
    with pytest.raises(ConfigError):
        train_rrt(_model(), data, StoreSource(feats), tmp_path, {"finetune": True}, progress=False)
    with pytest.raises(DataError):
        train_rrt(_model(), data, StoreSource(feats), tmp_path, {"min_positives": 50}, progress=False)


def test_long_run_keeps_constant_lr(tmp_path):
    """--epochs 17 without milestones: the rate stays 1e-4 (the old default dropped it to 1e-5 at epoch 16)."""
    feats, data = _data(n_classes=3, per=3)
    path = train_rrt(
        _model(), data, StoreSource(feats), tmp_path, {"epochs": 17, "triplets_per_batch": 16}, progress=False
    )
    ck = torch.load(path, weights_only=False)
    assert ck["epoch"] == 17 and ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([1e-4] * 17)


def test_recipes_match_official_numbers():
    """The recipe files under configs/train/ hold the official scripts' numbers (module docstring)."""
    from relook.train.config import load_train_config

    recipes = Path(__file__).resolve().parents[2] / "configs" / "train"

    def recipe(name, *overrides):
        where = {"out": "o", "store": "s", "dataset.name": "sop", "dataset.root": "r"}
        return load_train_config("rrt", [recipes / f"rrt-{name}.yaml"], overrides, where)["train"]

    sop = recipe("official-sop")  # official RRT_SOP experiment_rerank.py + dataset config
    assert (
        sop["epochs"],
        sop["lr"],
        sop["weight_decay"],
        sop["milestones"],
        sop["triplets_per_batch"],
        sop["top_k"],
        sop["positives"],
        sop["augment"],
    ) == (100, 1e-4, 4e-4, [60, 80], 100, 100, "label", True)
    lm = recipe("official-landmark")
    assert (
        lm["epochs"],
        lm["weight_decay"],
        lm["milestones"],
        lm["triplets_per_batch"],
        lm["min_positives"],
        lm["positives"],
    ) == (15, 5e-4, [16, 18], 12, 5, "topk")
    ep = recipe("epipolar-sop")  # seed 002 Sec. 5: 40 epochs, constant 1e-4
    assert (ep["epochs"], ep["lr"], ep["milestones"], ep["weight_decay"]) == (40, 1e-4, [], 4e-4)
    assert recipe("official-sop", "train.weight_decay=1e-3")["weight_decay"] == 1e-3
    with pytest.raises(ConfigError):
        load_train_config("rrt", [recipes / "rrt-bogus.yaml"])


def test_sample_triplets_label_positives_matches_reference():
    """Official SOP sampler: positives from ALL same-label images (also outside the top-k), negatives from the top-k."""
    _, data = _data(n_classes=6, per=4)
    data.neighbours = data.neighbours[:, :3]  # short top-k: many positives lie outside it
    trip = sample_triplets(data, 1, np.random.default_rng(0), positives="label")
    want = [a for a in range(len(data.ids)) if any(data.labels[j] != data.labels[a] for j in data.neighbours[a])]
    assert sorted(trip[:, 0].tolist()) == want
    outside = 0
    for a, p, n in trip:
        assert p != a and data.labels[p] == data.labels[a]
        assert n in data.neighbours[a] and data.labels[n] != data.labels[a]
        outside += p not in data.neighbours[a]
    assert outside > 0
    # drawn uniformly from the label: over many epochs every same-label image shows up as a positive
    seen = {
        int(p) for s in range(40) for a, p, _ in sample_triplets(data, 1, np.random.default_rng(s), "label") if a == 0
    }
    assert seen == {j for j in range(len(data.ids)) if data.labels[j] == data.labels[0] and j != 0}


def test_augmented_sides_carry_pixel_map():
    """Fine-tuning with augmentation: a blob at pixel uv of the original lands at pixel_map @ uv of the crop."""
    from relook.datasets.transforms import TrainTransform
    from relook.features.cnn_local import CNNLocalNet

    uv = np.array([70.0, 40.0])
    yy, xx = np.mgrid[0:96, 0:128]
    blob = np.exp(-((xx - uv[0]) ** 2 + (yy - uv[1]) ** 2) / (2 * 3.0**2))
    img = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, 2)
    seen = []
    tf = TrainTransform(size=64, scale=(0.5, 0.9), flip=0.5, brightness=0, contrast=0, gamma=0)

    def record(im, K, rng):
        out = tf(im, K, rng)
        seen.append(out[0])
        return out

    src = ImageSource(CNNLocalNet("resnet10t", False, 128), [lambda: img] * 2, image_size=64, augment=record, seed=1)
    flips = 0
    for _ in range(6):
        side = src.sides(np.array([0, 1]), {"d_global": 0}, None, "cpu")
        for k in range(2):
            out = seen[-2 + k][..., 0].astype(np.float64)
            w = np.clip(out - 0.2 * out.max(), 0, None)
            centroid = np.array([(w * np.mgrid[0:64, 0:64][1]).sum(), (w * np.mgrid[0:64, 0:64][0]).sum()]) / w.sum()
            A = side["pixel_map"][k].numpy()
            np.testing.assert_allclose(centroid, (A @ [*uv, 1.0])[:2], atol=0.35)
            flips += A[0, 0] < 0
    assert 0 < flips < 12
    assert side["keypoints"].shape == (2, 4, 2) and (side["image_size"] == 64).all()


def test_triplet_pairs_labels_match_data():
    """Pair labels are 1 exactly for (anchor, same-label image): the official BCE labelling."""
    from relook.train.rrt import triplet_pairs

    _, data = _data()
    trip = sample_triplets(data, 1, np.random.default_rng(0))
    a, c, y = triplet_pairs(trip)
    assert len(a) == 2 * len(trip) and y.dtype == np.float32
    np.testing.assert_array_equal(y, (data.labels[a] == data.labels[c]).astype(np.float32))
    np.testing.assert_array_equal(a[: len(trip)], trip[:, 0])


def test_trained_logit_ranks_positives_first(tmp_path):
    """End to end: after training, positives score above the negatives of their anchor (fails if the
    labels fed to the BCE are inverted: the model then learns the reverse order just as well)."""
    from relook.train.rrt import triplet_pairs

    feats, data = _data(n_classes=4)
    model = _model()
    train_rrt(
        model, data, StoreSource(feats), tmp_path, {"epochs": 6, "triplets_per_batch": 8, "lr": 1e-3}, progress=False
    )
    trip = sample_triplets(data, 1, np.random.default_rng(5))
    a, c, _ = triplet_pairs(trip)
    from relook.models.rrt.inputs import model_kwargs, pack_side

    with torch.no_grad():
        logit = model.eval()(
            **model_kwargs(pack_side([feats[i] for i in a], model.conf), pack_side([feats[i] for i in c], model.conf))
        ).logits
    pos, neg = logit[: len(trip)], logit[len(trip) :]
    assert (pos > neg).float().mean() >= 0.7  # inverted labels: 0.25


def _global_model(seed=0):
    torch.manual_seed(seed)
    return RRT(num_layers=1, dim_feedforward=64, d_global=128)


def test_distill_standardised_target_and_learning(tmp_path):
    """loss=distill: the logged teacher mean/std are those of Eq. T2 over the top-K pairs (reference loop),
    and the MSE falls; without a global token it is refused."""
    from relook.train.teacher import teacher_score

    feats, data = _data(n_classes=4)
    conf = {"epochs": 5, "loss": "distill", "pairs_per_batch": 16, "lr": 1e-3, "distill_pairs": 5}
    train_rrt(_global_model(), data, StoreSource(feats), tmp_path, conf, progress=False)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    vals = []
    for a in range(len(feats)):
        for j in data.neighbours[a]:
            t = lambda v: torch.tensor(np.asarray(v, np.float32))[None]  # noqa: E731
            f, g = feats[a], feats[j]
            vals.append(float(teacher_score(t(f.global_desc), t(g.global_desc), t(f.local_desc), t(g.local_desc))[0]))
    assert log[0]["teacher_mean"] == pytest.approx(np.mean(vals), abs=1e-5)
    assert log[0]["teacher_std"] == pytest.approx(np.std(vals), abs=1e-5)
    assert log[-1]["mse"] < log[0]["mse"]
    with pytest.raises(ConfigError):
        train_rrt(_model(), data, StoreSource(feats), tmp_path / "x", conf, progress=False)


def test_within_anchor_mse_against_loop_and_invariance():
    """Eq. W1 against a loop over anchors; adding any constant per anchor to the logits leaves it unchanged
    (the plain MSE changes), and an anchor with a single pair in the batch is left out."""
    from relook.train.rrt import within_anchor_mse

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(13, generator=g), torch.randn(13, generator=g)
    a = torch.tensor([3, 3, 3, 7, 7, 1, 1, 1, 1, 9, 3, 7, 5])  # anchors 9 and 5: one pair each
    ref = []
    for x in (3, 7, 1):
        m = a == x
        ref.extend(((s[m] - s[m].mean()) - (t[m] - t[m].mean())).tolist())
    ref = float(np.mean(np.square(ref)))
    assert float(within_anchor_mse(s, t, a)) == pytest.approx(ref, rel=1e-6)
    shift = torch.tensor([10.0 * float(x) for x in a])
    assert float(within_anchor_mse(s + shift, t, a)) == pytest.approx(ref, rel=1e-5)
    assert float(F.mse_loss(s + shift, t)) > 10 * ref
    assert float(within_anchor_mse(s[:2], t[:2], torch.tensor([0, 1]))) == 0.0


def test_distill_within_scale_grouping_and_learning(tmp_path, monkeypatch):
    """distill_within: the logged target scale is the teacher's mean within-anchor std over the top-K pairs
    (reference loop), each epoch's pairs come grouped by anchor (so the loss sees whole shortlists), and the
    centred loss falls."""
    import relook.train.rrt as rrt_mod
    from relook.train.rrt import sample_distill_pairs

    seen, real = [], rrt_mod.within_anchor_mse
    monkeypatch.setattr(rrt_mod, "within_anchor_mse", lambda s, t, a: seen.append(a.tolist()) or real(s, t, a))
    from relook.train.teacher import teacher_score

    feats, data = _data(n_classes=4)
    p = sample_distill_pairs(data, 3, np.random.default_rng(0), grouped=True)
    assert all(len(set(p[i : i + 3, 0])) == 1 for i in range(0, len(p), 3))
    conf = {
        "epochs": 6,
        "loss": "distill",
        "distill_within": True,
        "pairs_per_batch": 16,
        "lr": 1e-3,
        "distill_pairs": 5,
    }  # fmt: skip  (16: not a multiple of 5, batches still hold whole groups)
    train_rrt(_global_model(), data, StoreSource(feats), tmp_path, conf, progress=False)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    stds = []
    for a in range(len(feats)):
        t = lambda v: torch.tensor(np.asarray(v, np.float32))  # noqa: E731
        nb = [feats[j] for j in data.neighbours[a]]
        f = feats[a]
        v = teacher_score(
            t([f.global_desc] * len(nb)), t([g.global_desc for g in nb]),
            t([f.local_desc] * len(nb)), t([g.local_desc for g in nb]),
        )  # fmt: skip
        stds.append(float(v.std(unbiased=False)))
    assert log[0]["teacher_std"] == pytest.approx(np.mean(stds), rel=1e-4)
    assert log[-1]["mse"] < log[0]["mse"]
    shared_anchor = [sum(b.count(x) > 1 for x in b) / len(b) for b in seen]
    assert min(shared_anchor) == 1.0  # shuffled pairs: ~0.5 on average; fixed-size batches cut groups: < 1
    assert all(len(b) <= 16 and len(b) % 5 == 0 for b in seen)  # whole groups of 5, at most 16 pairs


def test_within_batches_whole_groups_and_equal_steps_per_rank():
    """within_batches: every batch is a run of whole anchor groups of at most bs pairs (a larger group alone),
    the spans cover the rank's pairs in order, ranks get disjoint whole groups and the same number of steps."""
    from relook.train.rrt import within_batches

    sizes = [3, 3, 2, 7, 1, 3, 4, 2]
    items = np.array([(a, j) for a, n in enumerate(sizes) for j in range(n)], np.int64)
    mine, spans = within_batches(items, 6)
    np.testing.assert_array_equal(mine, items)
    assert spans == [(0, 6), (6, 8), (8, 15), (15, 19), (19, 25)]
    seen, steps = set(), []
    for r in range(3):
        mine, spans = within_batches(items, 6, r, 3)
        anchors = set(mine[:, 0].tolist())
        assert not anchors & seen and all((mine[:, 0] == a).sum() == sizes[a] for a in anchors)
        seen |= anchors
        for s, e in spans:
            b = mine[s:e, 0]
            assert e - s <= 6 or len(set(b.tolist())) == 1
            assert all((b == a).sum() == sizes[a] for a in set(b.tolist()))
        steps.append(len(spans))
    assert seen == set(range(len(sizes))) and len(set(steps)) == 1


def test_sample_distill_pairs_rule_and_seeded():
    from relook.train.rrt import sample_distill_pairs

    _, data = _data()
    p = sample_distill_pairs(data, 3, np.random.default_rng(0))
    assert len(p) == 3 * len(data.ids)
    for a, j in p:
        assert j in data.neighbours[a]
    assert all(len(set(p[p[:, 0] == a, 1])) == 3 for a in range(len(data.ids)))
    np.testing.assert_array_equal(p, sample_distill_pairs(data, 3, np.random.default_rng(0)))
    full = sample_distill_pairs(data, None, np.random.default_rng(0))
    assert sorted(map(tuple, full)) == sorted((a, int(j)) for a in range(len(data.ids)) for j in data.neighbours[a])


def test_view_source_seeded_per_epoch():
    from relook.train.rrt import ViewSource

    feats, _ = _data(n_classes=2, per=2)
    views = [
        [f, ImageFeatures(f.image_id, local_desc=f.local_desc + 1.0, keypoints=f.keypoints, image_size=f.image_size)]
        for f in feats
    ]
    src = ViewSource(views, seed=3)
    idx = np.arange(len(feats))
    conf = _model().conf
    src.set_epoch(1)
    a = [src.sides(idx, conf, None, "cpu")["local"] for _ in range(4)]
    src.set_epoch(1)
    b = [src.sides(idx, conf, None, "cpu")["local"] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    drawn = torch.stack(a)[..., 0, 0] - torch.tensor(np.stack([f.local_desc[0, 0] for f in feats]), dtype=torch.float32)
    assert set(np.round(drawn.numpy().ravel(), 4)) == {0.0, 1.0}  # both views are drawn


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_init_checkpoint_warm_start(tmp_path, fmt):
    """init_checkpoint loads the weights: with lr 0 the trained model equals the warm-start model, from a
    training checkpoint (.pt) or a shipped export (.safetensors, written here in float32)."""
    from relook.models.rrt.checkpoint import export_rrt_safetensors, load_rrt, save_rrt

    feats, data = _data(n_classes=3)
    src_model = _model(seed=7)
    warm = tmp_path / f"warm.{fmt}"
    if fmt == "pt":
        save_rrt(warm, src_model)
    else:
        export_rrt_safetensors(warm, src_model, dtype=torch.float32)
    path = train_rrt(
        _model(seed=1),
        data,
        StoreSource(feats),
        tmp_path / "run",
        {"epochs": 1, "lr": 0.0, "init_checkpoint": str(warm)},
        progress=False,
    )
    got = load_rrt(path).state_dict()
    for k, v in src_model.state_dict().items():
        torch.testing.assert_close(got[k], v)


def test_resize_map_without_augmentation():
    """Fine-tuning without augmentation: a blob at pixel uv of a non-square original lands at
    pixel_map @ uv of the network input (the plain square resize of ``to_tensor``)."""
    from relook.features.cnn_local import CNNLocalNet, to_tensor

    uv = np.array([100.0, 20.0])
    yy, xx = np.mgrid[0:60, 0:160]
    blob = np.exp(-((xx - uv[0]) ** 2 + (yy - uv[1]) ** 2) / (2 * 3.0**2))
    img = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, 2)
    src = ImageSource(CNNLocalNet("resnet10t", False, 128), [lambda: img], image_size=64)
    side = src.sides(np.array([0]), {"d_global": 0}, None, "cpu")
    out = to_tensor(img, 64)[0].double().numpy()
    w = np.clip(out - 0.2 * out.max(), 0, None)
    gy, gx = np.mgrid[0:64, 0:64]
    centroid = np.array([(w * gx).sum(), (w * gy).sum()]) / w.sum()
    # the centroid lands within ~0.02 px of the true map; 0.1 px separates the pixel-centre convention
    # (x' = r (x + 0.5) - 0.5) from a bare scaling x' = r x, which is 0.3 px off here in x (r = 0.4)
    np.testing.assert_allclose(centroid, (side["pixel_map"][0].numpy() @ [*uv, 1.0])[:2], atol=0.1)


def test_triplet_accuracy_rises_on_separable_data(tmp_path):
    """The logged triplet accuracy (logit > 0 agrees with the true pair label) rises well above chance on
    separable data; a training fed inverted labels drives it below chance (a mutant that must fail)."""
    feats, data = _data(n_classes=4)
    conf = {"epochs": 15, "triplets_per_batch": 4, "lr": 1e-3}
    train_rrt(_model(), data, StoreSource(feats), tmp_path, conf, progress=False)
    acc = [json.loads(x)["acc"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert acc[0] <= 0.6 and np.mean(acc[-3:]) >= 0.8  # measured 0.50 -> 0.97; inverted labels: below 0.5
