"""Epipolar Positional Encoding (EPE), the explicit baseline of Sec. 3.4 of the epipolar paper (seed 002).

Each local token (a cell of the s x s grid of either image) is tagged with the angle of its epipolar plane
about the baseline, measured from the plane through a random reference pixel of image 1
(``relook.geometry.epipolar.epipolar_plane_angles``), frequency-encoded and added to the input tokens
through RRT's ``input_pe`` hook. Corresponding points of the two images get the same encoding.

Readings (written here because the paper gives no formula):

- A plane has no orientation, so the angle lives in [0, pi) and the encoding must be pi-periodic: channel
  pairs are ``sin(2 k theta), cos(2 k theta)`` for harmonics ``k = 1 .. dim/2`` (the frequency encoding of
  [49, 83] with integer frequencies so that theta and theta + pi coincide).
- The reference pixel is drawn uniformly in image 1 for every pair from a seeded generator.
- F per pair (Sec. 5.2): training, matching pairs: ground truth (or reliable pseudo ground truth);
  non-matching pairs, training *and* test: a random rank-2 matrix; test, every pair: the pseudo ground
  truth from the images (``relook.geometry.robust``), never the cameras; where no F could be estimated a
  random rank-2 matrix is used. ``choose_fundamentals`` implements this rule.
- Without intrinsics (``K2=None``) the angle uses a nominal camera; see ``epipolar_plane_angles``.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from relook.config import merge_conf
from relook.errors import ConfigError, ShapeError
from relook.geometry.epipolar import epipolar_plane_angles, random_fundamental


def angle_encoding(theta: torch.Tensor, dim: int) -> torch.Tensor:
    """pi-periodic frequency encoding: theta (...,) -> (..., dim), channels (sin 2k theta, cos 2k theta), k=1..dim/2."""
    if dim % 2:
        raise ConfigError(f"angle_encoding: dim must be even, got {dim}")
    k = torch.arange(1, dim // 2 + 1, dtype=theta.dtype, device=theta.device)
    a = 2 * theta[..., None] * k
    return torch.stack((a.sin(), a.cos()), -1).flatten(-2)


def choose_fundamentals(is_match: torch.Tensor, F: torch.Tensor | None, available: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """F (B, 3, 3) to encode: ``F[b]`` where the pair is a match and ``available[b]``, else a random rank-2 F.

    At test time pass ``is_match`` all True with the pseudo ground truth as ``F`` (the match label is not
    known there) and ``available`` = "an F was estimated".
    """
    B = is_match.shape[0]
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    out = random_fundamental(B, seed=g)
    use = is_match.bool().cpu()
    if available is not None:
        use = use & available.bool().cpu()
    if F is not None and bool(use.any()):
        Fn = F.detach().cpu().to(torch.float64)
        Fn = Fn / Fn.flatten(1).norm(dim=-1).clamp_min(1e-300)[:, None, None]
        out[use] = Fn[use]
    return out


class EpipolarPositionalEncoding(nn.Module):
    """F (B, 3, 3) -> additive encodings (B, 2 s^2, dim) of image-1 tokens then image-2 tokens (RRT ``input_pe``)."""

    default_conf: ClassVar[dict[str, Any]] = {
        "dim": 128,        # token width of the RRT (d_model)
        "grid": 7,         # s: tokens form an s x s grid per image
        "seed": 0,         # seed of the reference-pixel generator (reset by ``reset_seed``)
    }

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        self.conf = merge_conf(self.default_conf, conf, "EpipolarPositionalEncoding")
        self.generator = torch.Generator().manual_seed(int(self.conf["seed"]))

    def reset_seed(self, seed: int | None = None) -> None:
        self.generator.manual_seed(int(self.conf["seed"] if seed is None else seed))

    def forward(self, F: torch.Tensor, size1, size2, K2: torch.Tensor | None = None,
                ref_pixel: torch.Tensor | None = None) -> torch.Tensor:
        """F (B, 3, 3) in the pixel frames of images of ``size1`` / ``size2`` = (H, W); optional K2 (B, 3, 3)
        intrinsics of image 2; ``ref_pixel`` (B, 2) (default: uniform in image 1 from the seeded generator)."""
        if F.dim() != 3 or tuple(F.shape[1:]) != (3, 3):
            raise ShapeError(f"EpipolarPositionalEncoding: F must be (B, 3, 3), got {tuple(F.shape)}")
        B, s = F.shape[0], self.conf["grid"]
        if B == 0:
            return torch.zeros(0, 2 * s * s, self.conf["dim"])
        Fd = F.detach().to(torch.float64).cpu()
        if ref_pixel is None:
            u = torch.rand(B, 2, generator=self.generator, dtype=torch.float64)
            ref_pixel = u * Fd.new_tensor([size1[1], size1[0]]) - 0.5
        K2d = None if K2 is None else K2.detach().to(torch.float64).cpu()
        th1, th2 = epipolar_plane_angles(Fd, size1, size2, s, ref_pixel=ref_pixel.to(torch.float64).cpu(), K2=K2d)
        return angle_encoding(torch.cat((th1, th2), 1), self.conf["dim"]).float().to(F.device)
