"""ASMK (Tolias, Avrithis & Jegou, ICCV 2013): visual codebook, aggregated selective match kernel, inverted file.

``codebook`` trains the visual words (faiss k-means) and assigns descriptors; ``kernel`` holds the pure
math (residual aggregation per word, binarisation for ASMK*, selectivity, image similarity); ``ivf`` the
inverted file over a gallery. The reranker is ``relook.rerank.asmk``.
"""

from relook.asmk.codebook import assign, train_codebook
from relook.asmk.ivf import AsmkIndex
from relook.asmk.kernel import aggregate, asmk_similarity, binarize, selectivity

__all__ = ["AsmkIndex", "aggregate", "asmk_similarity", "assign", "binarize", "selectivity", "train_codebook"]
