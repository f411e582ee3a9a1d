"""DToP global descriptor: backbones, DPE (Eq. 2), ELM (Eq. 11), fusion (Eq. 9), heads and the model."""

from relook.models.dtop.model import DToP

__all__ = ["DToP"]
