"""Neural models: backbones with retrieval heads (``dtop/``), the Reranking Transformer, whitening; import
the submodule you need."""
