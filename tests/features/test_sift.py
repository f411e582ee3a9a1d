import cv2
import numpy as np
import pytest

from relook.errors import ConfigError, ShapeError
from relook.features import create_extractor
from relook.features.sift import root_sift
from relook.store import FeatureStore
from tests.synthetic_images import textured_image


def test_smoke_shapes():
    f = create_extractor("sift", num_features=200).extract_one("a", textured_image(256, 0))
    n = f.num_local
    assert 50 < n <= 200
    assert f.local_desc.shape == (n, 128) and f.keypoints.shape == (n, 2) and f.attention.shape == (n,)
    assert np.all(np.diff(f.attention) <= 0)  # strongest first
    np.testing.assert_allclose(np.linalg.norm(f.local_desc, axis=1), 1, atol=1e-5)
    assert (f.keypoints >= 0).all() and (f.keypoints < 256).all()
    np.testing.assert_array_equal(f.image_size, [256, 256])
    f.validate()


def test_matches_reference():
    """RootSIFT of OpenCV's own SIFT, computed here independently, equals the extractor's output."""
    img = textured_image(256, 3)
    f = create_extractor("sift", num_features=100).extract_one("a", img)
    sift = cv2.SIFT_create(nfeatures=100)
    kps, d = sift.detectAndCompute(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), None)
    order = np.argsort([-k.response for k in kps], kind="stable")
    ref = np.sqrt(d[order] / d[order].sum(1, keepdims=True))
    np.testing.assert_allclose(f.local_desc, ref, atol=1e-5)
    np.testing.assert_allclose(f.keypoints, np.array([kps[i].pt for i in order]), atol=1e-4)
    x = np.abs(np.random.default_rng(0).normal(size=(4, 128)))
    s = root_sift(x)  # Hellinger: <rootsift(a), rootsift(b)> = sum sqrt(a_i b_i) / sqrt(|a|_1 |b|_1)
    np.testing.assert_allclose(s[0] @ s[1], np.sqrt(x[0] * x[1]).sum() / np.sqrt(x[0].sum() * x[1].sum()), rtol=1e-5)


def test_multiscale():
    img = textured_image(256, 1)
    f = create_extractor("sift", scales=[0.5, 1.0, 2.0], num_features=600).extract_one("a", img)
    assert set(np.unique(f.scales)) <= {0.5, 1.0, 2.0} and len(np.unique(f.scales)) >= 2
    assert f.num_local <= 600 and (f.keypoints > -1).all() and (f.keypoints < 257).all()
    # scale-2 keypoints are OpenCV's keypoints on the 2x-resized image, divided by 2
    only2 = create_extractor("sift", scales=[2.0], num_features=100).extract_one("a", img)
    big = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (512, 512), interpolation=cv2.INTER_LINEAR)
    kps = cv2.SIFT_create(nfeatures=100).detect(big, None)
    ref = np.array([kps[i].pt for i in np.argsort([-k.response for k in kps], kind="stable")]) / 2
    np.testing.assert_allclose(only2.keypoints, ref, atol=1e-4)
    assert (only2.scales == 2.0).all()


def test_empty_and_store(tmp_path):
    f = create_extractor("sift").extract_one("flat", np.full((64, 64, 3), 128, np.uint8))
    assert f.num_local == 0 and f.local_desc.shape == (0, 128)
    with FeatureStore(tmp_path / "s.h5", "w") as st:
        st.write(f)
        assert st.read("flat").num_local == 0


def test_bad_input():
    with pytest.raises(ConfigError):
        create_extractor("sift", scales=[])
    with pytest.raises(ConfigError):
        create_extractor("sift", nfeatures=3)
    with pytest.raises(ShapeError):
        create_extractor("sift").extract_one("x", np.zeros((10, 10), np.uint8))
