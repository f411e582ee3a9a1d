"""Extractors that fill the FeatureStore. Importing this package registers the built-in ones."""
from relook.features.base import EXTRACTORS, Extractor, create_extractor, extract_to_store, register_extractor
from relook.features import global_dtop  # noqa: F401  (registers "dtop")

__all__ = ["EXTRACTORS", "Extractor", "create_extractor", "extract_to_store", "register_extractor"]
