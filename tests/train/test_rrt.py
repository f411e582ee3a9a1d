"""RRT training: triplet sampling rule, neighbours, learning, resume, extra-loss hook, fine-tuning."""
import json

import numpy as np
import pytest
import torch

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
            feats.append(ImageFeatures(f"{k}_{v}", global_desc=g / np.linalg.norm(g), local_desc=loc,
                                       keypoints=r.random((n_loc, 2)) * 64, image_size=np.array([64, 64])))
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
    path = train_rrt(_model(), data, StoreSource(feats), tmp_path, {"epochs": 4, "triplets_per_batch": 8,
                                                                    "lr": 1e-3}, progress=False)
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
    feats, data = _data()
    seen = []

    def hook(batch, out):
        a12, a21 = out.raw_cross
        n = batch["query"]["local"].shape[0]
        assert a12.shape == (n, 9, 9) and a21.shape == (n, 9, 9) and out.last_input is not None
        assert batch["labels"].shape == (n,) and len(batch["query_ids"]) == n
        assert batch["pair_info"][0] == (batch["query_ids"][0], batch["candidate_ids"][0])
        ref, _ = batch["model"].raw_cross_attention(out.last_input, 9, 9)
        torch.testing.assert_close(a12, ref)
        seen.append(n)
        return 0.0 * a12.sum() + 1.0

    train_rrt(_model(), data, StoreSource(feats), tmp_path, {"epochs": 1, "triplets_per_batch": 8},
              extra_loss=hook, pair_info=lambda q, c: (q, c), progress=False)
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
