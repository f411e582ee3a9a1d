"""Neural models (backbones, heads, the Reranking Transformer); import the submodule you need."""
"""Models: backbones with retrieval heads (``dtop/``), whitening and other learned post-processing."""
