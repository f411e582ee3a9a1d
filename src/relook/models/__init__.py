"""Models: backbones with retrieval heads (``dtop/``), whitening and other learned post-processing."""
