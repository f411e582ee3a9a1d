import struct

import numpy as np
import pytest

from relook.errors import DataError
from relook.features.delg_reader import (
    delg_image_features,
    encode_datum,
    encode_delf_features,
    import_delg,
    parse_datum,
    parse_delf_features,
    read_rrt_list,
    write_delg_files,
)
from relook.store import FeatureStore


def _f(*v):
    return b"".join(struct.pack("<f", x) for x in v)


def test_matches_reference_hand_encoded():
    """Bytes assembled by hand from the proto definitions decode to the expected arrays."""
    # DatumProto{shape{dim:[2,1]} float_list{value:[1.5,-2]}}: field 1 (len 4: field 1 packed [2,1]),
    # field 2 (len 10: field 1 packed 8 bytes)
    datum = b"\x0a\x04\x0a\x02\x02\x01" + b"\x12\x0a\x0a\x08" + _f(1.5, -2.0)
    np.testing.assert_array_equal(parse_datum(datum), [[1.5], [-2.0]])
    assert encode_datum(np.array([[1.5], [-2.0]], np.float32)) == datum
    # DelfFeature{descriptor=Datum([3]) x=10 y=20 scale=2 orientation=0 strength=0.5}
    d3 = b"\x0a\x03\x0a\x01\x03" + b"\x12\x0e\x0a\x0c" + _f(1, 2, 3)
    feat = b"\x0a" + bytes([len(d3)]) + d3 + b"\x15" + _f(10) + b"\x1d" + _f(20) + b"\x25" + _f(2) + b"\x35" + _f(0.5)
    parsed = parse_delf_features(b"\x0a" + bytes([len(feat)]) + feat)
    np.testing.assert_array_equal(parsed["locations"], [[20, 10]])  # (y, x)
    np.testing.assert_array_equal(parsed["descriptors"], [[1, 2, 3]])
    np.testing.assert_array_equal(parsed["scales"], [2])
    np.testing.assert_array_equal(parsed["attention"], [0.5])
    np.testing.assert_array_equal(parsed["orientations"], [0])


def test_roundtrip_and_uint():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(parse_datum(encode_datum(a)), a)
    u = np.array([0, 1, 300, 2**31], np.uint32)
    np.testing.assert_array_equal(parse_datum(encode_datum(u)), u)
    loc = rng.uniform(0, 500, (7, 2)).astype(np.float32)
    out = parse_delf_features(encode_delf_features(loc, np.ones(7), rng.normal(size=(7, 128)), np.arange(7.0)))
    np.testing.assert_allclose(out["locations"], loc)
    assert out["descriptors"].shape == (7, 128)


def _write_release(tmp_path, n_images=3, n_local=30):
    rng = np.random.default_rng(1)
    lines, truth = [], {}
    for i in range(n_images):
        name = f"img_{i:03d}"
        g = rng.normal(size=2048).astype(np.float32)
        g /= np.linalg.norm(g)
        yx = rng.uniform(0, 400, (n_local, 2)).astype(np.float32)
        att = np.sort(rng.uniform(size=n_local))[::-1].astype(np.float32)
        desc = rng.normal(size=(n_local, 128)).astype(np.float32)
        sc = rng.choice([0.5, 0.70710677, 1.0, 2.0], n_local).astype(np.float32)
        write_delg_files(tmp_path / "delg_r50_gldv1", name, g, yx, sc, desc, att)
        lines.append(f"jpg/{name}.jpg,{i},640,480")
        truth[name] = (g, yx, sc, desc, att)
    (tmp_path / "test_query.txt").write_text("\n".join(lines) + "\n")
    return truth


def test_import_delg(tmp_path):
    truth = _write_release(tmp_path)
    assert read_rrt_list(tmp_path / "test_query.txt")[0] == ("jpg/img_000.jpg", 0, 640, 480)
    import_delg(tmp_path, "r50_gldv1", "test_query.txt", tmp_path / "q.h5", max_local=20, progress=False)
    with FeatureStore(tmp_path / "q.h5", "r") as st:
        assert st.ids() == sorted(truth)
        f = st.read("img_001")
        g, yx, sc, desc, att = truth["img_001"]
        np.testing.assert_allclose(f.global_desc, g, atol=1e-6)
        np.testing.assert_allclose(f.keypoints, yx[:20, ::-1])  # stored as (x, y)
        np.testing.assert_allclose(f.local_desc, desc[:20])
        np.testing.assert_allclose(f.attention, att[:20])
        np.testing.assert_allclose(f.scales, sc[:20])
        np.testing.assert_array_equal(f.image_size, [480, 640])


def test_empty(tmp_path):
    (tmp_path / "x.delg_local").write_bytes(b"")
    (tmp_path / "x.delg_global").write_bytes(encode_datum(np.ones(4, np.float32)))
    f = delg_image_features(tmp_path, "x")
    assert f.num_local == 0 and f.keypoints.shape == (0, 2)


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="not found"):
        delg_image_features(tmp_path, "missing")
    (tmp_path / "t.delg_global").write_bytes(encode_datum(np.ones(10, np.float32))[:-3])
    with pytest.raises(DataError, match="t.delg_global"):
        delg_image_features(tmp_path, "t")
    (tmp_path / "l.txt").write_text("a,b\n")
    with pytest.raises(DataError, match="l.txt:1"):
        read_rrt_list(tmp_path / "l.txt")
    with pytest.raises(DataError, match="delg_nope"):
        import_delg(tmp_path, "nope", "l.txt", tmp_path / "s.h5")
