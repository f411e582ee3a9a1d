"""relook: instance-level image retrieval that looks again at its shortlist.

Data flows one way: images -> FeatureStore -> Shortlist -> Reranker -> Ranking -> metrics.
``relook.query(images, run_dir, method)`` ranks a finished run's gallery for new images.
"""

from relook.errors import ConfigError, DataError, RelookError, ShapeError
from relook.query import QueryResult, query
from relook.types import ImageFeatures, Ranking, Shortlist

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DataError",
    "ImageFeatures",
    "QueryResult",
    "Ranking",
    "RelookError",
    "ShapeError",
    "Shortlist",
    "query",
]
