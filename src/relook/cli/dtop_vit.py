"""``relook train dtop`` with ``model.backbone: dinov2_s14_imgfocus``: heads on the frozen real ViT, validated on
the benchmark's val splits (``relook.train.dtop_vit``). Called from ``cli/dtop.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def val_sets(conf: dict[str, Any], out: Path) -> dict[str, tuple[list, list]]:
    """Set name -> (items, labels) of the val split / half of each of ``conf["val_sets"]``, as the benchmark
    defines them (``relook.benchmark_sets.dataset_conf``; the halves' CSVs are written under ``out/splits``)."""
    from relook.benchmark import load_benchmark_config
    from relook.benchmark_sets import dataset_conf
    from relook.datasets.base import load_dataset
    from relook.errors import ConfigError

    names = conf.get("val_sets", ["ukbench", "paris6k_subset"])
    if not names:
        return {}
    bench = load_benchmark_config([conf.get("benchmark_config", "configs/benchmark.yaml")])
    out_val = {}
    for name in names:
        if name not in bench["sets"]:
            raise ConfigError(f"train dtop: val set {name!r} is not a benchmark set ({sorted(bench['sets'])})")
        root = Path(conf.get("data_root", bench["data_root"]))
        dc = dataset_conf(name, bench["sets"][name], "val", root, out, bench["seed"])
        ds = load_dataset(dc.pop("name"), dc.pop("root"), **dc)
        out_val[name] = ([(p, b) for _, p, b in ds.gallery], list(ds.gallery_labels))
    return out_val


def train_frozen_vit(conf: dict[str, Any], ds, out: Path) -> Path:
    """Train DToP heads on ``ds``'s gallery (labels) with the val sets of ``conf``; returns the head file."""
    from relook.train.dtop_vit import train_dtop_vit

    items = [(p, b) for _, p, b in ds.gallery]
    return train_dtop_vit(conf, items, ds.gallery_labels, out, val_sets(conf, Path(out)))
