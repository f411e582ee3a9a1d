"""Dataset readers for the official layouts, registered by name."""

from relook.datasets import cars, co3d_retrieve, cub, folder, gldv2, msls, revisitop, sfm120k, sop, warp  # noqa: F401  (register)
from relook.datasets.base import DATASETS, RetrievalDataset, labelled_split, load_dataset, register_dataset

__all__ = ["DATASETS", "RetrievalDataset", "labelled_split", "load_dataset", "register_dataset"]
