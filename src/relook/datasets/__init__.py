"""Dataset readers for the official layouts, registered by name."""
from relook.datasets.base import DATASETS, RetrievalDataset, labelled_split, load_dataset, register_dataset

__all__ = ["DATASETS", "RetrievalDataset", "labelled_split", "load_dataset", "register_dataset"]
