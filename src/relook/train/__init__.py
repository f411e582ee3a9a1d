"""Training loops (checkpoint/resume, torchrun DDP) and their samplers."""
