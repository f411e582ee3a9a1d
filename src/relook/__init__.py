"""relook: instance-level image retrieval that looks again at its shortlist.

Data flows one way: images -> FeatureStore -> Shortlist -> Reranker -> Ranking -> metrics.
``relook.query(images, run_dir, method)`` ranks a finished run's gallery for new images;
``relook.score_pairs(pairs, method)`` scores image pairs; ``relook.rerank_external(file, methods)`` reranks
another system's shortlist.
"""

from relook.errors import ConfigError, DataError, RelookError, ShapeError
from relook.external import rerank_external
from relook.pairwise import PairScore, score_pairs
from relook.query import QueryResult, query
from relook.types import ImageFeatures, Ranking, Shortlist

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DataError",
    "ImageFeatures",
    "PairScore",
    "QueryResult",
    "Ranking",
    "RelookError",
    "ShapeError",
    "Shortlist",
    "query",
    "rerank_external",
    "score_pairs",
]
