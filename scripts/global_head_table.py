"""Global retrieval on the warped-photo benchmark's TEST photos with one frozen backbone and several heads.

Every row uses the same pretrained EfficientNet-Lite0 map (cnn_local preprocessing, 224 px) of the same
images, pooled once by GeM (p = 3); only what follows the pooling differs:

- ``plain GeM 1280-d``: the pooled vector, L2-normalised (cnn_local's default global descriptor);
- ``seeded 128-d``: W_seeded GeM + 0 (cnn_local's seeded random 1x1 projection, projection_seed 0);
- ``whitening 128-d``: supervised whitening (closed form, ``relook.models.whitening``) learned on the
  TRAIN photos' pooled vectors and their same-photo pairs, first 128 rows (optional, ``--train-split``);
- one row per ``--head LABEL=PATH``: a head of ``relook train global`` (Eq. H2).

Every test image queries the other 599 (the query itself ignored), full ranking, relook's ``evaluate``.

    python scripts/global_head_table.py --warp runs/global_head_warp/warp --head learned=runs/.../head.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from relook.datasets import load_dataset
    from relook.eval.evaluate import evaluate, format_table
    from relook.models.global_head import GlobalHead, load_global_head
    from relook.models.whitening import apply_whitening, learn_supervised_whitening, pairs_from_labels
    from relook.train.global_head import backbone_extractor, pooled_features

    ap = argparse.ArgumentParser()
    ap.add_argument("--warp", required=True, type=Path)
    ap.add_argument("--head", action="append", default=[], help="LABEL=PATH of a head file")
    ap.add_argument("--train-split", action="store_true", help="also the supervised-whitening row (reads TRAIN)")
    ap.add_argument("--out", type=Path, default=None, help="results.json to write")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = load_dataset("warp", args.warp, split="test")
    ex = backbone_extractor({}, 3.0)
    x = pooled_features(ex, test.gallery, progress=False)
    rows: dict[str, np.ndarray] = {"plain GeM 1280-d": torch.nn.functional.normalize(x, dim=1).numpy()}
    with torch.no_grad():
        rows["seeded 128-d"] = GlobalHead(x.shape[1], 128, 3.0, seed=0).global_from_pooled(x).numpy()
    if args.train_split:
        train = load_dataset("warp", args.warp, split="train")
        xt = pooled_features(ex, train.gallery, progress=False).numpy()
        mean, proj = learn_supervised_whitening(xt, pairs_from_labels(train.gallery_labels))
        rows["whitening 128-d"] = apply_whitening(x.numpy(), mean, proj, 128)
    for spec in args.head:
        label, path = spec.split("=", 1)
        head, _ = load_global_head(path)
        with torch.no_grad():
            rows[label] = head.global_from_pooled(x).numpy()
    from relook.search import exact_search  # every image against all (itself included; the metrics skip it)

    ids = test.gallery_ids
    results = {k: evaluate(exact_search(v, v, len(ids), ids, ids), test, ks=(1, 10, 50)) for k, v in rows.items()}
    print(format_table({k: {m: r[m] for m in ("R@1", "R@10", "R@50", "mAP", "MAP@R")} for k, r in results.items()}))
    print(
        f"{len(test.gallery)} test images ({len(set(test.gallery_labels.tolist()))} photos); weights: "
        f"{ex.net.weights_record.describe()}"
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
