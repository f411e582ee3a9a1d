"""Extractors that fill the FeatureStore. Importing this package registers the built-in ones."""

from relook.features import cnn_local, combined, global_dtop, global_dtop_vit, learned_local, sift, vit_tokens  # noqa: F401  (register them)
from relook.features.base import EXTRACTORS, Extractor, create_extractor, extract_to_store, register_extractor

__all__ = ["EXTRACTORS", "Extractor", "create_extractor", "extract_to_store", "register_extractor"]
