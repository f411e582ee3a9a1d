"""Rerankers, registered by name. Importing this package registers the built-in ones."""

from relook.rerank import (  # noqa: F401  (registers aqe, asmk, chamfer, gv, ot)
    aqe,
    asmk,
    chamfer,
    gv,
    ot,
)
from relook.rerank.base import RERANKERS, Reranker, apply_scores, create_reranker, list_rerankers, register_reranker

__all__ = ["RERANKERS", "Reranker", "apply_scores", "create_reranker", "list_rerankers", "register_reranker"]
from relook.rerank import rrt  # noqa: F401  (registers rrt)
