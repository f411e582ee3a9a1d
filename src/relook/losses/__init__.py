"""Training losses (pure functions of embeddings/attention and labels, plus parameter-holding modules)."""
