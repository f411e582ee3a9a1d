"""CO3D camera conversion: PyTorch3D/NDC viewpoint <-> OpenCV K, R, t (checked against OpenCV and by hand)."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from relook.datasets.co3d import (
    camera_to_viewpoint,
    read_category,
    read_jgz,
    read_ply_points,
    viewpoint_to_camera,
    write_jgz,
    write_ply_points,
)
from relook.errors import DataError


def _p3d_project(X, vp, hw):
    """PyTorch3D's own recipe, written out: X_cam = X @ R + T, NDC, then screen pixels (edge at 0)."""
    Xc = X @ np.asarray(vp["R"]) + np.asarray(vp["T"])
    ndc = np.asarray(vp["focal_length"]) * Xc[:, :2] / Xc[:, 2:] + np.asarray(vp["principal_point"])
    h, w = hw
    s = np.array([w / 2, h / 2]) if vp["intrinsics_format"] == "ndc_norm_image_bounds" else np.full(2, min(h, w) / 2)
    return np.array([w / 2, h / 2]) - ndc * s


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_matches_reference(fmt, rng):
    hw = (180, 320)
    vp = {
        "R": Rotation.random(random_state=1).as_matrix().tolist(),
        "T": [0.1, -0.2, 5.0],
        "focal_length": [1.7, 1.9],
        "principal_point": [0.05, -0.1],
        "intrinsics_format": fmt,
    }
    K, R, t = viewpoint_to_camera(vp, hw)
    X = rng.normal(size=(20, 3))
    uv_cv, _ = cv2.projectPoints(X, cv2.Rodrigues(R)[0], t, K, None)
    np.testing.assert_allclose(uv_cv[:, 0] + 0.5, _p3d_project(X, vp, hw), atol=1e-6)  # centre-at-0 vs edge-at-0


def test_hand_computed():
    # identity pose in PyTorch3D (camera x left, y up): a point to the world's +x lands left of the centre
    vp = {
        "R": np.eye(3).tolist(),
        "T": [0, 0, 2.0],
        "focal_length": [2.0, 2.0],
        "principal_point": [0.0, 0.0],
        "intrinsics_format": "ndc_isotropic",
    }
    K, R, t = viewpoint_to_camera(vp, (100, 100))
    np.testing.assert_allclose(K, [[100, 0, 49.5], [0, 100, 49.5], [0, 0, 1]])
    p = K @ (R @ np.array([1.0, 1.0, 0.0]) + t)
    np.testing.assert_allclose(p[:2] / p[2], [49.5 - 50, 49.5 - 50])  # up-left of the centre, 50 px


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_round_trip(fmt):
    R = Rotation.random(random_state=3).as_matrix()
    K = np.array([[300.0, 0, 150.3], [0, 310.0, 101.7], [0, 0, 1]])
    vp = camera_to_viewpoint(K, R, np.array([0.3, 0.1, 4.0]), (200, 300), fmt)
    K2, R2, t2 = viewpoint_to_camera(vp, (200, 300))
    np.testing.assert_allclose(K2, K, atol=1e-10)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t2, [0.3, 0.1, 4.0], atol=1e-12)


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="intrinsics_format"):
        viewpoint_to_camera(
            {
                "R": np.eye(3).tolist(),
                "T": [0, 0, 1],
                "focal_length": [1, 1],
                "principal_point": [0, 0],
                "intrinsics_format": "pixels",
            },
            (10, 10),
        )
    with pytest.raises(DataError, match="frame_annotations.jgz"):
        read_category(tmp_path, "apple")
    (tmp_path / "apple").mkdir()
    (tmp_path / "apple" / "frame_annotations.jgz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="frame_annotations.jgz"):
        read_jgz(tmp_path / "apple" / "frame_annotations.jgz")
    write_jgz(
        tmp_path / "apple" / "frame_annotations.jgz",
        [
            {
                "sequence_name": "s",
                "frame_number": 0,
                "image": {"path": "x.jpg", "size": [4, 4]},
                "viewpoint": {"R": [1, 2]},
            }
        ],
    )
    write_jgz(tmp_path / "apple" / "sequence_annotations.jgz", [{"sequence_name": "s", "category": "apple"}])
    with pytest.raises(DataError, match="frame_annotations.jgz"):
        read_category(tmp_path, "apple")
    write_ply_points(tmp_path / "p.ply", np.ones((5, 3)))
    (tmp_path / "q.ply").write_bytes((tmp_path / "p.ply").read_bytes()[:-7])
    with pytest.raises(DataError, match="q.ply"):
        read_ply_points(tmp_path / "q.ply")


def test_ply_round_trip(tmp_path, rng):
    X = rng.normal(size=(7, 3)).astype(np.float32)
    write_ply_points(tmp_path / "p.ply", X, colors=np.zeros((7, 3), np.uint8))
    np.testing.assert_array_equal(read_ply_points(tmp_path / "p.ply"), X)


def test_default_format_and_missing_viewpoint(tmp_path):
    # the official dataclass defaults intrinsics_format to ndc_norm_image_bounds; frames without a viewpoint
    # are skipped; mask / depth may be absent
    vp = {"R": np.eye(3).tolist(), "T": [0, 0, 3.0], "focal_length": [2.0, 4.0], "principal_point": [0.0, 0.0]}
    frames = [
        {
            "sequence_name": "s1",
            "frame_number": 1,
            "frame_timestamp": 0.1,
            "image": {"path": "apple/s1/images/frame000002.jpg", "size": [100, 200]},
            "viewpoint": vp,
        },
        {
            "sequence_name": "s1",
            "frame_number": 0,
            "frame_timestamp": 0.0,
            "image": {"path": "apple/s1/images/frame000001.jpg", "size": [100, 200]},
            "viewpoint": None,
        },
    ]
    write_jgz(tmp_path / "apple" / "frame_annotations.jgz", frames)
    write_jgz(tmp_path / "apple" / "sequence_annotations.jgz", [{"sequence_name": "s1", "category": "apple"}])
    by_seq, seqs = read_category(tmp_path, "apple")
    (fr,) = by_seq["s1"]
    assert fr.frame_number == 1 and fr.mask_path is None and seqs["s1"]["category"] == "apple"
    np.testing.assert_allclose(fr.K, [[200, 0, 99.5], [0, 200, 49.5], [0, 0, 1]])  # f = (2 * W/2, 4 * H/2)
    assert fr.image_path == tmp_path / "apple/s1/images/frame000002.jpg"
