"""Reader for precomputed DELG features in the layout the official RRT release uses.

Layout (RRT_GLD, uvavision/RerankingTransformer)::

    <data_dir>/test_query.txt, test_gallery.txt   one image per line: "<rel path>,<label>,<width>,<height>"
    <data_dir>/delg_<desc_name>/<image name>.delg_global   DatumProto: the global descriptor (D,)
    <data_dir>/delg_<desc_name>/<image name>.delg_local    DelfFeatures: the local features

with ``<image name>`` the file's base name without extension and ``desc_name`` e.g. ``r50_gldv1``. Both
files are serialised protocol buffers of DELF's ``datum.proto`` / ``feature.proto`` (proto2), decoded
in ``delf_proto.py``.

DELF stores locations as (y, x) arrays but x and y as separate fields; relook's ``keypoints`` are (x, y).
``strength`` is DELG's attention score and ``scale`` the image scale the feature came from (one of 0.5 ...
4). DELG writes features sorted by attention (strongest first), which is why RRT simply takes the first
500. No protobuf or TensorFlow install is needed; the encoders exist to write files in the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from relook.errors import DataError
from relook.features.delf_proto import encode_datum, encode_delf_features, parse_datum, parse_delf_features
from relook.store import FeatureStore
from relook.types import ImageFeatures

GLOBAL_EXT = ".delg_global"
LOCAL_EXT = ".delg_local"


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
    for lineno, line in enumerate(path.read_text(encoding="utf8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != 4:
                raise ValueError
            out.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        except ValueError:
            raise DataError(
                f"{path}:{lineno}: expected 'path,label,width,height' (three integers), got {line.strip()!r:.80}"
            ) from None
    return out


def delg_image_features(
    feature_dir: str | Path,
    image_name: str,
    image_size: tuple[int, int] | None = None,
    max_local: int | None = None,
    image_id: str | None = None,
) -> ImageFeatures:
    """ImageFeatures of one image from ``<feature_dir>/<image_name>.delg_{global,local}``.

    ``max_local`` keeps the first (= strongest, DELG's file order) local features, as RRT does;
    ``image_size`` = (H, W). The global descriptor is L2-normalised (DELG's already is).
    """
    feature_dir = Path(feature_dir)
    g = read_delg_global(feature_dir / f"{image_name}{GLOBAL_EXT}")
    loc = read_delg_local(feature_dir / f"{image_name}{LOCAL_EXT}")
    n = len(loc["attention"]) if max_local is None else min(int(max_local), len(loc["attention"]))
    desc = loc["descriptors"][:n] if loc["descriptors"].size else np.zeros((0, 128), np.float32)
    return ImageFeatures(
        image_id or image_name,
        global_desc=g / max(float(np.linalg.norm(g)), 1e-12),
        local_desc=desc,
        keypoints=loc["locations"][:n, ::-1],
        scales=loc["scales"][:n],
        attention=loc["attention"][:n],
        image_size=None if image_size is None else np.asarray(image_size, np.int64),
    )


def import_delg(
    data_dir: str | Path,
    desc_name: str,
    list_file: str | Path,
    store_path: str | Path,
    max_local: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """The import stage: copy DELG features of every image of an RRT list into a FeatureStore.

    Image ids are the base names without extension (RRT's naming); already stored images are skipped.
    """

    data_dir = Path(data_dir)
    feature_dir = data_dir / f"delg_{desc_name}"
    if not feature_dir.is_dir():
        raise DataError(f"{feature_dir}: no such directory; expected <data_dir>/delg_<desc_name>/")
    items = read_rrt_list(
        list_file if Path(list_file).is_absolute() or Path(list_file).exists() else data_dir / list_file
    )
    meta = {
        "extractor": "delg_reader",
        "delg.desc_name": desc_name,
        "delg.dir": str(feature_dir),
        "delg.max_local": str(max_local),
    }
    with FeatureStore(store_path, "w" if overwrite else "a", meta=meta) as store:
        for rel, _label, width, height in tqdm(items, desc="import:delg", disable=not progress):
            name = Path(rel).stem
            if name not in store:
                store.write(delg_image_features(feature_dir, name, (height, width), max_local))
    return Path(store_path)


def write_delg_files(
    feature_dir: str | Path,
    image_name: str,
    global_desc: np.ndarray,
    locations_yx: np.ndarray,
    scales: np.ndarray,
    descriptors: np.ndarray,
    attention: np.ndarray,
) -> None:
    """Write one image's DELG files in the release layout (for tests and for converting other features)."""
    feature_dir = Path(feature_dir)
    feature_dir.mkdir(parents=True, exist_ok=True)
    (feature_dir / f"{image_name}{GLOBAL_EXT}").write_bytes(encode_datum(np.asarray(global_desc, np.float32)))
    (feature_dir / f"{image_name}{LOCAL_EXT}").write_bytes(
        encode_delf_features(np.asarray(locations_yx), scales, descriptors, attention)
    )


__all__: Sequence[str] = [
    "parse_datum",
    "encode_datum",
    "parse_delf_features",
    "encode_delf_features",
    "read_delg_global",
    "read_delg_local",
    "read_rrt_list",
    "delg_image_features",
    "import_delg",
    "write_delg_files",
]
