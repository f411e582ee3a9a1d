"""Training losses (pure functions of embeddings and labels, plus their parameter-holding modules)."""
"""Training losses."""
