"""No checkpoint relook is handed runs code; a wrong or foreign checkpoint is one line naming the file."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from relook.checkpoints import load_checkpoint, to_json
from relook.errors import DataError
from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import load_rrt, read_checkpoint, save_rrt

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DTOP = dict(
    backbone="timm:vit_tiny_patch16_224",
    pretrained=False,
    timm_kwargs={"depth": 1},
    layers=1,
    out_dim=32,
    aspp_rates=[1, 2, 3],
)


class _Payload:
    """Unpickling this calls ``fn(*args)``: a crafted checkpoint's way to run code."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _crafted(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A checkpoint-looking file whose unpickling would create ``marker``."""
    marker = tmp_path / f"marker-{how}"
    evil = _Payload(os.system, f"touch {marker}") if how != "open" else _Payload(open, str(marker), "w")
    body = {
        "format": "relook-rrt",
        "config_json": "{}",
        "state_dict": {"w": torch.zeros(2)},
        "epoch": evil,
        "state": {"seg_encoder.weight": torch.zeros(6, 4)},
        "model": {},
    }
    path = tmp_path / f"evil-{how}.pt"
    if how == "raw-pickle":
        path.write_bytes(pickle.dumps(body))
    elif how == "legacy":
        torch.save(body, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(body, path)
    return path, marker


def _loaders(tmp_path):
    from relook.demo import _trained
    from relook.features import create_extractor
    from relook.models.dtop.checkpoint import load_dtop
    from relook.train.dtop import train_dtop
    from relook.weights import load_state_dict, resolve_weights

    def train_dtop_resume(path):  # the checkpoint is read before any image is opened
        (tmp_path / "run").mkdir(exist_ok=True)
        os.replace(path, tmp_path / "run" / "checkpoint.pt")
        train_dtop({"model": DTOP, "epochs": 1}, [(tmp_path / "none.png", None)], [0], tmp_path / "run", progress=False)

    return {
        "load_rrt": load_rrt,
        "read_checkpoint": read_checkpoint,
        "cnn_local weights": lambda p: create_extractor(
            "cnn_local", arch="resnet10t", pretrained=False, local_dim=16, weights=str(p)
        ),
        "load_dtop": load_dtop,
        "train_dtop resume": train_dtop_resume,
        "demo resume check": lambda p: _trained(p, 1),
        "weights file": lambda p: load_state_dict(resolve_weights(str(p))),
    }


LOADERS = [
    "load_rrt",
    "read_checkpoint",
    "cnn_local weights",
    "load_dtop",
    "train_dtop resume",
    "demo resume check",
    "weights file",
]


@pytest.mark.parametrize("how", ["system", "open", "legacy", "raw-pickle"])
@pytest.mark.parametrize("loader", LOADERS)
def test_bad_input_crafted_checkpoint_runs_nothing(tmp_path, loader, how):
    path, marker = _crafted(tmp_path, how)
    with pytest.raises(DataError) as err:
        _loaders(tmp_path)[loader](path)
    msg = str(err.value)
    assert not marker.exists(), f"{loader} ran the pickled payload"
    named = "run/checkpoint.pt" if loader == "train_dtop resume" else path.name  # resume reads out_dir's file
    assert "\n" not in msg and named in msg, msg
    if how in ("system", "open"):
        assert "refusing to load" in msg and ("system" in msg or "open" in msg), msg


def test_bad_input_crafted_checkpoint_cli(tmp_path):
    """Through the real CLI: exit 2, one line naming the file, no marker."""
    path, marker = _crafted(tmp_path, "system")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "relook.cli",
            "visualize",
            "rrt-matches",
            str(path),
            str(tmp_path / "s.h5"),
            "q",
            "c",
            "--query-image",
            "q.jpg",
            "--candidate-image",
            "c.jpg",
            "-o",
            str(tmp_path / "m.png"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 2 and not marker.exists()
    assert out.stderr.strip().count("\n") == 0 and str(path) in out.stderr and "refusing" in out.stderr, out.stderr


def test_smoke_own_checkpoint_holds_only_plain_data(tmp_path):
    """relook's RRT checkpoint (with optimizer and scheduler state) loads with weights_only=True and keeps
    its config as a JSON string."""
    m = RRT(variant="sop", num_layers=1)
    opt = torch.optim.AdamW(m.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [1, 2])
    path = save_rrt(
        tmp_path / "rrt.pt", m, optimizer=opt.state_dict(), scheduler=sched.state_dict(), epoch=1, train_conf_json="{}"
    )
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["config_json"], str) and "config" not in raw
    assert load_rrt(path).conf == m.conf


def test_legacy_v1_checkpoint_loads(tmp_path):
    m = RRT(variant="sop", num_layers=1)
    torch.save(
        {"format": "relook-rrt", "version": 1, "config": dict(m.conf), "state_dict": m.state_dict()}, tmp_path / "v1.pt"
    )
    m2 = load_rrt(tmp_path / "v1.pt")
    assert m2.conf == m.conf
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, m2.state_dict()[k])


def _official_sop(m: RRT) -> dict:
    seg = m.segment_embed.weight.detach()
    from relook.models.rrt import CAND_LOCAL, CLS, QUERY_LOCAL, SEP

    st = {
        "seg_encoder.weight": seg[[CLS, SEP, QUERY_LOCAL, CAND_LOCAL]].clone(),
        "classifier.weight": m.classifier.weight.detach(),
        "classifier.bias": m.classifier.bias.detach(),
    }
    st.update({f"encoder.layers.{k}": v.detach() for k, v in m.encoder.state_dict().items()})
    return st


@pytest.mark.parametrize("nest", [None, "state", "state_dict", "model"])
def test_official_state_dict_nestings_load(tmp_path, nest):
    m = RRT(variant="sop", num_layers=1)
    st = _official_sop(m)
    torch.save(st if nest is None else {nest: st, "epoch": 3}, tmp_path / "official.pt")
    m2 = load_rrt(tmp_path / "official.pt")
    torch.testing.assert_close(m2.classifier.weight, m.classifier.weight)


def test_bad_input_not_a_checkpoint(tmp_path):
    for name, content in [
        ("text.pt", b"hello, not a checkpoint"),
        ("empty.pt", b""),
        ("array.pt", np.zeros(3).tobytes()),
    ]:
        (tmp_path / name).write_bytes(content)
        for load in (load_rrt, _loaders(tmp_path)["load_dtop"], _loaders(tmp_path)["cnn_local weights"]):
            with pytest.raises(DataError) as err:
                load(tmp_path / name)
            msg = str(err.value)
            assert "\n" not in msg and name in msg and ("not a torch checkpoint" in msg or "not a readable" in msg), msg
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(DataError, match="folder"):
        load_checkpoint(tmp_path / "folder.pt", "RRT checkpoint")


def _dtop_checkpoint(path: Path) -> Path:
    from relook.models.dtop import DToP

    model = DToP(**DTOP)
    torch.save(
        {
            "format": "relook-dtop",
            "version": 2,
            "model": model.state_dict(),
            "config_json": to_json(model.conf),
            "trainee": {},
            "epoch": 1,
        },
        path,
    )
    return path


def test_bad_input_checkpoint_of_another_model(tmp_path):
    from relook.models.dtop.checkpoint import load_dtop

    dtop = _dtop_checkpoint(tmp_path / "dtop.pt")
    with pytest.raises(DataError) as err:
        load_rrt(dtop)
    assert "dtop.pt: expected an RRT checkpoint, found a relook DToP checkpoint" in str(err.value)
    rrt = save_rrt(tmp_path / "rrt.pt", RRT(variant="sop", num_layers=1))
    with pytest.raises(DataError) as err:
        load_dtop(rrt)
    assert "rrt.pt: expected a DToP checkpoint" in str(err.value) and "RRT checkpoint" in str(err.value)
    assert load_dtop(dtop).out_dim == 32  # and the right one loads
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "resnet.pt")
    with pytest.raises(DataError) as err:
        load_rrt(tmp_path / "resnet.pt")
    assert "resnet.pt" in str(err.value) and "seg_encoder" in str(err.value) and "\n" not in str(err.value)


def test_bad_input_wrong_shape(tmp_path):
    m = RRT(variant="sop", num_layers=1)
    path = save_rrt(tmp_path / "rrt.pt", m)
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["classifier.weight"] = torch.zeros(1, 7)
    torch.save(raw, path)
    with pytest.raises(DataError) as err:
        load_rrt(path)
    msg = str(err.value)
    assert "rrt.pt" in msg and "'classifier.weight': expected (1, 128), found (1, 7)" in msg and "\n" not in msg

    from relook.features import create_extractor
    from relook.features.cnn_local import CNNLocalNet

    torch.save(CNNLocalNet("resnet10t", False, 16).state_dict(), tmp_path / "w.pt")
    with pytest.raises(DataError) as err:
        create_extractor("cnn_local", arch="resnet10t", pretrained=False, local_dim=8, weights=str(tmp_path / "w.pt"))
    msg = str(err.value)
    assert "w.pt" in msg and "wrong shape" in msg and "expected (8," in msg and "found (16," in msg, msg

    from relook.models.dtop.checkpoint import load_dtop

    dtop = torch.load(_dtop_checkpoint(tmp_path / "dtop.pt"), weights_only=True)
    dtop["model"].pop(next(iter(dtop["model"])))
    torch.save(dtop, tmp_path / "dtop.pt")
    with pytest.raises(DataError, match=r"dtop.pt: weights do not fit DToP .*1 missing"):
        load_dtop(tmp_path / "dtop.pt")


def test_bad_input_pickled_numpy_arrays(tmp_path):
    """.npy / .npz inputs (asmk codebook, whitening, vit_tokens projection) never unpickle object arrays."""
    from relook.io import load_array
    from relook.models.whitening import load_whitening
    from relook.rerank.asmk import Asmk

    marker = tmp_path / "marker"
    evil = np.array([_Payload(os.system, f"touch {marker}")], dtype=object)
    np.save(tmp_path / "codebook.npy", evil, allow_pickle=True)
    np.savez(tmp_path / "whitening.npz", mean=evil, proj=np.eye(2))
    for load in (
        lambda: load_array(tmp_path / "codebook.npy", "array"),
        lambda: Asmk(codebook_path=str(tmp_path / "codebook.npy")),
        lambda: load_whitening(tmp_path / "whitening.npz"),
    ):
        with pytest.raises(DataError) as err:
            load()
        assert "\n" not in str(err.value) and ("codebook.npy" in str(err.value) or "whitening.npz" in str(err.value))
    assert not marker.exists()
    np.savez(tmp_path / "ok.npz", mean=np.zeros(2), proj=np.eye(2))
    mean, proj = load_whitening(tmp_path / "ok.npz")
    assert proj.shape == (2, 2)
    with pytest.raises(DataError, match="no 'proj' array"):
        np.savez(tmp_path / "half.npz", mean=np.zeros(2))
        load_whitening(tmp_path / "half.npz")
