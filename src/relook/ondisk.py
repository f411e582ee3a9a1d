"""Galleries past memory: an IVF-PQ index trained on a sample, filled in parts, merged on disk, memory-mapped.

For 1M+ images neither the descriptors nor the inverted lists need to fit in RAM at once:

1. ``train_ivfpq``: the coarse quantiser (``nlist`` centroids) and the product quantiser (``m`` codes of
   ``nbits``) are trained on a seeded sample of at most ``train_size`` vectors.
2. ``build_on_disk``: the gallery arrives in chunks (an iterator, e.g. read part by part from an HDF5 store);
   each chunk is added to a copy of the empty trained index and written as ``parts/part_<i>.index`` (a part
   already on disk is kept, so an interrupted build resumes); then ``faiss.contrib.ondisk.merge_ondisk``
   merges the parts' inverted lists into one ``lists.ivfdata`` file, and ``index.faiss`` refers to it.
3. ``read_on_disk``: opens ``index.faiss`` with the inverted lists memory-mapped (``IO_FLAG_ONDISK_SAME_DIR``:
   the ``.ivfdata`` beside it is found wherever the folder was moved), so search touches only the lists
   that ``nprobe`` visits.

``shard_indexes`` searches several indexes (one per machine part, or per disk) as one (``faiss.IndexShards``,
ids kept as stored); ``to_gpus`` moves an index to every GPU when faiss was built with GPU support
(``faiss-gpu``), and returns it unchanged otherwise. No home-made cluster code: the parts are files, so any
scheduler can build them (one ``build_part`` call per chunk) before one ``merge_parts``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from relook.errors import ConfigError, DataError
from relook.io import atomic_path

IVFPQ_DEFAULTS = {
    "nlist": None,  # coarse centroids; None: about 4 sqrt(G), at most G / 39 (faiss's points per centroid)
    "m": 64,  # PQ sub-quantisers (the descriptor dim must divide by m)
    "nbits": 8,  # bits per PQ code
    "nprobe": 16,  # lists visited per query at search time
    "train_size": 100_000,  # vectors sampled (seeded) to train both quantisers
    "chunk": 50_000,  # vectors per part file while filling the index
    "seed": 0,  # sample and k-means seed
}


def ivfpq_conf(conf: dict | None, n: int) -> dict:
    """``IVFPQ_DEFAULTS`` updated by ``conf`` (unknown keys refused), ``nlist`` resolved for ``n`` vectors."""
    conf = dict(conf or {})
    unknown = sorted(set(conf) - set(IVFPQ_DEFAULTS))
    if unknown:
        raise ConfigError(f"shortlist.ivfpq: unknown key {unknown[0]!r}; known: {sorted(IVFPQ_DEFAULTS)}")
    out = {**IVFPQ_DEFAULTS, **conf}
    for key in ("m", "nbits", "nprobe", "train_size", "chunk"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 1:
            raise ConfigError(f"shortlist.ivfpq.{key} must be a positive integer, got {out[key]!r}")
    if out["nlist"] is None:
        out["nlist"] = int(max(1, min(4 * np.sqrt(n), n // 39)))
    return out


def _matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"{name}: expected a (N, D) array, got shape {x.shape}")
    return x


def train_ivfpq(sample: np.ndarray, nlist: int, m: int = 64, nbits: int = 8, seed: int = 0) -> faiss.Index:
    """An empty ``IVF<nlist>,PQ<m>x<nbits>`` inner-product index trained on ``sample`` (N, D).

    faiss wants about 39 training vectors per centroid and 2**nbits per PQ code book; fewer than
    ``max(nlist, 2**nbits)`` is refused (the result would be meaningless), fewer than 39 * nlist only
    makes faiss warn.
    """
    sample = _matrix(sample, "ivfpq training sample")
    n, d = sample.shape
    if d % m:
        raise ConfigError(f"ivfpq: descriptor dim {d} must be divisible by m={m}")
    if n < max(nlist, 2**nbits):
        raise ConfigError(f"ivfpq: {n} training vectors, need at least max(nlist={nlist}, 2**nbits={2**nbits})")
    index = faiss.index_factory(d, f"IVF{nlist},PQ{m}x{nbits}", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(sample)
    return index


def sample_rows(chunks: Iterable[np.ndarray], size: int, total: int, seed: int = 0) -> np.ndarray:
    """A seeded uniform sample of ``size`` rows (all if fewer) from ``total`` rows given in chunks, holding
    only the sample in memory."""
    pick = np.sort(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False))
    out, start = [], 0
    for chunk in chunks:
        chunk = _matrix(chunk, "gallery chunk")
        sel = pick[(pick >= start) & (pick < start + len(chunk))] - start
        out.append(chunk[sel])
        start += len(chunk)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def build_part(trained: faiss.Index, chunk: np.ndarray, first_id: int, path: str | Path) -> Path:
    """Add ``chunk`` (rows get ids ``first_id, first_id + 1, ...``) to a copy of the empty trained index and
    write it to ``path`` atomically; an existing part is kept (resume)."""
    path = Path(path)
    if path.exists():
        return path
    part = faiss.clone_index(trained)
    chunk = _matrix(chunk, "gallery chunk")
    part.add_with_ids(chunk, np.arange(first_id, first_id + len(chunk), dtype=np.int64))
    with atomic_path(path) as tmp:
        faiss.write_index(part, str(tmp))
    return path


def merge_parts(trained: faiss.Index, parts: Sequence[str | Path], out_dir: str | Path, nprobe: int = 16) -> Path:
    """Merge the parts' inverted lists into ``out_dir/lists.ivfdata`` and write ``out_dir/index.faiss``."""
    out_dir = Path(out_dir)
    missing = [str(p) for p in parts if not Path(p).exists()]
    if missing:
        raise DataError(f"{out_dir}: {len(missing)} index part(s) missing, e.g. {missing[0]}; build them first")
    index = faiss.clone_index(trained)
    ivfdata = out_dir / "lists.ivfdata"
    ivfdata.unlink(missing_ok=True)  # merge_ondisk appends to an existing file
    merge_ondisk(index, [str(p) for p in parts], str(ivfdata))
    faiss.extract_index_ivf(index).nprobe = nprobe
    with atomic_path(out_dir / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))  # refers to lists.ivfdata by name
    (out_dir / "lists.json").write_text(json.dumps({"ntotal": int(index.ntotal), "parts": len(parts)}))
    return out_dir / "index.faiss"


def build_on_disk(
    chunks: Iterable[np.ndarray],
    out_dir: str | Path,
    trained: faiss.Index,
    nprobe: int = 16,
) -> Path:
    """Fill the trained index chunk by chunk (one part file each, resumable) and merge on disk.

    Peak memory is one chunk plus one part's codes, whatever the gallery size."""
    out_dir = Path(out_dir)
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)
    parts, first = [], 0
    for i, chunk in enumerate(chunks):
        parts.append(build_part(trained, chunk, first, out_dir / "parts" / f"part_{i:05d}.index"))
        first += len(chunk)
    path = merge_parts(trained, parts, out_dir, nprobe)
    for p in parts:
        Path(p).unlink()
    return path


def read_on_disk(path: str | Path, nprobe: int | None = None) -> faiss.Index:
    """Open an on-disk index with its inverted lists memory-mapped (found beside ``path``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such index file; build it first (relook index)")
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
    except RuntimeError as e:
        raise DataError(f"{path}: not an on-disk faiss index ({str(e).splitlines()[0]})") from None
    if nprobe is not None:
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def shard_indexes(indexes: Sequence[faiss.Index]) -> faiss.Index:
    """Several indexes searched as one: results merged by score, ids as each index stored them
    (``faiss.IndexShards`` with ``successive_ids=False``: parts built with global ids stay global)."""
    if not indexes:
        raise ConfigError("shard_indexes: no index given")
    shards = faiss.IndexShards(indexes[0].d, True, False)  # threaded, ids not shifted
    for index in indexes:
        shards.add_shard(index)  # faiss's wrapper keeps a Python reference to each shard
    return shards


def to_gpus(index: faiss.Index) -> faiss.Index:
    """``index`` on every GPU when faiss has GPU support (``faiss-gpu``) and a device is present; else as is."""
    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        return faiss.index_cpu_to_all_gpus(index)
    return index
