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
    co3d = generate_synthetic(
        tmp_path_factory.mktemp("co3d"), num_instances=6, num_views=20, image_size=48, seed=1, num_points=10
    )
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
    (iid, _fpath, _), (_, mpath, _) = full.queries[0], masked.queries[0]
    cat, seq, name = iid.split("/")
    mask = cv2.imread(str(co3d / cat / seq / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
    img = cv2.imread(str(mpath)).astype(int)
    assert img[~mask].max() < 40 and img[mask].mean() > 20


#: an uneven, jittered orbit of 30 frames (degrees, increasing): five frames sit at 10.5 + 72 k (+- 1.3 deg
#: jitter) at indices 4, 9, 17, 19, 26; the camera speeds up and slows down around them, and every other frame
#: is at least 20 degrees (circularly) from 10.5 + 72 k. An every-n/5 selector picks 0, 7, 14, 22, 29 here.
UNEVEN = np.array(
    [
        -30,
        -24,
        -18,
        -12,
        10.5,
        33,
        40,
        52,
        59,
        81.4,
        105,
        109,
        114,
        118,
        123,
        127,
        131,
        154.6,
        190,
        225.2,
        249,
        254,
        259,
        264,
        269,
        275,
        298.7,
        321,
        330,
        340,
    ],
    dtype=np.float64,
)
PLANTED = [4, 9, 17, 19, 26]


def _look_at_orbit(azimuths_deg, elevation_deg=20.0, radius=3.0, seed=0):
    """World-to-camera (R, t) of OpenCV cameras (x right, y down, z forward) around an object at the origin,
    world z up, at the given azimuths, with a little radius and elevation noise."""
    rng = np.random.default_rng(seed)
    Rs, ts = [], []
    for az in np.radians(azimuths_deg):
        el = np.radians(elevation_deg + rng.normal(0, 1.0))
        C = (radius + rng.normal(0, 0.05)) * np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        f = -C / np.linalg.norm(C)
        right = np.cross(f, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(f, right), f])
        Rs.append(R)
        ts.append(-R @ C)
    return np.array(Rs), np.array(ts)


def test_select_frames_reference():
    """Sec. 4 (5 frames ~72 degrees apart) on uneven, jittered orbits where the right frames are known by
    construction and differ from every n/5-th frame; from the angles and from the camera poses, both ways round."""
    idx = select_frames(UNEVEN)
    assert idx.tolist() == PLANTED
    assert np.round(np.linspace(0, len(UNEVEN) - 1, 5)).astype(int).tolist() != PLANTED  # every-n/5 is wrong here
    assert select_frames(-UNEVEN).tolist() == PLANTED  # the other direction of travel
    shifted = UNEVEN + 200.0  # unwrapped angles past 360 and a start anywhere on the circle
    assert select_frames(shifted).tolist() == PLANTED
    for sign in (1.0, -1.0):  # camera poses -> rotation about the object -> the same five frames
        R, t = _look_at_orbit(sign * UNEVEN + 37.0)
        ang = rotation_about_object(R, t)
        np.testing.assert_allclose(np.abs(ang), UNEVEN - UNEVEN[0], atol=1.5)  # noise moves the fitted centre
        assert select_frames(ang).tolist() == PLANTED
    # hand-made evenly spaced angles: each pick within half a sampling step of start + 72 k
    angles = np.arange(0, 360, 10.0)
    idx = select_frames(angles)
    assert len(idx) == 5 and np.all(np.abs((angles[idx] - angles[idx[0]]) - 72 * np.arange(5)) <= 5)
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
    assert (
        main(
            [
                "datasets",
                "synthetic",
                str(tmp_path / "s"),
                "--num-instances",
                "2",
                "--num-views",
                "5",
                "--image-size",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["datasets", "build-co3d-retrieve", str(tmp_path / "s"), str(tmp_path / "r"), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["datasets", "build-co3d-retrieve", str(tmp_path / "nothing"), str(tmp_path / "r2")]) == 2


def test_rotation_invariant_to_world_frame():
    # the angle about the object must not depend on the world frame: move the world rigidly
    from scipy.spatial.transform import Rotation

    from relook.datasets.synthetic import synthetic_cameras

    cams = synthetic_cameras(0, 3, 20, (64, 64))
    R = np.stack([c[1] for c in cams])
    t = np.stack([c[2] for c in cams])
    Q, s = Rotation.random(random_state=4).as_matrix(), np.array([3.0, -1.0, 2.0])  # X' = Q X + s
    R2 = R @ Q.T
    t2 = t - np.einsum("nij,j->ni", R2, s)
    a, b = rotation_about_object(R, t), rotation_about_object(R2, t2)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # and it follows the azimuth of the camera centres (world z up, object at the origin)
    az = np.unwrap(np.radians([_azimuth(r, tt) for r, tt in zip(R, t)]))
    np.testing.assert_allclose(np.abs(a), np.abs(np.degrees(az - az[0])), atol=3.0)


def test_cli_info(built, capsys):
    assert main(["datasets", "info", "co3d_retrieve", str(built[1]), "-o", "split=train", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "15 queries" in out and "decoded 15 images" in out
    assert main(["datasets", "info", "co3d_retrieve", str(built[1]), "-o", "split"]) == 2


def test_split_seeded():
    from relook.datasets.co3d_retrieve import split_instances

    inst = {"apple": [f"apple/{i}" for i in range(21)], "bench": [f"bench/{i}" for i in range(10)]}
    a, b, c = split_instances(inst, 0), split_instances(inst, 0), split_instances(inst, 1)
    assert a == b and a != c and set(a) == set(inst["apple"] + inst["bench"])
    assert sum(a[k] == "train" for k in inst["apple"]) == 10 and sum(a[k] == "train" for k in inst["bench"]) == 5
