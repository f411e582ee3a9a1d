"""Training loops (RRT, DToP: checkpoint/resume, torchrun DDP) and their samplers; import the submodule you need."""
