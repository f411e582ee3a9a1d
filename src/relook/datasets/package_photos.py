"""Real photos that ship inside PyPI packages, written to a folder: the demo's data on any machine, offline.

Why: ``make demo`` must run on real image statistics without a download, and three common packages carry
real photographs in their wheels: scikit-image (``skimage.data``), scikit-learn (``load_sample_images``)
and matplotlib (``cbook.get_sample_data``). Only photographs are taken (no drawings, logos or binary
masks, nothing under 150 px). Grey photos become RGB by repeating the channel; the JPEGs of
scikit-learn and matplotlib are copied byte for byte.

Layout: ``OUT/<package>/<name>.<png|jpg>`` (the warp benchmark's group names then read
``scikit-image__astronaut``) and ``OUT/sources.json``: one record per photo (package, version, name,
what it shows, the file written), so a report can list exactly which photos produced its numbers.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.cbook
import numpy as np

from relook.datasets.warp import write_image
from relook.errors import DataError
from relook.io import atomic_path

log = logging.getLogger(__name__)

#: scikit-image photographs bundled in its wheel (``skimage.data.<name>()`` reads them without a network)
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut Eileen Collins (colour)",
    "brick": "brick wall texture (grey)",
    "camera": "cameraman (grey)",
    "cell": "cell, microscopy (grey)",
    "chelsea": "Chelsea the cat (colour)",
    "clock": "clock, motion blurred (grey)",
    "coffee": "coffee cup (colour)",
    "coins": "Greek coins (grey)",
    "grass": "grass texture (grey)",
    "gravel": "gravel texture (grey)",
    "hubble_deep_field": "Hubble deep field (colour)",
    "immunohistochemistry": "immunohistochemistry stain (colour)",
    "moon": "moon surface (grey)",
    "page": "scanned book page (grey)",
    "retina": "human retina (colour)",
    "rocket": "SpaceX rocket launch (colour)",
    "text": "photo of printed text (grey)",
    "motorcycle": "motorcycle, left view of the stereo pair (colour)",
}
#: scikit-learn's two sample JPEGs (``sklearn/datasets/images``)
SKLEARN_PHOTOS: dict[str, str] = {"china": "Chinese temple (colour)", "flower": "flower (colour)"}
#: matplotlib's sample photo (``mpl-data/sample_data``)
MATPLOTLIB_PHOTOS: dict[str, str] = {"grace_hopper": "Grace Hopper portrait (colour)"}


@dataclass(frozen=True)
class PhotoSource:
    """Where one demo photo came from."""

    package: str  # pip distribution, e.g. "scikit-image"
    version: str  # its installed version
    name: str  # the package's own name for the photo, e.g. "astronaut"
    what: str  # what it shows
    file: str  # path written, relative to the output folder


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _as_rgb(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) from a grey (H, W), RGB or RGBA array."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _skimage_array(name: str) -> np.ndarray:
    # lazy: optional dependency (skimage)
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def _sklearn_file(name: str) -> Path:
    # lazy: optional dependency (sklearn)
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / f"{name}.jpg"


def _matplotlib_file(name: str) -> Path:

    return Path(matplotlib.cbook.get_sample_data(f"{name}.jpg", asfileobj=False))


def write_package_photos(out: str | Path) -> list[PhotoSource]:
    """Write every available package photo into ``out`` (module docstring); returns their records.

    Photos already written are kept (reruns are free). A package that is not installed, or a photo its
    installed version lacks, is skipped with one warning line; ``DataError`` when none could be written
    (install scikit-image: ``pip install scikit-image``, or the ``relook[demo]`` extra).
    """
    out = Path(out)
    sources: list[PhotoSource] = []
    skipped: list[str] = []

    def add(package: str, name: str, what: str, suffix: str, write) -> None:
        rel = f"{package}/{name}{suffix}"
        try:
            if not (out / rel).is_file():
                (out / package).mkdir(parents=True, exist_ok=True)
                write(out / rel)
        except (ImportError, AttributeError, OSError, ValueError) as e:
            skipped.append(f"{package}:{name} ({type(e).__name__})")
            return
        sources.append(PhotoSource(package, _version(package), name, what, rel))

    def copy_file(src_of):
        def write(dst: Path, src_of=src_of) -> None:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src_of(), tmp)

        return write

    for name, what in SKIMAGE_PHOTOS.items():
        add("scikit-image", name, what, ".png", lambda dst, name=name: write_image(dst, _as_rgb(_skimage_array(name))))
    for name, what in SKLEARN_PHOTOS.items():
        add("scikit-learn", name, what, ".jpg", copy_file(lambda name=name: _sklearn_file(name)))
    for name, what in MATPLOTLIB_PHOTOS.items():
        add("matplotlib", name, what, ".jpg", copy_file(lambda name=name: _matplotlib_file(name)))
    if skipped:
        log.warning("package photos: skipped %d unavailable: %s", len(skipped), ", ".join(skipped))
    if not sources:
        raise DataError(
            f"{out}: no package photos could be written ({', '.join(skipped[:3])}, ...); "
            f"pip install scikit-image scikit-learn matplotlib"
        )
    with atomic_path(out / "sources.json") as tmp:
        tmp.write_text(json.dumps([asdict(s) for s in sources], indent=1))
    return sources


def read_sources(folder: str | Path) -> list[PhotoSource]:
    """The records ``write_package_photos`` left in ``folder`` (empty for a user's own photo folder)."""
    path = Path(folder) / "sources.json"
    if not path.is_file():
        return []
    try:
        return [PhotoSource(**r) for r in json.loads(path.read_text())]
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: not a package-photo record list ({e}); delete it and rerun") from None


def describe_sources(sources: list[PhotoSource]) -> str:
    """One line per package: ``scikit-image 0.26.0: astronaut, brick, ...``."""
    by_pkg: dict[str, list[PhotoSource]] = {}
    for s in sources:
        by_pkg.setdefault(f"{s.package} {s.version}", []).append(s)
    return "; ".join(f"{pkg}: {', '.join(s.name for s in items)}" for pkg, items in by_pkg.items())
