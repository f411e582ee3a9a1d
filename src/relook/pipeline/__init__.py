"""The stages of an experiment, each reading and writing files and skipping finished work.

``extract`` -> ``features/<label>/{queries,gallery}.h5``; ``search`` -> ``shortlist.npz``;
``rerank`` -> ``rankings/<label>.npz``; ``evaluate`` -> ``results.json`` + a printed table. A stage whose
output exists and was made from the same inputs (a fingerprint stored in the output's metadata) does
nothing; extraction resumes image by image.

Stale results are never mixed: fingerprints cover the content of the feature stores
(``FeatureStore.digest``), so a changed gallery rebuilds the index and the shortlist; each ranking records
the shortlist, settings and features it came from, and ``evaluate`` (hence ``report``) refuses, in one
line naming the file and the command that redoes it, a shortlist or ranking whose inputs changed since.
A stage that does work records its wall time in
``<out>/timings.json`` (``record_timing``), which ``evaluate`` copies into ``results.json`` for the report.

One module per job: ``runs`` (the run's dataset, store paths, fingerprints, timings), ``extraction``,
``shortlist`` (index + search), ``reranking`` (+ pseudo ground truth of the shortlist's pairs), ``results``
(evaluate, results.json, the table). This package re-exports their public names (``relook.pipeline.search``,
...) so callers import from one place.
"""

from relook.environment import git_commit  # re-exported for older callers
from relook.pipeline.extraction import extract
from relook.pipeline.reranking import (
    _features_for,
    drop_junk,
    estimate_line,
    pair_count,
    pseudo_gt_shortlist,
    rerank,
    shortlist_pairs,
    stale_reason,
)
from relook.pipeline.results import (
    evaluate,
    evaluation_inputs,
    is_random_weights,
    provenance,
    results_table,
    run_summary,
    split_name,
    write_results,
)
from relook.pipeline.runs import _global_label, dataset_of, open_pair, read_timings, record_timing, store_paths
from relook.pipeline.shortlist import (
    check_shortlist,
    index,
    index_file,
    index_fingerprint,
    index_fingerprints,
    read_any_index,
    search,
)

__all__ = [
    "_features_for",  # used by relook.query
    "_global_label",  # used by relook.query
    "check_shortlist",
    "dataset_of",
    "drop_junk",
    "estimate_line",
    "evaluate",
    "evaluation_inputs",
    "extract",
    "git_commit",
    "index",
    "index_file",
    "index_fingerprint",
    "index_fingerprints",
    "is_random_weights",
    "open_pair",
    "pair_count",
    "provenance",
    "pseudo_gt_shortlist",
    "read_any_index",
    "read_timings",
    "record_timing",
    "rerank",
    "results_table",
    "run_summary",
    "search",
    "shortlist_pairs",
    "split_name",
    "stale_reason",
    "store_paths",
    "write_results",
]
