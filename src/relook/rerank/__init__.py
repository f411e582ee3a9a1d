"""Rerankers, registered by name. Importing this package registers the built-in ones, then those of installed
packages that declare an entry point in the group ``relook.rerankers`` (README: "Add your own reranker")."""

import logging
from importlib.metadata import entry_points

from relook.rerank import (  # noqa: F401  (registers aqe, asmk, chamfer, gv, ot)
    aqe,
    asmk,
    chamfer,
    gv,
    ot,
)
from relook.rerank.base import RERANKERS, Reranker, apply_scores, create_reranker, list_rerankers, register_reranker

__all__ = ["RERANKERS", "Reranker", "apply_scores", "create_reranker", "list_rerankers", "register_reranker"]
from relook.rerank import (
    rrt,  # noqa: F401  (registers rrt)
    two_view,  # noqa: F401  (registers the learned pseudo ground-truth matchers)
)


def load_plugins() -> list[str]:
    """Import every module named by an installed package's ``relook.rerankers`` entry point (importing it
    registers its rerankers); a plugin that fails to import is reported in one warning line and skipped.
    Returns the entry-point names loaded. Only installed packages count: no config or file can add code."""
    loaded = []
    for ep in entry_points(group="relook.rerankers"):
        try:
            ep.load()
            loaded.append(ep.name)
        except Exception as e:  # a broken plugin must not break relook
            logging.getLogger(__name__).warning("reranker plugin %r (%s) failed to load: %s", ep.name, ep.value, e)
    return loaded


load_plugins()
