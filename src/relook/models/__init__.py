"""Neural models (backbones, heads, the Reranking Transformer); import the submodule you need."""
