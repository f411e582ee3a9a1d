"""Inputs the reader fuzzer (tests/fuzz/fuzz_readers.py) found crashing a reader: each must now be one
``RelookError`` line naming the file."""

import json

import numpy as np
import pytest

from relook.errors import RelookError


def _one_line_naming(excinfo, path):
    msg = str(excinfo.value)
    assert str(path) in msg and "\n" not in msg, msg


def test_rrt_list_not_utf8_or_not_int(tmp_path):
    from relook.features.delg_reader import read_rrt_list

    path = tmp_path / "test_query.txt"
    path.write_bytes(b"\xa4\x01,1,2,3\n")  # was UnicodeDecodeError
    assert read_rrt_list(path)[0][1:] == (1, 2, 3)  # an odd byte in a file name is replaced, not fatal
    path.write_bytes(b"a.jpg,x,2,3\n")  # was ValueError
    with pytest.raises(RelookError) as e:
        read_rrt_list(path)
    _one_line_naming(e, path)


def test_config_not_utf8(tmp_path):
    from relook.experiment import load_config

    path = tmp_path / "exp.yaml"
    path.write_bytes(b"k\xcc")  # was UnicodeDecodeError
    with pytest.raises(RelookError) as e:
        load_config([path])
    _one_line_naming(e, path)


def test_gnd_pickle_errors_one_line(tmp_path):
    from relook.datasets import load_dataset

    path = tmp_path / "gnd_roxford5k.pkl"
    path.write_bytes(b"\x80\x04Q")  # persistent id: the unpickler's message has a line break
    with pytest.raises(RelookError) as e:
        load_dataset("roxford5k", tmp_path)
    _one_line_naming(e, path)
    path.write_bytes(b"\x80\x05\x96" + b"\xff" * 8)  # BYTEARRAY8 of 2^64-1 bytes: was OverflowError
    with pytest.raises(RelookError) as e:
        load_dataset("roxford5k", tmp_path)
    _one_line_naming(e, path)


def test_manifest_not_utf8(tmp_path):
    from relook.datasets import load_dataset

    (tmp_path / "manifest.json").write_bytes(b"\x8a{}")  # was UnicodeDecodeError
    with pytest.raises(RelookError) as e:
        load_dataset("co3d_retrieve", tmp_path)
    _one_line_naming(e, tmp_path / "manifest.json")


def _npz(tmp_path):
    from relook.types import Shortlist

    path = tmp_path / "s.npz"
    Shortlist(["q"], ["a", "b"], np.array([[1, 0]]), np.array([[0.9, 0.1]])).save(path)
    return path


def test_shortlist_empty_or_odd_zip(tmp_path):
    from relook.io import load_array
    from relook.types import Shortlist

    path = _npz(tmp_path)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    while central >= 0:  # every central-directory entry: the "compressed patched data" flag, which zipfile
        data[central + 8] |= 0x20  # cannot read (was NotImplementedError)
        central = data.find(b"PK\x01\x02", central + 4)
    odd = tmp_path / "odd.npz"
    odd.write_bytes(bytes(data))
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")  # was EOFError
    for bad in (odd, empty):
        with pytest.raises(RelookError) as e:
            Shortlist.load(bad)
        _one_line_naming(e, bad)
        with pytest.raises(RelookError) as e:
            load_array(bad, "array file", ("indices",))
        _one_line_naming(e, bad)


def test_store_damaged_inside(tmp_path):
    """A store whose HDF5 structure is damaged past the header (was RuntimeError from h5py)."""
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    path = tmp_path / "s.h5"
    with FeatureStore(path, "a", meta={"extractor": "x"}) as s:
        s.write(ImageFeatures("a", global_desc=np.ones(4, np.float32) / 2))
    data = bytearray(path.read_bytes())
    data[112] = 0xFF  # a byte of the root group's header: "unable to determine object type" (was KeyError)
    path.write_bytes(bytes(data))
    with pytest.raises(RelookError) as e, FeatureStore(path) as s:
        [s.read(i) for i in s.ids()]
    _one_line_naming(e, path)
    meta = tmp_path / "m.h5"
    with FeatureStore(meta, "a") as s:
        s._h5.attrs["meta"] = json.dumps([1, 2])  # metadata of the wrong kind
    with pytest.raises(RelookError) as e:
        _ = FeatureStore(meta).meta
    _one_line_naming(e, meta)
