"""CO3D-Retrieve built from the synthetic CO3D tree: ~72 degree frames, disjoint instance halves, masks."""
import cv2
import numpy as np
import pytest

from relook.cli import main
from relook.datasets import load_dataset
from relook.datasets.co3d_retrieve import build_co3d_retrieve, read_manifest, rotation_about_object, select_frames
from relook.datasets.synthetic import generate_synthetic
from relook.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    co3d = generate_synthetic(tmp_path_factory.mktemp("co3d"), num_instances=6, num_views=20, image_size=48, seed=1,
                              num_points=10)
    out = tmp_path_factory.mktemp("retrieve")
    build_co3d_retrieve(co3d, out, seed=0, progress=False)
    return co3d, out


def _azimuth(R, t):
    """Synthetic world: z up, object at the origin -> azimuth of the camera centre, computed directly."""
    C = -np.asarray(R).T @ np.asarray(t)
    return np.degrees(np.arctan2(C[1], C[0]))


def test_frames_72_degrees_apart(built):
    _, out = built
    frames = read_manifest(out)["frames"]
    by_inst = {}
    for r in frames:
        by_inst.setdefault(r["instance"], []).append(r)
    assert len(by_inst) == 6
    for recs in by_inst.values():
        assert len(recs) == 5
        az = np.array([_azimuth(r["R"], r["t"]) for r in recs])
        gaps = np.abs((np.diff(np.r_[az, az[0]]) + 180) % 360 - 180)
        np.testing.assert_allclose(gaps, 72.0, atol=10.0)  # views are 18 +- 3 degrees apart


def test_zero_instance_overlap(built):
    _, out = built
    train = load_dataset("co3d_retrieve", root=out, split="train")
    test = load_dataset("co3d_retrieve", root=out, split="test")
    a, b = set(train.info["instance_of"].values()), set(test.info["instance_of"].values())
    assert a and b and not a & b and len(a | b) == 6
    assert len(train.queries) + len(test.queries) == 30


def test_protocol_and_cameras(built):
    co3d, out = built
    ds = load_dataset("co3d_retrieve", root=out, split="test")
    pos, ignore = ds.ground_truth()
    for q, (qid, path, _) in enumerate(ds.queries):
        assert len(pos[q]) == 4 and q not in pos[q] and list(ignore[q]) == [q]
        assert all(ds.info["instance_of"][ds.gallery_ids[g]] == ds.info["instance_of"][qid] for g in pos[q])
        assert path.exists()
        cam = ds.info["cameras"][qid]
        assert cam["K"].shape == (3, 3) and cam["R"].shape == (3, 3) and cam["t"].shape == (3,)
        np.testing.assert_allclose(cam["R"] @ cam["R"].T, np.eye(3), atol=1e-9)


def test_masked_variant(built):
    co3d, out = built
    full = load_dataset("co3d_retrieve", root=out, split="test", variant="full")
    masked = load_dataset("co3d_retrieve", root=out, split="test", variant="masked")
    (iid, fpath, _), (_, mpath, _) = full.queries[0], masked.queries[0]
    cat, seq, name = iid.split("/")
    mask = cv2.imread(str(co3d / cat / seq / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
    img = cv2.imread(str(mpath)).astype(int)
    assert img[~mask].max() < 40 and img[mask].mean() > 20


def test_select_frames_reference():
    # hand-made angles: a video turning 0..350 in 10 degree steps -> 0, 72 (70 or 80), ...
    angles = np.arange(0, 360, 10.0)
    idx = select_frames(angles)
    assert len(idx) == 5
    # each pick is within half a sampling step of start + 72 k
    assert np.all(np.abs((angles[idx] - angles[idx[0]]) - 72 * np.arange(5)) <= 5)
    assert list(select_frames(np.array([0.0, 30.0, 50.0]))) == [0, 1, 2]
    assert rotation_about_object(np.zeros((0, 3, 3)), np.zeros((0, 3))).shape == (0,)


def test_bad_input(tmp_path, built):
    with pytest.raises(DataError, match="manifest"):
        load_dataset("co3d_retrieve", root=tmp_path)
    with pytest.raises(ConfigError):
        load_dataset("co3d_retrieve", root=built[1], split="val")
    with pytest.raises(DataError, match="frame_annotations"):
        build_co3d_retrieve(tmp_path, tmp_path / "out", progress=False)


def test_cli(tmp_path, capsys):
    assert main(["datasets", "synthetic", str(tmp_path / "s"), "--num-instances", "2", "--num-views", "5",
                 "--image-size", "32", "--no-progress"]) == 0
    assert main(["datasets", "build-co3d-retrieve", str(tmp_path / "s"), str(tmp_path / "r"), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["datasets", "build-co3d-retrieve", str(tmp_path / "nothing"), str(tmp_path / "r2")]) == 2
