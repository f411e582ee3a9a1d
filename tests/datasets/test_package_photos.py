"""relook.datasets.package_photos: the real photos shipped in scikit-image, scikit-learn and matplotlib."""

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from relook.datasets.package_photos import (
    MATPLOTLIB_PHOTOS,
    SKIMAGE_PHOTOS,
    SKLEARN_PHOTOS,
    describe_sources,
    read_sources,
    write_package_photos,
)
from relook.datasets.photos import list_photos
from relook.errors import DataError
from relook.images import load_image


def test_smoke(tmp_path):
    """Every listed photo is written as RGB uint8; the records name package and version; files match the packages."""
    pytest.importorskip("skimage")
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    sources = write_package_photos(tmp_path)
    assert {s.name for s in sources} == set(SKIMAGE_PHOTOS) | set(SKLEARN_PHOTOS) | set(MATPLOTLIB_PHOTOS)
    assert len(list_photos(tmp_path)) == len(sources)
    assert read_sources(tmp_path) == sources
    for s in sources:
        assert s.version == importlib.metadata.version(s.package)
        img = load_image(tmp_path / s.file)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 150
    # a grey photo is its channel repeated (lossless PNG); the JPEGs are the packages' own bytes
    camera = load_image(tmp_path / "scikit-image/camera.png")
    assert np.array_equal(camera, np.repeat(skimage.data.camera()[..., None], 3, axis=2))
    assert np.array_equal(load_image(tmp_path / "scikit-image/astronaut.png"), skimage.data.astronaut())
    china = next(
        i for i, f in zip(load_sample_images().images, load_sample_images().filenames) if f.endswith("china.jpg")
    )
    assert np.abs(load_image(tmp_path / "scikit-learn/china.jpg").astype(int) - china).max() <= 1
    hopper = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    assert (tmp_path / "matplotlib/grace_hopper.jpg").read_bytes() == Path(hopper).read_bytes()
    line = describe_sources(sources)
    assert line.startswith(f"scikit-image {importlib.metadata.version('scikit-image')}: astronaut, brick")
    assert "matplotlib" in line and "grace_hopper" in line


def test_seeded(tmp_path):
    """A rerun keeps the files (same bytes, not rewritten)."""
    pytest.importorskip("skimage")
    write_package_photos(tmp_path)
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*.png")}
    write_package_photos(tmp_path)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*.png")} == stamps


def test_bad_input(tmp_path):
    (tmp_path / "sources.json").write_text("{not json")
    with pytest.raises(DataError, match="sources.json"):
        read_sources(tmp_path)
    assert read_sources(tmp_path / "elsewhere") == []
