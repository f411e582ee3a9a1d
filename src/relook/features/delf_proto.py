"""DELF protocol buffers (``datum.proto``, ``feature.proto``, proto2) decoded and encoded by hand.

* ``DatumProto { DatumShape shape = 1 {repeated int64 dim = 1 [packed]};
  oneof { FloatList float_list = 2 {repeated float value = 1 [packed]};
  Uint32List uint32_list = 3 {repeated uint32 value = 1 [packed]} } }``
* ``DelfFeatures { repeated DelfFeature feature = 1 }``, ``DelfFeature { DatumProto descriptor = 1;
  float x = 2; float y = 3; float scale = 4; float orientation = 5; float strength = 6 }``

Only the wire format is needed (varints, fixed32 floats, length-delimited fields, packed or not), so no
protobuf or TensorFlow install is required. Absent optional floats read as 0 (proto2 default).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from relook.errors import DataError


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
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + ln], pos + ln
        elif wt == 5:
            val, pos = buf[pos : pos + 4], pos + 4
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
            for n2, _w2, v2 in _fields(val):
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
        return {
            "locations": np.zeros((0, 2), np.float32),
            "scales": z,
            "descriptors": np.zeros((0, 0), np.float32),
            "attention": z,
            "orientations": z,
        }
    dims = {len(d) for d in desc}
    if len(dims) != 1:
        raise DataError(f"DelfFeatures descriptors have differing lengths {sorted(dims)}")
    r = np.array(rows, np.float32)
    return {
        "locations": r[:, :2],
        "scales": r[:, 2],
        "descriptors": np.stack(desc).astype(np.float32),
        "attention": r[:, 3],
        "orientations": r[:, 4],
    }


def encode_delf_features(
    locations: np.ndarray,
    scales: np.ndarray,
    descriptors: np.ndarray,
    attention: np.ndarray,
    orientations: np.ndarray | None = None,
) -> bytes:
    """Serialise DELF local features; ``locations`` (N, 2) are (y, x) as DELF's own writer takes them."""
    n = len(attention)
    orientations = np.zeros(n, np.float32) if orientations is None else orientations
    out = bytearray()
    for i in range(n):
        body = (
            _enc_len(1, encode_datum(np.asarray(descriptors[i], np.float32)))
            + _enc_float(2, locations[i, 1])
            + _enc_float(3, locations[i, 0])
            + _enc_float(4, scales[i])
            + _enc_float(5, orientations[i])
            + _enc_float(6, attention[i])
        )
        out += _enc_len(1, body)
    return bytes(out)
