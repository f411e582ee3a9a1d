"""`relook train global`: the learned 128-d head on a frozen backbone.

The real-photo tests train on warped views of 20 BSDS500 photos with the pretrained EfficientNet-Lite0 and
evaluate on 20 other photos; the rest use a tiny random-init backbone on random images (plumbing only).
"""

import json

import numpy as np
import pytest
import torch

from relook.cli import main
from relook.datasets import load_dataset
from relook.datasets.base import labelled_split
from relook.errors import ConfigError, DataError
from relook.eval import metrics as M
from relook.features import create_extractor
from relook.features.base import extract_to_store
from relook.models.global_head import GlobalHead, load_global_head
from relook.train.global_head import (
    backbone_extractor,
    balanced_batches,
    pooled_features,
    resolve_conf,
    train_global_head,
)
from tests.shared_data import shared

TINY = {"arch": "resnet10t", "pretrained": False, "image_size": 64}  # 2x2 x 512 grid


# ------------------------------------------------------------------------------------------ real photos
@pytest.fixture(scope="module")
def warp_set(tmp_path_factory):
    """40 real BSDS500 photos (linked in place), 3 warped views each at 160 px, split 20 / 20 by photo."""
    from relook.datasets.warp import generate_warp

    photos = tmp_path_factory.mktemp("photos")
    for path in sorted(shared("photos", "BSDS500").glob("*.jpg"))[:40]:
        (photos / path.name).symlink_to(path)
    return generate_warp(photos, tmp_path_factory.mktemp("warp"), views=3, seed=0, size=160, test_fraction=0.5)


@pytest.fixture(scope="module")
def trained(warp_set, tmp_path_factory):
    """The head trained by the CLI on the train photos (pretrained Lite0, frozen), 30 epochs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("head")
    assert (
        main(
            [
                "train",
                "global",
                "-s",
                "dataset.name=warp",
                "-s",
                f"dataset.root={warp_set}",
                "-s",
                "dataset.split=train",
                "-o",
                str(out),
                "-s",
                "train.epochs=30",
                "-s",
                "train.labels_per_batch=16",
                "--quiet",
            ]
        )
        == 0
    )
    yield out / "head.pt"
    torch.set_num_threads(threads)


def _scores(glob: np.ndarray, ds) -> dict[str, float]:
    sims = glob @ glob.T
    ranking = np.argsort(-sims, axis=1, kind="stable")
    positives, ignore = ds.ground_truth()
    return {
        "R@1": M.recall_at_k(ranking, positives, (1,), ignore)[1],
        "mAP": M.mean_average_precision(ranking, positives, ignore),
    }


@pytest.mark.slow  # ~7 CPU-s: trains a head on warped real photos
def test_learned_beats_seeded(warp_set, trained):
    """On held-out photos the learned 128-d global ranks better than the same head before training (the
    seeded random projection of cnn_local), and the extractor gives exactly the head's descriptors."""
    test = load_dataset("warp", warp_set, split="test")
    pooled = pooled_features(backbone_extractor({}, 3.0), test.gallery, progress=False)  # (60, 1280)
    learned, conf = load_global_head(trained)
    with torch.no_grad():
        ours = _scores(learned.global_from_pooled(pooled).numpy(), test)
        seeded = _scores(GlobalHead(1280, 128, 3.0, seed=0).global_from_pooled(pooled).numpy(), test)
    assert ours["mAP"] > seeded["mAP"] + 0.05 and ours["R@1"] >= seeded["R@1"], (ours, seeded)
    # the training record says what made it
    assert conf["arch"] == "tf_efficientnet_lite0" and conf["weights_sha256"].startswith("579344248a93")
    assert conf["train"]["epochs"] == 30 and conf["train"]["loss"] == "contrastive"
    assert conf["train"]["data"]["n_labels"] == 20 and conf["train"]["data"]["options"] == {"split": "train"}
    # cnn_local with projection: head.pt writes Eq. H1 locals and the Eq. H2 global of those pooled features
    ex = create_extractor("cnn_local", projection=str(trained))
    from relook.images import load_image

    some = test.gallery[:4]
    feats = list(ex.extract((i, load_image(p, b, False)) for i, p, b in some))
    with torch.no_grad():
        want = learned.global_from_pooled(pooled[:4]).numpy()
    np.testing.assert_allclose(np.stack([f.global_desc for f in feats]), want, atol=1e-5)
    assert feats[0].local_desc.shape == (49, 128) and feats[0].global_desc.shape == (128,)
    # vit_tokens with the same head: the same 128-d tokens and global for OT (the Lite0 7x7 grid)
    vt = create_extractor("vit_tokens", backbone="efficientnet_lite0", projection=str(trained))
    tok = list(vt.extract((i, load_image(p, b, False)) for i, p, b in some))
    for a, b in zip(feats, tok):
        np.testing.assert_allclose(b.patch_tokens.reshape(49, 128), a.local_desc, atol=2e-3, rtol=1e-3)
        np.testing.assert_allclose(b.global_desc, a.global_desc, atol=1e-4)
    prov = ex.provenance
    assert prov["head.sha256"] == vt.provenance["head.sha256"] and json.loads(prov["head.train"])["epochs"] == 30


# ------------------------------------------------------------------------------------------ tiny backbone
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """12 random 64 px images in 4 labels of 3."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    items = []
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / f"{k}.png")
        items.append((f"{k}.png", root / f"{k}.png", None))
    return labelled_split("tiny", root, items, np.arange(12) // 3)


def _train(ds, out, **conf):
    return train_global_head(ds, out, {"dim": 8, "labels_per_batch": 2, "per_label": 2, **conf}, TINY, progress=False)


def test_seeded(one_thread):
    """The head starts from cnn_local's seeded projection; class-balanced batches depend on the seed only."""
    from relook.features.cnn_local import CNNLocalNet

    net = CNNLocalNet("resnet10t", False, 16, projection_seed=3)
    head = GlobalHead(512, 16, seed=3)
    assert torch.equal(net.proj.weight, head.proj.weight) and torch.equal(net.proj.bias, head.proj.bias)
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])  # label 2 has one image: never in a batch
    a = balanced_batches(labels, 2, 2, np.random.default_rng(5))
    b = balanced_batches(labels, 2, 2, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    used = np.concatenate(a)
    assert 5 not in used and 10 not in used and len(a) == 2
    for batch in a:
        _, counts = np.unique(labels[batch], return_counts=True)
        assert (counts == 2).all()


def test_resume(tiny, tmp_path, one_thread):
    """Two epochs, then resumed to four: the same head as four epochs in one go; other settings are refused."""
    whole = load_global_head(_train(tiny, tmp_path / "whole", epochs=4))[0]
    _train(tiny, tmp_path / "part", epochs=2)
    assert len((tmp_path / "part" / "log.jsonl").read_text().splitlines()) == 2
    part = load_global_head(
        train_global_head(
            tiny,
            tmp_path / "part",
            {"dim": 8, "labels_per_batch": 2, "per_label": 2, "epochs": 4},
            TINY,
            resume=True,
            progress=False,
        )
    )[0]
    torch.testing.assert_close(part.state_dict(), whole.state_dict())
    assert len((tmp_path / "part" / "log.jsonl").read_text().splitlines()) == 4
    with pytest.raises(DataError, match=r"another train.lr \(0.001, now 0.1\)"):
        train_global_head(
            tiny,
            tmp_path / "part",
            {"dim": 8, "labels_per_batch": 2, "per_label": 2, "epochs": 5, "lr": 0.1},
            TINY,
            resume=True,
            progress=False,
        )


def test_store_refuses_mixing_heads(tiny, tmp_path, one_thread):
    """A store extracted with one head is not extended with another head, even under the same file name."""
    head = tmp_path / "head.pt"
    _train(tiny, tmp_path / "a", epochs=1)
    _train(tiny, tmp_path / "b", epochs=1, seed=1)
    head.write_bytes((tmp_path / "a" / "head.pt").read_bytes())
    conf = {**TINY, "local_dim": 8, "projection": str(head)}
    store = tmp_path / "s.h5"
    extract_to_store(create_extractor("cnn_local", **conf), tiny.gallery[:4], store, progress=False)
    extract_to_store(create_extractor("cnn_local", **conf), tiny.gallery, store, progress=False)  # same head: resumes
    from relook.pipeline import provenance
    from relook.store import FeatureStore
    from relook.weights import file_sha256

    with FeatureStore(store, "r") as st:  # results tables name the head beside the backbone's weights
        meta = {f"global.{k}": v for k, v in st.meta.items()}
    assert f"head=learned global head {head} (sha256 {file_sha256(head)[:12]}" in provenance({"m": meta})["m"]
    head.write_bytes((tmp_path / "b" / "head.pt").read_bytes())
    with pytest.raises(DataError, match="head"):
        extract_to_store(create_extractor("cnn_local", **conf), tiny.gallery, tmp_path / "s.h5", progress=False)
    seeded = {**TINY, "local_dim": 8}
    with pytest.raises(DataError, match="extractor.projection"):
        extract_to_store(create_extractor("cnn_local", **seeded), tiny.gallery, store, progress=False)


class Gadget:  # a pickled object of this class needs code to load
    def __reduce__(self):
        return (print, ("ran code",))


def test_weights_only(tmp_path, capsys):
    """A head file that pickles an object is refused in one line, by the loader, cnn_local and vit_tokens."""
    bad = tmp_path / "bad.pt"
    torch.save({"format": "relook-global-head", "config_json": "{}", "state_dict": {}, "x": Gadget()}, bad)
    with pytest.raises(DataError, match="refusing to load") as e:
        load_global_head(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="refusing to load"):
        create_extractor("cnn_local", **TINY, projection=str(bad))
    with pytest.raises(DataError, match="refusing to load"):
        create_extractor("vit_tokens", backbone="resnet10t", pretrained=False, projection=str(bad))
    assert "ran code" not in capsys.readouterr().out
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(DataError, match="expected a global head"):
        load_global_head(other)


def test_bad_input(tiny, tmp_path, one_thread):
    head = _train(tiny, tmp_path / "h", epochs=1)
    with pytest.raises(ConfigError, match="local_dim: 8"):  # the head is 8-d
        create_extractor("cnn_local", **TINY, projection=str(head))
    with pytest.raises(ConfigError, match="other weights"):  # same arch, another random init
        create_extractor("cnn_local", **{**TINY, "seed": 1}, local_dim=8, projection=str(head))
    with pytest.raises(ConfigError, match="trained on 'resnet10t'"):
        create_extractor("vit_tokens", backbone="resnet18", pretrained=False, projection=str(head))
    with pytest.raises(ConfigError, match="set dim: 8"):
        create_extractor("vit_tokens", backbone="resnet10t", pretrained=False, projection=str(head), dim=16)
    with pytest.raises(ConfigError, match="no such file"):
        create_extractor("cnn_local", **TINY, projection="seede")
    with pytest.raises(ConfigError, match="unknown loss"):
        resolve_conf({"loss": "triplet"})
    with pytest.raises(ConfigError, match="no parameter"):
        resolve_conf({"loss": "contrastive", "loss_params": {"alpha": 2}})
    one_each = labelled_split("one", tiny.root, tiny.gallery[:4], [0, 1, 2, 3])
    with pytest.raises(DataError, match="two or more images"):
        _train(one_each, tmp_path / "x", epochs=1)


def test_vit_tokens_share_the_head(tiny, tmp_path, one_thread):
    """vit_tokens on the same CNN with the same head writes cnn_local's tokens and global (Eq. H1, H2)."""
    from relook.images import load_image

    head = str(_train(tiny, tmp_path / "h", epochs=1))
    a = create_extractor("cnn_local", **TINY, local_dim=8, projection=head)
    b = create_extractor("vit_tokens", backbone="resnet10t", pretrained=False, image_size=64, grid=2, projection=head)
    img = load_image(tiny.gallery[0][1])
    fa, fb = a.extract_one("x", img), b.extract_one("x", img)
    np.testing.assert_allclose(fb.patch_tokens, fa.patch_tokens, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(fb.global_desc, fa.global_desc, atol=1e-5)
    assert fb.patch_tokens.shape == (2, 2, 8) and b.provenance["head.sha256"] == a.provenance["head.sha256"]


def test_cli(tmp_path, capsys, one_thread):
    """`relook train global` on a folder dataset: --quiet prints nothing, bad input is one line and exit 2."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for k in range(9):
        (tmp_path / "photos" / f"g{k // 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / "photos" / f"g{k // 3}" / f"{k}.png"
        )
    args = [
        "train",
        "global",
        "-s",
        "dataset.name=folder",
        "-s",
        f"dataset.root={tmp_path / 'photos'}",
        "-o",
        str(tmp_path / "h"),
        "-s",
        "backbone.arch=resnet10t",
        "-s",
        "backbone.pretrained=false",
        "-s",
        "backbone.image_size=64",
        "-s",
        "train.dim=8",
        "-s",
        "train.epochs=1",
    ]
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().out == "" and (tmp_path / "h" / "head.json").exists()
    assert main([*args, "-s", "train.epochs=2", "--resume", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'h' / 'head.pt'}"
    assert load_global_head(tmp_path / "h" / "head.pt")[1]["train"]["epochs"] == 2
    for extra, words in (
        (["-s", "train.loss=foo"], "unknown loss 'foo'"),
        (["-s", "backbone.projection=seeded"], "set by the head itself"),
        (["-s", "train.loss_params.beta=3"], "has no parameter(s) ['beta']"),
    ):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
