"""Enhanced locality module (ELM), Eq. (11) of DToP: U = ELM(Y) on the patch-token map Y (Eq. 8).

Three switchable parts (Table A10), applied in this order (the order is not in the recoverable text; it
follows the only public re-implementation): inverted residual block (IRB, MobileNetV2) -> atrous spatial
pyramid pooling (ASPP, DeepLab) -> WaveBlock (WB). All map (B, D, h, w) -> (B, D, h, w).

The paper cites the modules, not their sizes: IRB = MobileNetV2's inverted residual block [55], ASPP =
DeepLab's atrous spatial pyramid pooling [7]. Two readings are implemented (``READINGS``; the DToP
model's ``elm_reading``):

* ``cited`` (default): the cited modules as their papers define them.
  IRB: 1x1 to ``expansion`` x D channels + BN + ReLU6, 3x3 depth-wise + BN + ReLU6, 1x1 back to D + BN,
  identity shortcut, with MobileNetV2's expansion t = 6 (its Table 2; any ``expansion`` >= 1 is the cited
  block: an inverted residual widens). ASPP: DeepLab's five branches (1x1, three atrous 3x3 at ``rates``
  6/12/18, image pooling) to ``width`` = 256 channels each (DeepLab's width), each atrous conv depth-wise
  separable (DeepLabv3+), concatenated and projected back to D by 1x1 + BN + ReLU. At D = 768: IRB 7.1M,
  ASPP 2.0M parameters; at D = 384 (ViT-S): 1.8M and 1.0M.
* ``0.3m``: the reading that fits supplementary A.1's "the additional components of DToP have only 0.3M
  parameters" (at D = 768 one full-width 1x1 convolution alone has 0.59M, so no channel-mixing layer can
  be full width): IRB ``expansion`` 0.25 (a bottleneck, not an inverted residual: 0.30M at D = 768); ASPP
  (``width`` None) with every branch depth-wise (per-channel 1x1 scale, depth-wise atrous 3x3) + BN + ReLU6,
  the image-pooling branch parameter-free, the five maps averaged (24k at D = 768).

Either way the order is IRB -> ASPP -> WaveBlock (not in the recoverable text; it follows the only public
re-implementation). WaveBlock (Wang et al., Attentive WaveBlock): at training time a random horizontal band
of ``band`` x h rows is kept and the rest of the map is multiplied by ``factor``; identity at eval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: ELM readings: (IRB expansion, ASPP width) -- the cited modules, or the 0.3M-parameter reading (docstring)
READINGS: dict[str, tuple[float, int | None]] = {"cited": (6.0, 256), "0.3m": (0.25, None)}


def _conv_bn(cin: int, cout: int, k: int = 1, groups: int = 1, dilation: int = 1, act: bool = True) -> nn.Sequential:
    pad = dilation * (k // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual block at stride 1: x + project(depthwise(expand(x)))."""

    def __init__(self, dim: int, expansion: float = 6.0) -> None:
        super().__init__()
        hidden = max(1, int(round(dim * expansion)))
        self.body = nn.Sequential(
            _conv_bn(dim, hidden), _conv_bn(hidden, hidden, 3, groups=hidden), _conv_bn(hidden, dim, act=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, atrous 3x3 at ``rates``, image pooling, then merged.

    ``width`` None: depth-wise branches averaged (no channel mixing); int: separable branches to ``width``
    channels, concatenated and projected back to ``dim`` (see the module docstring).
    """

    def __init__(self, dim: int, width: int | None = 256, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.depthwise = width is None
        if self.depthwise:
            self.branches = nn.ModuleList(
                [_conv_bn(dim, dim, 1, groups=dim)] + [_conv_bn(dim, dim, 3, groups=dim, dilation=r) for r in rates]
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.project = None
            return
        self.branches = nn.ModuleList([_conv_bn(dim, width)])
        for r in rates:  # depth-wise separable atrous conv: dw 3x3 (dilation r) -> pw 1x1
            self.branches.append(nn.Sequential(_conv_bn(dim, dim, 3, groups=dim, dilation=r), _conv_bn(dim, width)))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, width, 1, bias=False), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(width * (len(rates) + 2), dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        if self.project is None:
            return torch.stack(outs).mean(0)
        return self.project(torch.cat(outs, dim=1))


class WaveBlock(nn.Module):
    """Training-time feature waving: keep a random band of rows, multiply the rest by ``factor``.

    The band start is drawn from ``generator`` (seedable) once per mini-batch element.
    """

    def __init__(self, band: float = 0.3, factor: float = 2.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.band, self.factor, self.generator = band, factor, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[2] == 0:
            return x
        b, _, h, _ = x.shape
        rows = max(1, int(round(self.band * h)))
        start = torch.randint(0, h - rows + 1, (b,), generator=self.generator).to(x.device)
        idx = torch.arange(h, device=x.device)
        keep = (idx[None] >= start[:, None]) & (idx[None] < start[:, None] + rows)  # (B, h)
        scale = torch.where(keep, torch.ones((), device=x.device), torch.full((), self.factor, device=x.device))
        return x * scale[:, None, :, None].to(x.dtype)


class ELM(nn.Module):
    """U = WB(ASPP(IRB(Y))) with each part switchable (a disabled part is the identity)."""

    def __init__(
        self,
        dim: int,
        irb: bool = True,
        aspp: bool = True,
        waveblock: bool = True,
        expansion: float = 6.0,
        aspp_width: int | None = 256,
        rates: Sequence[int] = (6, 12, 18),
        band: float = 0.3,
        factor: float = 2.0,
    ) -> None:
        super().__init__()
        self.irb = InvertedResidual(dim, expansion) if irb else nn.Identity()
        self.aspp = ASPP(dim, aspp_width, rates) if aspp else nn.Identity()
        self.wave = WaveBlock(band, factor) if waveblock else nn.Identity()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, D, h, w) -> U: (B, D, h, w)."""
        return self.wave(self.aspp(self.irb(y)))
