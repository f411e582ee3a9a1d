"""Dataset readers for the official layouts, registered by name."""
from relook.datasets.base import DATASETS, RetrievalDataset, labelled_split, load_dataset, register_dataset
from relook.datasets import co3d_retrieve  # noqa: F401  (registers "co3d_retrieve")

__all__ = ["DATASETS", "RetrievalDataset", "labelled_split", "load_dataset", "register_dataset"]
