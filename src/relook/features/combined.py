"""``combined``: the local features of one extractor and the global descriptor of another, in one store.

RRT's landmark variant reads, per image, up to 500 local descriptors with their keypoints *and* a global
descriptor (its global token), and the shortlist it reranks comes from that global descriptor. With DELG
both come from one network; with a learned keypoint detector (ALIKED, DISK, XFeat: the stand-ins here for
the supplementary's SuperPoint RRT) the locals have no global companion, so this extractor runs a keypoint
extractor for ``local_desc / keypoints / scales / attention`` and a global extractor (``cnn_local``'s GeM,
optionally through a learned head, or ``dtop``) for ``global_desc``, image by image::

    extractors:
      - {name: combined, label: aliked_g,
         locals: {name: aliked, max_keypoints: 500},
         global: {name: cnn_local, projection: head.pt}}

The store's provenance records both parts (``extractor.locals.*``, ``extractor.global.*``), so a store
made with another detector or another global network is refused, as for any extractor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, ClassVar

import numpy as np

from relook.errors import ConfigError
from relook.features.base import Extractor, create_extractor, register_extractor
from relook.types import ImageFeatures

#: fields taken from the ``locals`` extractor (``global_desc`` comes from the ``global`` one)
LOCAL_FIELDS = ("local_desc", "keypoints", "scales", "attention", "image_size")


@register_extractor("combined")
class CombinedExtractor(Extractor):
    """Locals of ``locals`` + ``global_desc`` of ``global`` (module docstring)."""

    name = "combined"
    default_conf: ClassVar[dict[str, Any]] = {
        "locals": None,  # extractor config with a name, writing local_desc + keypoints (aliked, disk, xfeat, sift)
        "global": None,  # extractor config with a name, writing global_desc (cnn_local, dtop, vit_tokens)
        "batch_size": 4,  # images handed to both extractors at a time
    }
    writes = frozenset({"global_desc", *LOCAL_FIELDS})
    runtime_keys = frozenset(
        {"batch_size", "device", *(f"{part}.{k}" for part in ("locals", "global") for k in ("batch_size", "device"))}
    )

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        self.parts: dict[str, Extractor] = {}
        for part, need in (("locals", "local_desc"), ("global", "global_desc")):
            sub = self.conf[part]
            if not isinstance(sub, dict) or not sub.get("name"):
                raise ConfigError(
                    f"extractor 'combined': {part} must be an extractor config with a name, "
                    f"e.g. {{name: {'aliked' if part == 'locals' else 'cnn_local'}}}, got {sub!r}"
                )
            ex = create_extractor(sub["name"], **{k: v for k, v in sub.items() if k != "name"})
            if need not in ex.writes:
                raise ConfigError(f"extractor 'combined': {part} extractor {sub['name']!r} does not write {need}")
            self.parts[part] = ex

    def set_role(self, role: str) -> CombinedExtractor:
        for ex in self.parts.values():
            ex.set_role(role)
        return super().set_role(role)

    @property
    def provenance(self) -> dict[str, str]:
        """Both parts' provenance under ``extractor.<part>.*`` / ``<part>.*``, and one ``weights`` line naming both."""
        out = {"extractor": self.name, "extractor.batch_size": str(self.conf["batch_size"])}
        said = []
        for part, ex in self.parts.items():
            prov = ex.provenance
            for k, v in prov.items():
                out[f"extractor.{part}{k[len('extractor') :]}" if k.split(".")[0] == "extractor" else f"{part}.{k}"] = v
            head = f" + head {prov['head']}" if prov.get("head") else ""
            said.append(f"{part} {ex.name}: {prov.get('weights', 'no learned weights')}{head}")
        out["weights"] = "; ".join(said)
        return out

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        return next(iter(self.extract([(image_id, image)])))

    def extract(self, images: Iterable[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        it = iter(images)
        size = max(1, int(self.conf["batch_size"]))
        while chunk := list(islice(it, size)):
            loc = list(self.parts["locals"].extract(chunk))
            glo = list(self.parts["global"].extract(chunk))
            for (image_id, _), lf, gf in zip(chunk, loc, glo):
                fields = {k: getattr(lf, k) for k in LOCAL_FIELDS}
                yield ImageFeatures(image_id, global_desc=gf.global_desc, **fields)
