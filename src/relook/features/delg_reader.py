"""Reader for precomputed DELG features in the layout the official RRT release uses.

Layout (RRT_GLD, uvavision/RerankingTransformer)::

    <data_dir>/test_query.txt, test_gallery.txt   one image per line: "<rel path>,<label>,<width>,<height>"
    <data_dir>/delg_<desc_name>/<image name>.delg_global   DatumProto: the global descriptor (D,)
    <data_dir>/delg_<desc_name>/<image name>.delg_local    DelfFeatures: the local features

with ``<image name>`` the file's base name without extension and ``desc_name`` e.g. ``r50_gldv1``. Both
files are serialised protocol buffers of DELF's ``datum.proto`` / ``feature.proto`` (proto2):

* ``DatumProto { DatumShape shape = 1 {repeated int64 dim = 1 [packed]};
  oneof { FloatList float_list = 2 {repeated float value = 1 [packed]};
  Uint32List uint32_list = 3 {repeated uint32 value = 1 [packed]} } }``
* ``DelfFeatures { repeated DelfFeature feature = 1 }``, ``DelfFeature { DatumProto descriptor = 1;
  float x = 2; float y = 3; float scale = 4; float orientation = 5; float strength = 6 }``

DELF stores locations as (y, x) arrays but x and y as separate fields; relook's ``keypoints`` are (x, y).
``strength`` is DELG's attention score and ``scale`` the image scale the feature came from (one of 0.5 ...
4). DELG writes features sorted by attention (strongest first), which is why RRT simply takes the first
500. The protobuf wire format is decoded here directly (varints, fixed32, length-delimited fields), so
no protobuf or TensorFlow install is needed; the encoders exist to write files in the same layout.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from relook.errors import DataError
from relook.types import ImageFeatures

GLOBAL_EXT = ".delg_global"
LOCAL_EXT = ".delg_local"


# -- protobuf wire format ------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DataError("truncated varint in protobuf message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) of a message: ints for varint, bytes otherwise."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + ln], pos + ln
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise DataError(f"unsupported protobuf wire type {wt} (field {num})")
        if pos > n:
            raise DataError("truncated protobuf message")
        yield num, wt, val


def _packed_varints(buf: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _enc_len(num: int, payload: bytes) -> bytes:
    return _enc_varint(num << 3 | 2) + _enc_varint(len(payload)) + payload


def _enc_float(num: int, v: float) -> bytes:
    return _enc_varint(num << 3 | 5) + struct.pack("<f", float(v))


def parse_datum(buf: bytes) -> np.ndarray:
    """Decode a serialised DatumProto into a float32 (or uint32) array of its shape."""
    dims: list[int] = []
    values: list = []
    kind = None
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 2:  # DatumShape
            for n2, w2, v2 in _fields(val):
                if n2 == 1:
                    dims.extend(_packed_varints(v2) if w2 == 2 else [v2])
        elif num == 2 and wt == 2:  # FloatList
            kind = np.float32
            for n2, w2, v2 in _fields(val):
                if n2 == 1:
                    values.append(np.frombuffer(v2, "<f4"))
        elif num == 3 and wt == 2:  # Uint32List
            kind = np.uint32
            for n2, w2, v2 in _fields(val):
                if n2 == 1:
                    values.append(np.array(_packed_varints(v2) if w2 == 2 else [v2], np.uint32))
    if kind is None:
        raise DataError("DatumProto has neither float_list nor uint32_list")
    arr = np.concatenate(values).astype(kind) if values else np.zeros((0,), kind)
    try:
        return arr.reshape(dims)
    except ValueError:
        raise DataError(f"DatumProto holds {arr.size} values but its shape is {dims}") from None


def encode_datum(arr: np.ndarray) -> bytes:
    """Serialise an array as DatumProto (floats as float_list, unsigned ints as uint32_list)."""
    arr = np.asarray(arr)
    shape = _enc_len(1, _enc_len(1, b"".join(_enc_varint(int(d)) for d in arr.shape)))
    if arr.dtype.kind == "u":
        body = _enc_len(3, _enc_len(1, b"".join(_enc_varint(int(v)) for v in arr.ravel())))
    else:
        body = _enc_len(2, _enc_len(1, arr.astype("<f4").tobytes()))
    return shape + body


def parse_delf_features(buf: bytes) -> dict[str, np.ndarray]:
    """Decode DelfFeatures: ``locations`` (N, 2) as (y, x), ``scales``, ``descriptors`` (N, d),
    ``attention`` (strength) and ``orientations`` (N,)."""
    desc, rows = [], []
    for num, wt, val in _fields(buf):
        if num != 1 or wt != 2:
            continue
        f = {2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0}
        d = None
        for n2, w2, v2 in _fields(val):
            if n2 == 1 and w2 == 2:
                d = parse_datum(v2).ravel()
            elif n2 in f and w2 == 5:
                f[n2] = struct.unpack("<f", v2)[0]
        if d is None:
            raise DataError("DelfFeature without a descriptor")
        desc.append(d)
        rows.append((f[3], f[2], f[4], f[6], f[5]))  # y, x, scale, strength, orientation
    if not rows:
        z = np.zeros((0,), np.float32)
        return {"locations": np.zeros((0, 2), np.float32), "scales": z, "descriptors": np.zeros((0, 0), np.float32),
                "attention": z, "orientations": z}
    dims = {len(d) for d in desc}
    if len(dims) != 1:
        raise DataError(f"DelfFeatures descriptors have differing lengths {sorted(dims)}")
    r = np.array(rows, np.float32)
    return {"locations": r[:, :2], "scales": r[:, 2], "descriptors": np.stack(desc).astype(np.float32),
            "attention": r[:, 3], "orientations": r[:, 4]}


def encode_delf_features(locations: np.ndarray, scales: np.ndarray, descriptors: np.ndarray,
                         attention: np.ndarray, orientations: np.ndarray | None = None) -> bytes:
    """Serialise DELF local features; ``locations`` (N, 2) are (y, x) as DELF's own writer takes them."""
    n = len(attention)
    orientations = np.zeros(n, np.float32) if orientations is None else orientations
    out = bytearray()
    for i in range(n):
        body = (_enc_len(1, encode_datum(np.asarray(descriptors[i], np.float32))) + _enc_float(2, locations[i, 1])
                + _enc_float(3, locations[i, 0]) + _enc_float(4, scales[i]) + _enc_float(5, orientations[i])
                + _enc_float(6, attention[i]))
        out += _enc_len(1, body)
    return bytes(out)


# -- files -----------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: DELG feature file not found; extract DELG features for this image first")
    return path.read_bytes()


def read_delg_global(path: str | Path) -> np.ndarray:
    """The global descriptor (D,) float32 of one ``.delg_global`` file."""
    path = Path(path)
    try:
        return parse_datum(_read_bytes(path)).astype(np.float32).ravel()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def read_delg_local(path: str | Path) -> dict[str, np.ndarray]:
    """The local features of one ``.delg_local`` file (see ``parse_delf_features``)."""
    path = Path(path)
    try:
        return parse_delf_features(_read_bytes(path))
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def read_rrt_list(path: str | Path) -> list[tuple[str, int, int, int]]:
    """Lines ``rel_path,label,width,height`` of an RRT image list (test_query.txt, train.txt ...)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image list not found")
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 4:
            raise DataError(f"{path}:{lineno}: expected 'path,label,width,height', got {line!r}")
        out.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    return out


def delg_image_features(feature_dir: str | Path, image_name: str, image_size: tuple[int, int] | None = None,
                        max_local: int | None = None, image_id: str | None = None) -> ImageFeatures:
    """ImageFeatures of one image from ``<feature_dir>/<image_name>.delg_{global,local}``.

    ``max_local`` keeps the first (= strongest, DELG's file order) local features, as RRT does;
    ``image_size`` = (H, W). The global descriptor is L2-normalised (DELG's already is).
    """
    feature_dir = Path(feature_dir)
    g = read_delg_global(feature_dir / f"{image_name}{GLOBAL_EXT}")
    loc = read_delg_local(feature_dir / f"{image_name}{LOCAL_EXT}")
    n = len(loc["attention"]) if max_local is None else min(int(max_local), len(loc["attention"]))
    desc = loc["descriptors"][:n] if loc["descriptors"].size else np.zeros((0, 128), np.float32)
    return ImageFeatures(image_id or image_name, global_desc=g / max(float(np.linalg.norm(g)), 1e-12),
                         local_desc=desc, keypoints=loc["locations"][:n, ::-1], scales=loc["scales"][:n],
                         attention=loc["attention"][:n],
                         image_size=None if image_size is None else np.asarray(image_size, np.int64))


def import_delg(data_dir: str | Path, desc_name: str, list_file: str | Path, store_path: str | Path,
                max_local: int | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """The import stage: copy DELG features of every image of an RRT list into a FeatureStore.

    Image ids are the base names without extension (RRT's naming); already stored images are skipped.
    """
    from relook.store import FeatureStore

    data_dir = Path(data_dir)
    feature_dir = data_dir / f"delg_{desc_name}"
    if not feature_dir.is_dir():
        raise DataError(f"{feature_dir}: no such directory; expected <data_dir>/delg_<desc_name>/")
    items = read_rrt_list(list_file if Path(list_file).is_absolute() or Path(list_file).exists()
                          else data_dir / list_file)
    meta = {"extractor": "delg_reader", "delg.desc_name": desc_name, "delg.dir": str(feature_dir),
            "delg.max_local": str(max_local)}
    with FeatureStore(store_path, "w" if overwrite else "a", meta=meta) as store:
        for rel, _label, width, height in tqdm(items, desc="import:delg", disable=not progress):
            name = Path(rel).stem
            if name not in store:
                store.write(delg_image_features(feature_dir, name, (height, width), max_local))
    return Path(store_path)


def write_delg_files(feature_dir: str | Path, image_name: str, global_desc: np.ndarray, locations_yx: np.ndarray,
                     scales: np.ndarray, descriptors: np.ndarray, attention: np.ndarray) -> None:
    """Write one image's DELG files in the release layout (for tests and for converting other features)."""
    feature_dir = Path(feature_dir)
    feature_dir.mkdir(parents=True, exist_ok=True)
    (feature_dir / f"{image_name}{GLOBAL_EXT}").write_bytes(encode_datum(np.asarray(global_desc, np.float32)))
    (feature_dir / f"{image_name}{LOCAL_EXT}").write_bytes(
        encode_delf_features(np.asarray(locations_yx), scales, descriptors, attention))


__all__: Sequence[str] = ["parse_datum", "encode_datum", "parse_delf_features", "encode_delf_features",
                          "read_delg_global", "read_delg_local", "read_rrt_list", "delg_image_features",
                          "import_delg", "write_delg_files"]
