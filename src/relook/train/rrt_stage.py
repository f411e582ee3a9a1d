"""The ``train rrt`` stage: a labelled dataset + its feature store -> a trained RRT checkpoint.

Frozen backbone: the RRT reads the store's locals. Fine-tuning: a ``CNNLocalNet`` recomputes them from
the dataset's images (its projection initialised like the extractor that filled the store, so pass the
same ``cnn_local`` options). Either way the training top-K comes from the store's ``global_desc``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relook.datasets.base import RetrievalDataset
from relook.datasets.transforms import TrainTransform
from relook.errors import DataError
from relook.features.base import create_extractor
from relook.images import load_image
from relook.models.rrt import RRT
from relook.models.rrt.inputs import required_fields
from relook.store import FeatureStore
from relook.train.rrt import DEFAULT_CONF, ImageSource, PairData, StoreSource, global_neighbours, train_rrt


def model_conf_for_store(store: FeatureStore, image_id: str, **conf: Any) -> dict:
    """RRT config whose input dims fit the store (d_local from local_desc, d_global from global_desc)."""
    f = store.read(image_id, ["local_desc", "global_desc"])
    model = RRT(**conf)  # resolves the variant preset
    out = dict(conf)
    out["d_local"] = int(f.local_desc.shape[1])
    if model.conf["d_global"]:
        out["d_global"] = int(f.global_desc.shape[0])
    return out


def train_rrt_stage(
    dataset: RetrievalDataset,
    store_path: str | Path,
    out_dir: str | Path,
    model_conf: dict | None = None,
    train_conf: dict | None = None,
    backbone_conf: dict | None = None,
    resume: bool = False,
    progress: bool = True,
    extra_loss: Callable | None = None,
    pair_info: Callable | None = None,
    seed: int = 0,
    input_pe: Callable | None = None,
    guidance: dict | None = None,
) -> Path:
    """Train on the gallery images (and labels) of ``dataset``; returns the checkpoint path.

    ``backbone_conf``: ``cnn_local`` options (arch, pretrained, image_size, local_dim, projection_seed,
    ...) used when ``train_conf["finetune"]``. ``guidance``: the settings the checkpoint records
    (``relook.train.epipolar.guidance_hooks``).
    """

    tc = {**DEFAULT_CONF, **(train_conf or {})}
    if dataset.gallery_labels is None:
        raise DataError(f"dataset {dataset.name}: RRT training needs labels (a 'labels' protocol split)")
    ids = dataset.gallery_ids
    with FeatureStore(store_path, "r") as store:
        missing = store.missing(ids)
        if missing:
            raise DataError(
                f"{store_path}: {len(missing)} training images missing (e.g. {missing[0]!r}); "
                "run extract on the training split first"
            )
        glob = store.stack("global_desc", ids)
        mconf = model_conf_for_store(store, ids[0], **(model_conf or {}))
        torch.manual_seed(seed)
        model = RRT(**mconf)

        feats = (
            None
            if tc["finetune"]
            else [
                store.read(i, required_fields(model.conf) + (["attention"] if "attention" in store.fields(i) else []))
                for i in ids
            ]
        )
    data = PairData(
        ids, np.asarray(dataset.gallery_labels), global_neighbours(glob, int(tc["top_k"])), info=dataset.info
    )
    if tc["finetune"]:
        bconf = dict(backbone_conf or {})
        ex = create_extractor("cnn_local", **bconf)
        items = dataset.gallery
        augment = None
        if tc.get("augment"):  # frozen store features cannot be augmented: fine-tuning only
            augment = TrainTransform.official_sop(ex.conf["image_size"])
        source = ImageSource(
            ex.net,
            [lambda it=it: load_image(it[1], it[2]) for it in items],
            image_size=ex.conf["image_size"],
            augment=augment,
            seed=seed,
        )
    else:
        source = StoreSource(feats)
    return train_rrt(
        model,
        data,
        source,
        out_dir,
        tc,
        extra_loss=extra_loss,
        pair_info=pair_info,
        resume=resume,
        progress=progress,
        input_pe=input_pe,
        guidance=guidance,
    )
