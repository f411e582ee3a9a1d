"""Rerankers, registered by name. Importing this package registers the built-in ones."""
from relook.rerank.base import RERANKERS, Reranker, apply_scores, create_reranker, list_rerankers, register_reranker
from relook.rerank import aqe, asmk, gv  # noqa: F401,E402  (registers aqe, asmk, gv)
from relook.rerank import ot  # noqa: F401,E402  (registers "ot")

__all__ = ["RERANKERS", "Reranker", "apply_scores", "create_reranker", "list_rerankers", "register_reranker"]
from relook.rerank import rrt  # noqa: F401,E402  (registers rrt)
