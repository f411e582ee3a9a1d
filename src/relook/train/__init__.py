"""Training loops (RRT, ...); import the submodule you need."""
