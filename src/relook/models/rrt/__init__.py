"""Reranking Transformer (RRT): the model and what surrounds it, one module each.

``model`` (``RRT``, ``RRTOutput``, segment ids, presets), ``inputs`` (stored features -> input tensors),
``checkpoint`` (relook's and the official checkpoints), ``infer`` (``RRTPairScorer``, fast CPU scoring),
``correspondences`` (matches from the last-layer attention). This package re-exports ``model``'s names only
(``from relook.models.rrt import RRT``); import the other submodules by name. ``model`` imports none of them,
and they import ``model`` directly (never this ``__init__``), so the package has no import cycle.
"""

from relook.models.rrt.model import (
    CAND_GLOBAL,
    CAND_LOCAL,
    CLS,
    DELG_SCALES,
    QUERY_GLOBAL,
    QUERY_LOCAL,
    RRT,
    SEP,
    VARIANTS,
    RRTOutput,
    scale_indices,
)

__all__ = [
    "CAND_GLOBAL",
    "CAND_LOCAL",
    "CLS",
    "DELG_SCALES",
    "QUERY_GLOBAL",
    "QUERY_LOCAL",
    "RRT",
    "RRTOutput",
    "SEP",
    "VARIANTS",
    "scale_indices",
]
