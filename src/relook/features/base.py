"""The ``Extractor`` role and the ``extract`` stage that fills a FeatureStore resumably.

An extractor turns images into ``ImageFeatures`` and declares the store fields it ``writes``. The stage
function ``extract_to_store`` skips images already complete in the store, so rerunning it after an
interruption only does the missing ones.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.images import load_image
from relook.registry import Registry
from relook.types import ImageFeatures

log = logging.getLogger(__name__)

EXTRACTORS: Registry[Extractor] = Registry("extractor")
register_extractor = EXTRACTORS.register

#: one image to extract: (image id, path to the file, optional crop box (x1, y1, x2, y2))
ImageItem = tuple[str, Path, "tuple[float, float, float, float] | None"]


def create_extractor(name: str, **conf: Any) -> Extractor:
    """Build the extractor registered as ``name``. The built-in ones are registered by then: importing this
    module runs ``relook/features/__init__.py`` first, which imports them."""
    return EXTRACTORS.create(name, **conf)


class Extractor(ABC):
    """Base class: ``default_conf`` (commented keys in subclasses) and the ``writes`` fields."""

    name: ClassVar[str] = "extractor"
    default_conf: ClassVar[dict[str, Any]] = {}
    writes: ClassVar[frozenset[str]] = frozenset()
    #: conf keys that change how, not what, is computed: a store made with other values is still resumed
    runtime_keys: ClassVar[frozenset[str]] = frozenset({"batch_size", "device"})

    def __init__(self, **conf: Any) -> None:
        self.conf = merge_conf(self.default_conf, conf, f"extractor {self.name!r}")

    @abstractmethod
    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        """Features of one RGB uint8 image (H, W, 3)."""

    def extract(self, images: Iterable[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        """Features of each (image id, RGB array); subclasses may batch."""
        for image_id, image in images:
            yield self.extract_one(image_id, image)

    def set_role(self, role: str) -> Extractor:
        """Tell the extractor whether it now extracts ``"query"`` or ``"database"`` images.

        The pipeline calls this before each store; extractors whose output depends on the role (DToP's
        single- vs multi-scale switch of Table A11) override it. The default ignores the role.
        """
        if role not in ("query", "database"):
            raise ConfigError(f"extractor role must be 'query' or 'database', got {role!r}")
        return self

    @property
    def provenance(self) -> dict[str, str]:
        """What produced the features: written into the store's metadata."""
        return {"extractor": self.name, **{f"extractor.{k}": str(v) for k, v in self.conf.items()}}


def stale_keys(store_path: str | Path, extractor: Extractor) -> list[str] | None:
    """Provenance keys on which an existing store disagrees with ``extractor`` (None: no store or no images).

    A key counts when the store lacks it or holds another value (another seed, other weights, another
    option), except the extractor's ``runtime_keys`` (batch size, device): the store's features then come
    from another network or setting and must not be mixed with new ones.
    """
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    if not Path(store_path).exists():
        return None
    with FeatureStore(store_path, "r") as store:
        if not len(store):
            return None
        meta = store.meta
    ignored = {f"extractor.{k}" for k in extractor.runtime_keys}
    return sorted(k for k, v in extractor.provenance.items() if k not in ignored and meta.get(k) != v)


def mixing_error(store_path: str | Path, extractor: Extractor, stale: list[str]) -> DataError:
    """The one-line refusal to add features of ``extractor`` to a store made with other ``stale`` settings."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    k = stale[0]
    with FeatureStore(store_path, "r") as store:
        n, made = (
            len(store),
            (f"with {k}={store.meta[k]!r}" if k in store.meta else f"without the setting {k} (an older relook)"),
        )
    more = f" (and {len(stale) - 1} more setting(s))" if len(stale) > 1 else ""
    return DataError(
        f"{store_path}: its {n} images were extracted {made}, the config asks for "
        f"{extractor.provenance.get(k)!r}{more}; delete the store (or give this extractor another "
        "label) to extract again"
    )


def extract_to_store(
    extractor: Extractor,
    items: Sequence[ImageItem],
    store_path: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    exif_orientation: bool = True,
) -> Path:
    """The extract stage: write features of ``items`` into ``store_path``, skipping complete images.

    ``exif_orientation``: load images upright (a user's photos) or in stored pixels (benchmarks).
    A store that already holds images made with another provenance (e.g. another ``seed`` or other
    weights: see ``Extractor.provenance``; runtime keys such as the batch size do not count) is neither
    resumed nor overwritten: a one-line ``DataError`` names the store and the first key that differs, so
    one store never mixes two networks and nothing extracted before is lost.
    """
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    provenance = extractor.provenance
    if not overwrite:
        stale = stale_keys(store_path, extractor)
        if stale:
            raise mixing_error(store_path, extractor, stale)
        if stale is not None:
            with FeatureStore(store_path, "r") as store:
                if not store.missing([it[0] for it in items]):
                    return Path(store_path)  # nothing to do: leave the file untouched
    with FeatureStore(store_path, "w" if overwrite else "a", meta=provenance) as store:
        # batches are fixed slices of ``items``: a network's output can depend on which images share its
        # batch, so a resumed run recomputes a partly done batch whole and keeps only the missing images,
        # and its features equal those of an uninterrupted run bit for bit
        size = max(1, int(extractor.conf.get("batch_size") or 1))
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        todo = [b for b in batches if any(it[0] not in store for it in b)]
        loaded = ((i, load_image(p, bbox, exif_orientation)) for b in todo for i, p, bbox in b)
        for feats in tqdm(
            extractor.extract(loaded), total=sum(map(len, todo)), desc=f"extract:{extractor.name}", disable=not progress
        ):
            if feats.image_id not in store:
                store.write(feats)
    return Path(store_path)
