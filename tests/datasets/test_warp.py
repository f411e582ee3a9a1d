"""Warped-photo benchmark on real photos (Kodak24, BSDS500 read in place): exact H, seeds, splits, reader."""

import csv
import json

import cv2
import numpy as np
import pytest
from tests.shared_data import shared

from relook.cli import main
from relook.datasets import load_dataset
from relook.datasets.warp import generate_warp, read_homography
from relook.datasets.warp_geometry import ViewGeometry
from relook.errors import ConfigError, DataError
from relook.geometry.pixel_maps import resize_matrix

SIZE, VIEWS = 200, 3


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six real photos, linked (not copied) from ../shared/data, one of them a folder deeper."""
    root = tmp_path_factory.mktemp("photos")
    (root / "bsds").mkdir()
    for name in ("kodim01.jpg", "kodim03.jpg", "kodim05.jpg", "kodim13.jpg"):
        (root / name).symlink_to(shared("photos", "Kodak24", name))
    for path in sorted(shared("photos", "BSDS500").glob("*.jpg"))[:2]:
        (root / "bsds" / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="module")
def plain(photos, tmp_path_factory):
    """Geometry only (no occluders, no photometric change), lossless files: views = warps of view 0."""
    return generate_warp(
        photos,
        tmp_path_factory.mktemp("plain"),
        views=VIEWS,
        seed=1,
        size=SIZE,
        occluders=False,
        photometric=False,
        image_format="png",
    )


@pytest.fixture(scope="module")
def full(photos, tmp_path_factory):
    return generate_warp(photos, tmp_path_factory.mktemp("full"), views=VIEWS, seed=1, size=SIZE)


def _rows(out):
    with open(out / "groups.csv", newline="") as f:
        return list(csv.DictReader(f))


def _files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_smoke(full):
    rows = _rows(full)
    assert len(rows) == 6 * VIEWS and set(rows[0]) == {"image", "group", "split"}
    groups = {r["group"] for r in rows}
    assert {"kodim01", "kodim13"} <= groups and any(g.startswith("bsds__") for g in groups)
    for r in rows:
        img = cv2.imread(str(full / r["image"]))
        assert img is not None and max(img.shape[:2]) == SIZE
    meta = json.loads((full / rows[0]["image"]).with_name("meta.json").read_text())
    assert len(meta["views"]) == VIEWS - 1 and all(v["photometric"] and v["occluders"] for v in meta["views"])


def test_matches_reference_exact_h(plain):
    """Warping view 0 by the written H_0_k reproduces view k where view k sees the photo."""
    errors = []
    for row in _rows(plain):
        path = plain / row["image"]
        if path.stem == "0":
            continue
        view0 = cv2.imread(str(path.with_name("0.png"))).astype(np.float32)
        view = cv2.imread(str(path)).astype(np.float32)
        H = read_homography(path.with_name(f"H_0_{path.stem}.txt"))
        h, w = view.shape[:2]
        again = cv2.warpPerspective(view0, H, (w, h), flags=cv2.INTER_LINEAR)
        inside = cv2.warpPerspective(np.ones(view0.shape[:2], np.uint8), H, (w, h), flags=cv2.INTER_NEAREST)
        valid = cv2.erode(inside, np.ones((7, 7), np.uint8)) > 0  # preimage inside view 0, 3 px from its border
        assert valid.mean() > 0.5
        errors.append(float(np.abs(again - view)[valid].mean()))
    assert len(errors) == 6 * (VIEWS - 1)
    assert max(errors) < 2.0, errors


def test_matches_reference_analytic():
    """Pure zoom x2 about the centre + shift, frame resized x1.5, then cropped: H by hand."""
    geo = ViewGeometry(
        tilt_deg=0.0,
        tilt_axis_deg=30.0,
        rotation_deg=0.0,
        scale=2.0,
        shift=(5.0, -3.0),
        frame_wh=(100, 60),
        render_wh=(150, 90),
        crop=(10, 4, 120, 80),
    )
    # x -> 2 (x - 49.5) + 49.5 + 5 = 2x - 44.5;  resize: 1.5 (x + 0.5) - 0.5;  crop: - 10  ->  3x - 76.5
    # y -> 2 (y - 29.5) + 29.5 - 3 = 2y - 32.5;  resize: 1.5 (y + 0.5) - 0.5;  crop: - 4   ->  3y - 52.5
    np.testing.assert_allclose(geo.homography(), [[3, 0, -76.5], [0, 3, -52.5], [0, 0, 1]], atol=1e-12)
    assert geo.out_wh == (120, 80)


def test_resize_matrix_matches_opencv():
    """resize_matrix is the map cv2.resize applies (pixel centres at integers), checked on a real photo."""
    img = cv2.imread(str(shared("photos", "Kodak24", "kodim05.jpg")))[:90, :120]
    for dst in [(180, 135), (157, 101)]:
        ref = cv2.resize(img, dst, interpolation=cv2.INTER_LINEAR).astype(np.float32)
        ours = cv2.warpPerspective(img, resize_matrix((120, 90), dst), dst, flags=cv2.INTER_LINEAR)
        err = np.abs(ours.astype(np.float32) - ref)[4:-4, 4:-4].mean()
        assert err < 1.0
        shifted = cv2.warpPerspective(img, np.diag([dst[0] / 120, dst[1] / 90, 1.0]), dst, flags=cv2.INTER_LINEAR)
        assert np.abs(shifted.astype(np.float32) - ref)[4:-4, 4:-4].mean() > 2 * err  # the half pixel matters


def _by_group(files):
    """Files keyed by ``<group>/<name>`` (the split prefix dropped: another seed may split differently)."""
    return {k.split("/", 1)[1]: v for k, v in files.items() if "/" in k}


def test_seeded(photos, tmp_path, full):
    assert _files(generate_warp(photos, tmp_path / "a", views=VIEWS, seed=1, size=SIZE)) == _files(full)
    a, b = (
        _by_group(_files(full)),
        _by_group(_files(generate_warp(photos, tmp_path / "b", views=VIEWS, seed=2, size=SIZE))),
    )
    assert a.keys() == b.keys()
    warped = [k for k in a if k.endswith(("/1.jpg", "/2.jpg", "H_0_1.txt"))]
    assert len(warped) == 18 and all(a[k] != b[k] for k in warped)
    assert all(a[k] == b[k] for k in a if k.endswith("/0.jpg"))  # view 0 is the photo itself


def test_split_by_photo(full):
    rows = _rows(full)
    split_of: dict[str, set] = {}
    for r in rows:
        split_of.setdefault(r["group"], set()).add(r["split"])
        assert r["image"].startswith(f"{r['split']}/{r['group']}/")
    assert all(len(s) == 1 for s in split_of.values())  # no photo in both splits
    tests = [g for g, s in split_of.items() if s == {"test"}]
    assert len(tests) == round(0.3 * 6) and len(split_of) - len(tests) == 4


def test_folder_dataset(full):
    ds = load_dataset("folder", full, csv="groups.csv", split="test")
    pos, _ = ds.ground_truth()
    assert len(ds.queries) == 2 * VIEWS and all(len(p) == VIEWS - 1 for p in pos)
    same = load_dataset("warp", full)
    assert same.query_ids == ds.query_ids
    # H_a_b between two warped views of one photo = H_0_b inv(H_0_a), from the files
    a, b = ds.query_ids[1], ds.query_ids[2]
    assert (a.rsplit("/", 1)[1], b.rsplit("/", 1)[1]) == ("1.jpg", "2.jpg")
    H01, H02 = (read_homography(full / a.replace("1.jpg", f"H_0_{k}.txt")) for k in (1, 2))
    p = np.array([50.0, 60.0, 1.0])
    expected = H02 @ np.linalg.solve(H01, p)
    got = same.info["homography"](a, b) @ p
    np.testing.assert_allclose(got[:2] / got[2], expected[:2] / expected[2], rtol=1e-9)


def test_resume(photos, tmp_path):
    out = generate_warp(photos, tmp_path / "r", views=VIEWS, seed=4, size=96)
    before = _files(out)
    done = sorted(out.glob("*/kodim03/meta.json"))[0]
    stamp = done.stat().st_mtime_ns
    victim = sorted(out.glob("*/kodim05"))[0]
    for p in victim.iterdir():
        p.unlink()
    generate_warp(photos, out, views=VIEWS, seed=4, size=96)
    assert done.stat().st_mtime_ns == stamp  # finished groups are skipped
    assert _files(out) == before  # the removed group is made again, byte for byte
    with pytest.raises(DataError, match="other settings"):
        generate_warp(photos, out, views=VIEWS, seed=5, size=96)


def test_cli(photos, tmp_path, capsys):
    assert (
        main(
            [
                "datasets",
                "warp",
                str(photos),
                str(tmp_path / "w"),
                "--views",
                "3",
                "--size",
                "64",
                "--seed",
                "2",
                "--no-occluders",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train: 4 photos, 12 images" in out and "test: 2 photos, 6 images" in out
    assert json.loads((tmp_path / "w" / "warp.json").read_text())["occluders"] is False
    assert (
        main(
            [
                "datasets",
                "synthetic",
                str(tmp_path / "s"),
                "--num-instances",
                "1",
                "--num-views",
                "2",
                "--image-size",
                "48",
                "--textures",
                str(photos),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "s" / "synthetic.json").read_text())["texture_photos"]


def test_unreadable_photo(photos, tmp_path, caplog):
    """A photo that does not decode is skipped with one warning naming it; the others are made."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.jpg").symlink_to(photos / "kodim03.jpg")
    (mixed / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with caplog.at_level("WARNING"):
        out = generate_warp(mixed, tmp_path / "out", views=VIEWS, size=64, test_fraction=0.0)
    assert {r["group"] for r in _rows(out)} == {"good"}
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)
    (mixed / "good.jpg").unlink()
    with pytest.raises(DataError, match="could be decoded"):
        generate_warp(mixed, tmp_path / "out2", views=VIEWS, size=64)


def test_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a photo")
    with pytest.raises(DataError, match="no photos found"):
        generate_warp(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match="no such folder"):
        generate_warp(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="views"):
        generate_warp(tmp_path / "empty", tmp_path / "out", views=1)
    with pytest.raises(DataError, match="groups.csv"):
        load_dataset("warp", tmp_path / "empty")
    for argv in (
        ["datasets", "warp", str(tmp_path / "empty"), str(tmp_path / "out")],
        ["datasets", "warp", str(tmp_path / "missing"), str(tmp_path / "out"), "--views", "3"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "photo" in err
