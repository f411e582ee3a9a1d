"""Epipolar Positional Encoding (EPE), the explicit baseline of Sec. 3.4 of the epipolar paper (seed 002).

Each local token (a cell of the s x s grid of either image) is tagged with the angle of its epipolar plane
about the baseline, measured from the plane through a random reference pixel of image 1
(``relook.geometry.epipolar.epipolar_plane_angles``), frequency-encoded and added to the input tokens
through RRT's ``input_pe`` hook. Corresponding points of the two images get the same encoding.

Readings (written here because the paper gives no formula):

- Frequencies: "the frequency positional encoding [49, 83]" is the geometric (octave) family of NeRF
  ([49], Eq. (4): ``gamma(p) = (sin(2^0 pi p), cos(2^0 pi p), ..., sin(2^(L-1) pi p), cos(2^(L-1) pi p))``),
  applied to ``p = 2 theta / pi`` in [0, 2): channel pair k holds ``sin(2^(k+1) theta), cos(2^(k+1) theta)``,
  k = 0 .. L-1 (frequencies 2, 4, 8, ...). A plane has no orientation, so theta lives in [0, pi) and the
  encoding must be pi-periodic: integer powers of two keep it so (theta and theta + pi coincide), which the
  Transformer's [83] geometric frequencies ``1 / 10000^(2i/d)`` (not integers) would not. ``bands`` = L = 10
  as NeRF's positions (its Sec. 5.1): the finest period, pi / 2^9, is 1/512 of theta's range [0, pi),
  as NeRF's finest is of its coordinates' range [-1, 1].
  The 2L channels fill the first 2L of the token width (L <= dim / 2); the other channels get 0.
- The reference pixel is drawn uniformly in image 1 from a seeded generator: per training step from one
  stream; at reranking per pair from a generator seeded by (seed, query id, candidate id)
  (``pair_generator``), so a pair's encoding does not depend on the shortlist it sits in.
- F per pair (Sec. 5.2): training, matching pairs: ground truth (or reliable pseudo ground truth);
  non-matching pairs, training *and* test: a random rank-2 matrix; test, every pair: the pseudo ground
  truth from the images (``relook.geometry.robust``), never the cameras; where no F could be estimated, or
  the estimate fails the reliability rule of Sec. 5.2, a random rank-2 matrix is used.
  ``choose_fundamentals`` implements this rule.
- Without intrinsics (``K2=None``) the angle uses a nominal camera; see ``epipolar_plane_angles``.
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar

import torch
from torch import nn

from relook.config import merge_conf
from relook.errors import ConfigError, ShapeError
from relook.geometry.epipolar import epipolar_plane_angles, random_fundamental


def angle_encoding(theta: torch.Tensor, dim: int, bands: int = 10) -> torch.Tensor:
    """NeRF octave encoding (Eq. (4) of [49]) of epipolar-plane angles: theta (...,) -> (..., dim).

    With L = min(bands, dim / 2): channels ``2k, 2k+1`` = ``sin(2^(k+1) theta), cos(2^(k+1) theta)`` for
    k = 0 .. L-1 (pi-periodic); channels ``2L ..`` are 0.
    """
    if dim % 2 or dim < 2:
        raise ConfigError(f"angle_encoding: dim must be even and positive, got {dim}")
    if int(bands) < 1:
        raise ConfigError(f"angle_encoding: bands must be >= 1, got {bands}")
    L = min(int(bands), dim // 2)
    freq = 2.0 ** torch.arange(1, L + 1, dtype=theta.dtype, device=theta.device)
    a = theta[..., None] * freq
    enc = torch.stack((a.sin(), a.cos()), -1).flatten(-2)
    return torch.nn.functional.pad(enc, (0, dim - 2 * L))


def pair_generator(seed: int, id1: str, id2: str) -> torch.Generator:
    """A generator seeded by (seed, id1, id2): the random draws of one pair at reranking time."""
    return torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}\x00{id1}\x00{id2}".encode()))


def choose_fundamentals(
    is_match: torch.Tensor,
    F: torch.Tensor | None,
    available: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
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
        "dim": 128,  # token width of the RRT (d_model)
        "grid": 7,  # s: tokens form an s x s grid per image
        "seed": 0,  # seed of the reference-pixel generator (reset by ``reset_seed``)
        "bands": 10,  # L octaves 2^1 .. 2^L of theta (NeRF Eq. (4), L = 10 as its positions); at most dim/2
    }

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        self.conf = merge_conf(self.default_conf, conf, "EpipolarPositionalEncoding")
        if int(self.conf["bands"]) < 1:
            raise ConfigError(f"EpipolarPositionalEncoding: bands must be >= 1, got {self.conf['bands']}")
        self.generator = torch.Generator().manual_seed(int(self.conf["seed"]))

    def reset_seed(self, seed: int | None = None) -> None:
        self.generator.manual_seed(int(self.conf["seed"] if seed is None else seed))

    def forward(
        self, F: torch.Tensor, size1, size2, K2: torch.Tensor | None = None, ref_pixel: torch.Tensor | None = None
    ) -> torch.Tensor:
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
        return angle_encoding(torch.cat((th1, th2), 1), self.conf["dim"], self.conf["bands"]).float().to(F.device)
