"""relook: instance-level image retrieval that looks again at its shortlist.

Data flows one way: images -> FeatureStore -> Shortlist -> Reranker -> Ranking -> metrics.
"""
from relook.errors import ConfigError, DataError, RelookError, ShapeError
from relook.types import ImageFeatures, Ranking, Shortlist

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "ImageFeatures", "Ranking", "RelookError", "ShapeError", "Shortlist"]
