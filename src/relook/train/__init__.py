"""Training loops (RRT, ...); import the submodule you need."""
"""Training loops (checkpoint/resume, torchrun DDP) and their samplers."""
