"""The config of ``relook train rrt|global|dtop`` (``relook.train.config``): files and ``-s`` overrides compose
like the stages' configs, every default comes from the one table of its part, and a bad key, a wrong type or a
null is one line ``error: ...`` naming the key and exit 2, before anything is written."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from relook.cli import main
from relook.errors import ConfigError
from relook.train import dtop, global_head, rrt
from relook.train.config import PARTS, load_train_config

#: one config per part, written as a file and as the equivalent `-s` overrides
GIVEN = {
    "rrt": {
        "dataset": {"name": "co3d_retrieve", "root": "data/ret", "split": "train"},
        "store": "runs/train.h5",
        "out": "runs/rrt",
        "model": {"num_layers": 2, "variant": "landmark"},
        "train": {"epochs": 3, "lr": 0.0002, "milestones": [2], "positives": "label", "init_checkpoint": "a.pt"},
        "backbone": {"arch": "resnet10t", "image_size": 64},
        "guidance": {"kind": "epi", "weight": 1.0},
    },
    "global": {
        "dataset": {"name": "warp", "root": "runs/warp"},
        "out": "runs/head",
        "backbone": {"pretrained": False},
        "train": {"loss": "multi_similarity", "loss_params": {"alpha": 2.0}, "dim": 8},
    },
    "dtop": {
        "dataset": {"name": "folder", "root": "photos", "csv": "groups.csv"},
        "out": "runs/dtop",
        "train": {"model": {"backbone": "timm:vit_small_patch16_224"}, "epochs": 2, "warmup_epochs": 0},
    },
}


def _dotted(conf: dict, prefix: str = "") -> list[str]:
    """``{a: {b: 1}}`` -> ``["a.b=1"]``, values in YAML flow style."""
    out = []
    for key, value in conf.items():
        if isinstance(value, dict) and value:
            out += _dotted(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...')}")
    return out


def _reference(part: str, given: dict) -> dict:
    """The expected resolved config, built by hand: the part's table with the given sections laid over it."""
    out = copy.deepcopy(PARTS[part])
    for key, value in given.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize("part", ["rrt", "global", "dtop"])
def test_matches_reference_file_equals_overrides(tmp_path, part):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(GIVEN[part]))
    from_file = load_train_config(part, [path])
    from_overrides = load_train_config(part, [], _dotted(GIVEN[part]))
    assert from_file == from_overrides == _reference(part, GIVEN[part])


def test_defaults_come_from_the_loops_tables():
    assert PARTS["rrt"]["train"] is rrt.DEFAULT_CONF and PARTS["global"]["train"] is global_head.DEFAULT_CONF
    assert PARTS["dtop"]["train"] is dtop.DEFAULT_CONF
    conf = load_train_config("rrt", [], ["dataset.name=sop", "dataset.root=r", "store=s", "out=o"])
    assert conf["train"] == rrt.DEFAULT_CONF and conf["model"] == {} and conf["guidance"]["kind"] == "none"


def test_later_overrides_win(tmp_path):
    """Files in order, then `-s`, then the command's flags (--device, --seed, -o)."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(GIVEN["rrt"]))
    b.write_text("train: {epochs: 7, seed: 3}\nmodel: {num_layers: 4}\n")
    conf = load_train_config("rrt", [a, b], ["train.seed=5"], {"train.device": "cuda", "out": tmp_path / "x"})
    assert (conf["train"]["epochs"], conf["train"]["lr"], conf["train"]["seed"]) == (7, 0.0002, 5)
    assert conf["model"] == {"num_layers": 4, "variant": "landmark"}  # nested mappings merge
    assert (conf["train"]["device"], conf["out"]) == ("cuda", str(tmp_path / "x"))
    assert load_train_config("rrt", [b, a])["train"]["epochs"] == 3


def test_bad_input_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {epochs: null}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.epochs must not be null"):
        load_train_config("rrt", [path])


RRT = ["train", "rrt", "{t}/s.h5", "-s", "dataset.name=sop", "-s", "dataset.root={t}/sop", "-o", "{t}/out"]
GLOBAL = ["train", "global", "-s", "dataset.name=warp", "-s", "dataset.root={t}/warp", "-o", "{t}/out"]
DTOP = ["train", "dtop", "-s", "dataset.name=warp", "-s", "dataset.root={t}/warp", "-o", "{t}/out"]
CASES = [  # (argv, words the one-line message must hold)
    (RRT + ["-s", "train.epoch=1"], ["train", "unknown option", "'epoch'"]),
    (RRT + ["-s", "bogus=1"], ["unknown config key 'bogus'"]),
    (RRT + ["-s", "train.epochs=null"], ["train.epochs", "null"]),
    (RRT + ["-s", "train.epochs=0"], ["train.epochs", ">= 1"]),
    (RRT + ["-s", "train.epochs=2.5"], ["train.epochs", "integer"]),
    (RRT + ["-s", "train.lr=fast"], ["train.lr", "number"]),
    (RRT + ["-s", "train.augment=3"], ["train.augment", "boolean"]),
    (RRT + ["-s", "train.milestones=[0]"], ["train.milestones"]),
    (RRT + ["-s", "train.distill_pairs=0"], ["train.distill_pairs", ">= 1"]),
    (RRT + ["-s", "model.layers=2"], ["model", "'layers'"]),
    (RRT + ["-s", "model.variant=big"], ["model.variant", "big"]),
    (RRT + ["-s", "guidance.kind=sideways"], ["guidance.kind", "sideways"]),
    (RRT + ["-s", "guidance.wieght=1"], ["guidance", "'wieght'"]),
    (RRT + ["-s", "backbone.arch=3"], ["backbone", "'arch'", "string"]),
    (RRT[:2] + RRT[3:], ["store is required"]),
    (RRT[:-2], ["out is required"]),
    (GLOBAL + ["-s", "train.dim=null"], ["train.dim", "null"]),
    (GLOBAL + ["-s", "train.per_label=-1"], ["train.per_label"]),
    (GLOBAL[:2] + GLOBAL[4:], ["dataset.name is required"]),
    (DTOP + ["-s", "train.batch_size=0"], ["train.batch_size", ">= 1"]),
    (DTOP + ["-s", "train.model=null"], ["train.model", "null"]),
    (DTOP + ["-s", "train.warmup_epochs=-1"], ["train.warmup_epochs"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0][1:2] + c[0][-1:]) for c in CASES])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, words):
    assert main([a.format(t=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()  # checked before the output folder is made


def test_dtop_vit_row_configs_compose():
    """Every configs/dtop_vits14 row composes with the shared dataset file into a valid ``train dtop-vit``
    config, and the rows differ only in ``train.model`` (one training budget for the whole table)."""
    root = Path(__file__).resolve().parents[2] / "configs" / "dtop_vits14"
    rows = sorted(p for p in root.glob("*.yaml") if p.name != "dataset.yaml")
    assert len(rows) >= 6
    confs = {p.stem: load_train_config("dtop-vit", [root / "dataset.yaml", p], flags={"out": "o"}) for p in rows}
    assert confs["full"]["train"]["model"]["layers"] == 6 and confs["k1"]["train"]["model"]["layers"] == 1
    assert all(c["dataset"]["split_by_group"] and c["dataset"]["split"] == "train" for c in confs.values())
    budgets = {
        json.dumps({k: v for k, v in c["train"].items() if k != "model"}, sort_keys=True) for c in confs.values()
    }
    assert len(budgets) == 1
