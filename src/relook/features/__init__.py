"""Extractors that fill the FeatureStore. Importing this package registers the built-in ones."""
from relook.features.base import EXTRACTORS, Extractor, create_extractor, extract_to_store, register_extractor

__all__ = ["EXTRACTORS", "Extractor", "create_extractor", "extract_to_store", "register_extractor"]
from relook.features import cnn_local  # noqa: F401,E402  (registers cnn_local)
