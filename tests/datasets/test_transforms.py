"""Transforms report their pixel map: projected points still land on the right pixels afterwards."""

import cv2
import numpy as np
import pytest

from relook.datasets.transforms import TrainTransform, crop, illumination, resize
from relook.errors import ConfigError
from relook.geometry.pixel_maps import adjust_fundamental, adjust_intrinsics


def _blob_image(uv, hw=(120, 160), sigma=2.5):
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]]
    return np.exp(-((xx - uv[0]) ** 2 + (yy - uv[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def _centroid(img):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    w = np.clip(img - 0.05 * img.max(), 0, None)
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def _project(K, X):
    p = X @ K.T
    return p[:2] / p[2]


@pytest.mark.parametrize(
    "box,size", [((30, 20, 130, 100), (50, 50)), ((0, 0, 160, 120), (240, 320)), ((61, 9, 132, 119), (64, 33))]
)
def test_matches_reference(box, size):
    # a 3D point in camera coordinates, its image with a blob at the projection; transform the image and K
    K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
    X = np.array([0.15, -0.05, 1.0])
    uv = _project(K, X)
    img, A1 = crop(_blob_image(uv), box)
    img, A2 = resize(img, size)
    K2 = adjust_intrinsics(K, A2 @ A1)
    # the blob (pixel content, independent of A) sits where the adjusted K projects the point
    np.testing.assert_allclose(_centroid(img), _project(K2, X), atol=0.1)


def test_fundamental_after_transform():
    rng = np.random.default_rng(0)
    K = np.array([[200.0, 0, 100], [0, 200.0, 80], [0, 0, 1]])
    R2, _ = cv2.Rodrigues(np.array([0.1, 0.4, -0.05]))
    t2 = np.array([-0.8, 0.1, 0.2])
    X = rng.normal(size=(30, 3)) * 0.4 + [0, 0, 4]
    tx = np.array([[0, -t2[2], t2[1]], [t2[2], 0, -t2[0]], [-t2[1], t2[0], 0]])
    F = np.linalg.inv(K).T @ tx @ R2 @ np.linalg.inv(K)
    _, A1 = crop(np.zeros((160, 200)), (20, 10, 180, 150))
    _, B = resize(np.zeros((140, 160)), (70, 90))
    A = B @ A1
    K1, K2 = adjust_intrinsics(K, A), adjust_intrinsics(K, np.eye(3))
    x1 = np.c_[(X @ K1.T)[:, :2] / X[:, 2:], np.ones(30)]
    c2 = X @ R2.T + t2
    x2 = np.c_[(c2 @ K2.T)[:, :2] / c2[:, 2:], np.ones(30)]
    Fa = adjust_fundamental(F, A, np.eye(3))
    lines = x1 @ Fa.T
    assert np.max(np.abs(np.sum(x2 * lines, 1)) / np.linalg.norm(lines[:, :2], axis=1)) < 1e-8
    lines0 = x1 @ F.T  # the unadjusted F is wrong on the transformed image
    assert np.median(np.abs(np.sum(x2 * lines0, 1)) / np.linalg.norm(lines0[:, :2], axis=1)) > 1.0


def test_train_transform_seeded():
    img = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    K = np.array([[100.0, 0, 60], [0, 100.0, 45], [0, 0, 1]])
    tf = TrainTransform(size=64, flip=0.5)
    a = tf(img, K, np.random.default_rng(3))
    b = tf(img, K, np.random.default_rng(3))
    assert a[0].shape == (64, 64, 3) and a[0].dtype == np.uint8
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert tf(img, None, np.random.default_rng(0))[1] is None


@pytest.mark.parametrize("official", [False, True])
def test_train_transform_matches_reference(official):
    """Random resized crop (+ flip): the blob of a 3D point lands where the returned K' projects it."""
    K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
    X = np.array([0.05, 0.02, 1.0])
    uv = _project(K, X)
    img = np.repeat((_blob_image(uv, sigma=3.0) * 255).astype(np.uint8)[..., None], 3, 2)
    tf = (
        TrainTransform.official_sop(96)
        if official
        else TrainTransform(size=96, scale=(0.4, 0.9), flip=0.5, brightness=0, contrast=0, gamma=0)
    )
    flips, checked = 0, 0
    for seed in range(12):
        out, K2, A = tf(img, K, np.random.default_rng(seed))
        p = _project(K2, X)
        if not (8 <= p[0] <= 87 and 8 <= p[1] <= 87) or out[..., 0].max() < 150:
            continue  # blob cut by the crop
        np.testing.assert_allclose(_centroid(out[..., 0].astype(np.float32)), p, atol=0.3)
        flips += A[0, 0] < 0
        checked += 1
    assert checked >= 4 and 0 < flips < checked


def test_hflip_and_eval_transform_match_reference():
    from relook.datasets.transforms import eval_transform, hflip
    from relook.geometry.pixel_maps import eval_transform_map

    img = _blob_image((30.0, 20.0))
    out, A = hflip(img)
    np.testing.assert_allclose(_centroid(out), [160 - 1 - 30.0, 20.0], atol=0.05)
    np.testing.assert_allclose((A @ [30.0, 20.0, 1])[:2], [129.0, 20.0])
    # resize 120 x 160 -> 64 x 64, centre crop 48: a blob at (100, 70) goes to 64/160, 64/120 then -8
    img = _blob_image((100.0, 70.0), sigma=6.0)
    out, A = eval_transform(img, 64, 48)
    want = [(100 + 0.5) * 64 / 160 - 0.5 - 8, (70 + 0.5) * 64 / 120 - 0.5 - 8]
    assert out.shape == (48, 48)
    np.testing.assert_allclose(_centroid(out), want, atol=0.1)
    np.testing.assert_allclose(eval_transform_map((120, 160), 64, 48), A)


def test_illumination_keeps_geometry():
    img = np.zeros((20, 20, 3), np.uint8)
    img[5, 7] = 200
    out = illumination(img, np.random.default_rng(0))
    assert out.shape == img.shape and np.unravel_index(out[..., 0].argmax(), (20, 20)) == (5, 7)


def test_bad_input():
    with pytest.raises(ConfigError):
        crop(np.zeros((10, 10)), (5, 5, 20, 8))
    with pytest.raises(ConfigError):
        TrainTransform(sise=3)
