"""``relook benchmark``: one command, one real-data table.

What it runs, over relook's own stages (``relook.pipeline``: extract, search, rerank; one experiment folder
per (set, split), so features are cached per set and extractor and a rerun redoes only what changed):

1. **Data** (``relook.benchmark_sets``): every set of ``sets`` as a ``folder`` dataset: UKBench by its
   seeded 60/20/20 split by object, each zero-shot set by a fixed seeded half (val / test); ``--extra-test``
   folders are read whole as extra zero-shot test sets.
2. **Training-free preparation**: the ASMK codebook on the ``train_set``'s train split (ALIKED locals),
   unless a codebook file is shipped at the row's ``codebook`` path (``--eval-only`` trains nothing: a row
   whose file is missing then says so instead of training it).
3. **Settings on val**: a row with ``tune: {option: [values]}`` runs each value on the val half of every set
   that has one; the value with the highest mean over those sets of the val mAP is kept. Test is read once,
   with the kept settings.
4. **Test**: the global order (Lite0 GeM shortlist) and every row on each test set: mAP, R@1, mP@10 (per
   query: ``relook.eval.per_query``), ms/query (the rerank stage's wall time over the queries; the global
   row: the search stage's), s/image and s/pair (``relook.benchmark_costs``: the row's extraction and
   matching time per image and per scored pair), and the delta of mAP to the global order with a paired per-query bootstrap
   95% interval (``relook.eval.bootstrap``), per set and pooled over the sets with ``role: room``.
5. **Learned rows** read checkpoints: a row with ``checkpoint: PATH`` whose file is absent is not run and
   says "not trained: no checkpoint at PATH". A row with ``global:`` is a global-descriptor row (its own
   extractor, e.g. the learned head ``projection: PATH``, and its own shortlist); its ``tune`` grid sets the
   extractor's options (e.g. a ViT's ``block``) by val mAP of that shortlist.
6. **Rows on a global row** (``over: LABEL``; not ``on``, which YAML reads as true): a reranker row run on the global row ``LABEL``'s shortlist and
   reading its features (unless ``features`` says otherwise), so one model gives S_global and the tokens.
   Its delta is reported twice: to its own global (``LABEL``) and to the global order; its ``tune`` grid is
   run on the val splits of ``LABEL`` (with ``LABEL``'s own chosen settings).

Outputs in ``out``: ``results.json``, ``results.md`` (``relook.benchmark_report``) and ``deltas.png``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from relook import pipeline
from relook.benchmark_costs import row_costs
from relook.benchmark_report import summarise, write_outputs
from relook.benchmark_sets import dataset_conf, describe_split
from relook.errors import ConfigError, DataError
from relook.eval.per_query import per_query_metrics
from relook.experiment import DEFAULTS as RUN_DEFAULTS
from relook.experiment import save_config, validate
from relook.types import Ranking, Shortlist

DEFAULTS: dict[str, Any] = {
    "data_root": "../shared/data",  # sets' roots are relative to this
    "out": "runs/benchmark",  # one folder per (set, split) below it, plus results.*
    "seed": 0,  # seed of every split and half (a set may override it)
    "bootstrap": {"n": 2000, "seed": 0},  # paired bootstrap resamples and seed
    "sets": {},  # name -> {root, split_by_group | half: group|image, merge, role: room|ceiling, seed}
    "train_set": None,  # set whose train split trains the ASMK codebook
    "experiment": {},  # extractors, global, shortlist of every run (relook run's keys)
    "rows": [],  # [{label, reranker: {...}, over} | {label, global: {...}}, optional checkpoint, codebook, tune,
    # baseline: another row's label, for a second paired delta (row minus that row)]
}
ROW_KEYS = {"label", "reranker", "global", "checkpoint", "codebook", "tune", "over", "baseline"}
#: global extractors whose ``checkpoint:`` goes to another key than ``projection`` (the learned head's)
CHECKPOINT_KEY = {"dtop_vit": "checkpoint"}


def load_benchmark_config(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``files`` over ``DEFAULTS`` (top-level keys replace, ``bootstrap`` merges), then ``key=value`` overrides."""
    conf = copy.deepcopy(DEFAULTS)
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"{path}: benchmark config not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a valid YAML file ({' '.join(str(e).split())[:160]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a benchmark config must be a mapping")
        for key, value in data.items():
            if key not in DEFAULTS:
                raise ConfigError(f"{path}: unknown benchmark key {key!r}; known: {sorted(DEFAULTS)}")
            conf[key] = {**conf[key], **value} if key == "bootstrap" and isinstance(value, dict) else value
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key.split(".")[0] not in DEFAULTS:
            raise ConfigError(f"override {item!r}: expected key=value with a key among {sorted(DEFAULTS)}")
        node, parts = conf, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a mapping")
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    return check_benchmark_config(conf)


def check_benchmark_config(conf: dict[str, Any]) -> dict[str, Any]:
    """Shapes of ``sets`` and ``rows`` (one-line ``ConfigError`` naming the entry)."""
    if not isinstance(conf["sets"], dict) or not conf["sets"]:
        raise ConfigError("benchmark: 'sets' must map set names to {root: ..., ...}")
    for name, spec in conf["sets"].items():
        if not isinstance(spec, dict) or "root" not in spec:
            raise ConfigError(f"benchmark: set {name!r} needs a 'root'")
        if spec.get("role", "ceiling") not in ("room", "ceiling"):
            raise ConfigError(f"benchmark: set {name!r}: role must be room or ceiling, got {spec['role']!r}")
    if conf["train_set"] is not None and not conf["sets"].get(conf["train_set"], {}).get("split_by_group"):
        raise ConfigError(f"benchmark: train_set {conf['train_set']!r} must be a set with split_by_group: true")
    labels = []
    for i, row in enumerate(conf["rows"]):
        if not isinstance(row, dict) or "label" not in row or ("reranker" in row) == ("global" in row):
            raise ConfigError(f"benchmark: rows[{i}] needs a label and exactly one of reranker / global")
        unknown = set(row) - ROW_KEYS
        if unknown:
            raise ConfigError(f"benchmark: rows[{i}] ({row['label']}): unknown keys {sorted(unknown)}")
        labels.append(row["label"])
    if len(set(labels)) != len(labels) or "global" in labels:
        raise ConfigError(f"benchmark: row labels must be distinct and not 'global', got {labels}")
    global_rows = [r["label"] for r in conf["rows"] if "global" in r]
    for row in conf["rows"]:
        if "over" in row and ("reranker" not in row or row["over"] not in global_rows):
            raise ConfigError(
                f"benchmark: row {row['label']!r}: 'over: {row['over']}' needs a reranker row and a global row's "
                f"label; global rows: {global_rows}"
            )
        # a row's second delta, e.g. DToP vs the ArcFace-FC baseline on the same trunk
        if row.get("baseline") is not None and row["baseline"] not in labels:
            raise ConfigError(f"benchmark: row {row['label']!r}: baseline {row['baseline']!r} is not a row label")
    return conf


def experiment_conf(bench: dict, dataset: dict, out: Path, rerankers: list[dict], extractors=None) -> dict:
    """A validated ``relook run`` config for one (set, split) folder."""

    conf = {**copy.deepcopy(RUN_DEFAULTS), **copy.deepcopy(bench["experiment"])}
    conf["shortlist"] = {**RUN_DEFAULTS["shortlist"], **conf["shortlist"]}  # nested keys merge, as load_config does
    if extractors is not None:
        conf["extractors"] = extractors
        if conf["global"] not in [e.get("label", e["name"]) for e in extractors]:
            conf["global"] = None  # an extraction-only run (e.g. the codebook's train split): no shortlist
    conf.update(dataset=dataset, out=str(out), rerankers=copy.deepcopy(rerankers))
    return validate(conf)


def run_stages(conf: dict, progress: bool) -> None:
    """extract -> search -> rerank of ``relook.pipeline`` (each skips finished work)."""

    pipeline.extract(conf, progress=progress)
    pipeline.search(conf)
    pipeline.rerank(conf, progress=progress)

    save_config(conf, conf["out"])


def scores_of(conf: dict, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-query metrics and ms/query of the global order (``"global"``) and of the rankings ``labels``."""

    dataset = pipeline.dataset_of(conf)
    out = Path(conf["out"])
    shortlist = Shortlist.load(out / "shortlist.npz")
    timings = pipeline.read_timings(out)
    search = timings.get("search", {})
    candidates = (shortlist.indices >= 0).sum(1)  # (Q,) shortlist entries per query
    res = {
        "global": {
            **per_query_metrics(shortlist, dataset),
            "ms": _ms(search.get("seconds"), search.get("queries")),
            "costs": row_costs(timings, conf.get("global"), None, candidates),
        }
    }
    items = {r["label"]: r for r in conf.get("rerankers", [])}
    for label in labels:
        ranking = Ranking.load(out / "rankings" / f"{label}.npz")
        spq = ranking.meta.get("seconds_per_query")
        item = items.get(label)
        features = (item or {}).get("features", conf.get("global"))
        res[label] = {
            **per_query_metrics(ranking, dataset),
            "ms": 1000 * float(spq) if spq else float("nan"),
            "costs": row_costs(timings, features, item, candidates),
        }
    res["_info"] = {"queries": len(dataset.query_ids), "gallery": len(dataset.gallery_ids)}
    return res


def _ms(seconds, count) -> float:
    return 1000.0 * float(seconds) / float(count) if seconds is not None and count else float("nan")


def variants(row: dict) -> list[tuple[str, dict]]:
    """(label, reranker or global-extractor conf) of every setting of a tuned row (the cartesian product of its
    ``tune`` grid)."""
    base = row["reranker"] if "reranker" in row else row["global"]
    grid = row.get("tune") or {}
    if not grid:
        return [(row["label"], base)]
    keys = sorted(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        setting = dict(zip(keys, values))
        tag = ",".join(f"{k}={v}" for k, v in setting.items())
        out.append((f"{row['label']}[{tag}]", {**base, **setting}))
    return out


def train_codebook(bench: dict, row: dict, out: Path, progress: bool) -> Path:
    """ASMK codebook (faiss k-means) on the train split's locals of the row's extractor -> ``out/asmk/*.npy``."""
    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank import create_reranker

    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    name = bench["train_set"]
    if name is None:
        raise ConfigError(f"benchmark: row {row['label']!r} needs a codebook: set train_set or ship {row['codebook']}")
    spec, label = bench["sets"][name], row["reranker"].get("features")
    extractors = [e for e in bench["experiment"]["extractors"] if e.get("label", e["name"]) == label]
    conf = experiment_conf(
        bench,
        dataset_conf(name, spec, "train", Path(bench["data_root"]), Path(bench["out"]), bench["seed"]),
        Path(bench["out"]) / name / "train",
        [],
        extractors,
    )
    size = int(row["reranker"].get("codebook_size", 65536))
    path = out / "asmk" / f"{name}_train_{label}_{size}.npy"
    if path.is_file():
        return path
    ((_, gpath),) = pipeline.extract(conf, progress=progress).values()
    with FeatureStore(gpath) as store:
        descs = np.concatenate([store.read(i, ["local_desc"]).local_desc for i in store.ids()])
    opts = {k: v for k, v in row["reranker"].items() if k in ("codebook_size", "train_max", "kmeans_iters", "seed")}
    centroids = create_reranker("asmk", **opts).fit(descs).centroids
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(centroids, np.float32), allow_pickle=False)
    return path


def resolve_rows(bench: dict, eval_only: bool, progress: bool) -> tuple[list[dict], dict[str, str]]:
    """(rows that can run, with checkpoint / codebook filled in; label -> why a row cannot run)."""
    ready, absent = [], {}
    out = Path(bench["out"])
    for row in bench["rows"]:
        row = copy.deepcopy(row)
        ckpt = row.get("checkpoint")
        if ckpt is not None and not Path(ckpt).is_file():
            absent[row["label"]] = f"not trained: no checkpoint at {ckpt}"
            continue
        if ckpt is not None and "reranker" in row:
            row["reranker"]["checkpoint"] = str(ckpt)
        if ckpt is not None and "global" in row:
            row["global"][CHECKPOINT_KEY.get(row["global"].get("name"), "projection")] = str(ckpt)
        if row.get("codebook") is not None:
            shipped = Path(row["codebook"])
            if shipped.is_file():
                row["reranker"]["codebook_path"] = str(shipped)
            elif eval_only:
                absent[row["label"]] = f"not trained: no codebook at {shipped} (--eval-only trains nothing)"
                continue
            else:
                row["reranker"]["codebook_path"] = str(train_codebook(bench, row, out, progress))
        ready.append(row)
    for row in [r for r in ready if r.get("over") in absent]:
        absent[row["label"]] = f"not run: its global row {row['over']!r} is absent"
        ready.remove(row)
    return ready, absent


def _extractors_for(bench: dict, rerankers: list[dict]) -> list[dict]:
    """The experiment's extractors that the global order and ``rerankers`` read (the rest are not run)."""
    exts = bench["experiment"]["extractors"]
    label_of = [e.get("label", e["name"]) for e in exts]
    glob = bench["experiment"].get("global") or label_of[0]
    wanted = {glob} | {r.get("features", glob) for r in rerankers}
    return [e for e, lab in zip(exts, label_of) if lab in wanted]


def global_run_conf(bench: dict, dataset: dict, folder: Path, label: str, gconf: dict, rerankers: list[dict]) -> dict:
    """The run of a global row in ``folder / label``: its extractor ``gconf`` (labelled ``label``) gives the
    shortlist, and ``rerankers`` (the rows ``over`` it) read that extractor's features."""
    items = [{**r, "features": label} for r in rerankers]
    conf = experiment_conf(bench, dataset, folder / label, items, [{**gconf, "label": label}])
    conf["global"] = label
    return conf


def _val_maps(conf: dict, labels: list[str], base: str, name: str, maps: dict, progress: bool) -> dict:
    """Run ``conf`` and put the val mAP of its shortlist (under ``base``) and of ``labels`` into ``maps``."""
    run_stages(conf, progress)
    res = scores_of(conf, labels)
    for label, r in res.items():
        if label != "_info":
            maps.setdefault(base if label == "global" else label, {})[name] = float(np.nanmean(r["AP"]))
    return res["_info"]


def _pick(row: dict, maps: dict, base: str) -> tuple[dict, dict]:
    """The setting of ``row`` with the best mean val mAP over the sets (ties: the grid's first) and its record."""
    means = {lab: float(np.mean(list(maps[lab].values()))) for lab, _ in variants(row)}
    best = max(variants(row), key=lambda v: means[v[0]])
    record = {
        "grid": row["tune"],
        "val_mAP_mean_over_sets": means,
        "baseline": base,
        "val_mAP_global": dict(maps.get(base, {})),
        "chosen": {k: best[1][k] for k in row["tune"]},
    }
    return best[1], record


def choose_on_val(bench, rows, splits, progress, log) -> tuple[dict[str, dict], dict[str, Any]]:
    """Run every tuned row's settings on the val splits; (label -> chosen reranker / global conf, val record).
    Global rows first (their extractor settings), then the reranker rows, each on the shortlist it reranks."""
    tuned = [r for r in rows if r.get("tune")]
    chosen = {r["label"]: r["reranker"] if "reranker" in r else r["global"] for r in rows}
    if not tuned:
        return chosen, {}
    out, maps, record = Path(bench["out"]), {}, {}
    vals = {
        n: dataset_conf(n, s, "val", Path(bench["data_root"]), out, bench["seed"]) for n, s in bench["sets"].items()
    }
    run_of = {r["label"]: r["label"] for r in rows if "global" in r}  # global row -> label (folder) of its val run
    for row in (r for r in tuned if "global" in r):
        for name, ds in vals.items():
            log(f"val: {name} ({row['label']})")
            for lab, gconf in variants(row):
                info = _val_maps(
                    global_run_conf(bench, ds, out / name / "val", lab, gconf, []), [], lab, name, maps, progress
                )
                splits[(name, "val")] = describe_split(bench["sets"][name], "val", bench["seed"]), info
        chosen[row["label"]], record[row["label"]] = _pick(row, maps, "global")
        run_of[row["label"]] = next(lab for lab, conf in variants(row) if conf == chosen[row["label"]])
    groups: dict[str | None, list[dict]] = {}
    for row in (r for r in tuned if "reranker" in r):
        groups.setdefault(row.get("over"), []).append(row)
    for on, group in sorted(groups.items(), key=lambda kv: kv[0] is not None):  # the global order's rows first
        items = [{"label": lab, **rconf} for r in group for lab, rconf in variants(r)]
        for name, ds in vals.items():
            log(f"val: {name}" + (f" (on {on})" if on else ""))
            if on is None:
                conf = experiment_conf(bench, ds, out / name / "val", items, _extractors_for(bench, items))
            else:
                conf = global_run_conf(bench, ds, out / name / "val", run_of[on], chosen[on], items)
            info = _val_maps(conf, [i["label"] for i in items], on or "global", name, maps, progress)
            splits[(name, "val")] = describe_split(bench["sets"][name], "val", bench["seed"]), info
        for row in group:
            chosen[row["label"]], record[row["label"]] = _pick(row, maps, on or "global")
    return chosen, record


def run_benchmark(
    bench: dict,
    extra_tests: Sequence[str | Path] = (),
    eval_only: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the suite (module docstring); returns the results dict written to ``out/results.json``."""

    out = Path(bench["out"])
    tests = [(name, spec, "test") for name, spec in bench["sets"].items()]
    for root in extra_tests:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"--extra-test {root}: not a folder")
        tests.append((f"extra:{root.name}", {"root": str(root.resolve()), "role": "extra"}, "all"))
    rows, absent = resolve_rows(bench, eval_only, progress)
    splits: dict[tuple[str, str], tuple[str, dict]] = {}
    chosen, val_record = choose_on_val(bench, rows, splits, progress, log)
    per_set: dict[str, dict] = {}
    meta: dict[str, Any] = {}
    for name, spec, split in tests:
        log(f"test: {name}")
        ds = dataset_conf(name, spec, split, Path(bench["data_root"]), out, bench["seed"])
        rerankers = [{"label": r["label"], **chosen[r["label"]]} for r in rows if "reranker" in r and "over" not in r]
        conf = experiment_conf(bench, ds, out / name / split, rerankers, _extractors_for(bench, rerankers))
        run_stages(conf, progress)
        res = scores_of(conf, [r["label"] for r in rerankers])
        meta[name] = _run_meta(conf)
        for row in (r for r in rows if "global" in r):  # a global row: its own extractor, shortlist, rows on it
            on = [{"label": r["label"], **chosen[r["label"]]} for r in rows if r.get("over") == row["label"]]
            gconf = global_run_conf(bench, ds, out / name / split, row["label"], chosen[row["label"]], on)
            run_stages(gconf, progress)
            gres = scores_of(gconf, [r["label"] for r in on])
            res[row["label"]] = gres["global"]
            res.update({r["label"]: gres[r["label"]] for r in on})
            meta[name][row["label"]] = _run_meta(gconf)
        splits[(name, split)] = describe_split(spec, split, bench["seed"]), res.pop("_info")
        per_set[name] = {"role": spec.get("role", "ceiling"), "split": split, "scores": res}
    results = summarise(bench, per_set, [r["label"] for r in rows], absent, chosen, val_record, splits, meta)
    write_outputs(results, out)
    return results


def _run_meta(conf: dict) -> dict[str, Any]:
    """Weights records of the run's stores and its stage timings (for the table's provenance lines)."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    dataset = pipeline.dataset_of(conf)
    stores = {}
    for e in conf["extractors"]:
        _, gpath = pipeline.store_paths(conf, e["label"], dataset)
        with FeatureStore(gpath, "r") as gs:
            stores[e["label"]] = {k: v for k, v in gs.meta.items() if k in ("weights", "head", "extractor")}
    return {"stores": stores, "timings": pipeline.read_timings(conf["out"]), "git": pipeline.git_commit()}
