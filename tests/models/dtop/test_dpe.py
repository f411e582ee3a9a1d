import pytest
import torch

from relook.errors import ShapeError
from relook.models.dtop.backbones import TokenBackbone
from relook.models.dtop.dpe import resize_pos_embed


def test_identity_at_pretrained_grid():
    pos = torch.randn(1, 1 + 6 * 4, 8)
    for mode in ("bilinear", "bicubic"):
        out = resize_pos_embed(pos, 1, (6, 4), (6, 4), mode)
        assert out is pos


def test_matches_reference_linear_field():
    """Bilinear resampling (align_corners=False) reproduces a linear field exactly inside the grid."""
    h0, w0, h, w = 6, 8, 9, 13
    i, j = torch.meshgrid(torch.arange(h0.__float__()), torch.arange(w0.__float__()), indexing="ij")
    field = torch.stack([2 * i + 0.5 * j, -j], -1).reshape(1, h0 * w0, 2)
    cls = torch.tensor([[[7.0, -7.0]]])
    out = resize_pos_embed(torch.cat([cls, field], 1), 1, (h0, w0), (h, w), "bilinear")
    assert torch.equal(out[:, :1], cls)
    grid = out[0, 1:].reshape(h, w, 2)
    for a in range(h):
        for b in range(w):
            si, sj = (a + 0.5) * h0 / h - 0.5, (b + 0.5) * w0 / w - 0.5
            if 0 <= si <= h0 - 1 and 0 <= sj <= w0 - 1:
                assert torch.allclose(grid[a, b], torch.tensor([2 * si + 0.5 * sj, -sj]), atol=1e-5)


def test_backbone_matches_timm():
    """At the pretrained grid the multi-layer tokens equal timm's own forward (last layer, normed)."""
    torch.manual_seed(0)
    bb = TokenBackbone("timm:vit_tiny_patch16_224", pretrained=False, layers=2, timm_kwargs={"depth": 2}).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        prefix, patches = bb(x)
        ref = bb.vit.forward_features(x)
    assert torch.allclose(prefix[:, -1, 0], ref[:, 0], atol=1e-5)
    assert torch.allclose(patches[:, -1].flatten(1, 2), ref[:, 1:], atol=1e-5)


def test_bicubic_matches_timm_resample():
    from timm.layers import resample_abs_pos_embed

    pos = torch.randn(1, 1 + 14 * 14, 16)
    ours = resize_pos_embed(pos, 1, (14, 14), (20, 30), "bicubic")
    ref = resample_abs_pos_embed(
        pos, new_size=(20, 30), old_size=(14, 14), num_prefix_tokens=1, interpolation="bicubic", antialias=False
    )
    assert torch.allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("mode", ["none", "cpe", "bilinear"])
def test_shapes(mode):
    bb = TokenBackbone(
        "timm:vit_tiny_patch16_224", pretrained=False, layers=2, dpe=mode, timm_kwargs={"depth": 2}
    ).eval()
    with torch.no_grad():
        prefix, patches = bb(torch.randn(2, 3, 48, 80))
    assert prefix.shape == (2, 2, 1, 192) and patches.shape == (2, 2, 3, 5, 192)


def test_bad_input():
    with pytest.raises(ShapeError):
        resize_pos_embed(torch.randn(1, 10, 4), 1, (3, 4), (5, 5))


def test_cpe_values():
    """CPE (CPVT's PEG): x + depth-wise 3x3 conv (zero padding 1, with bias) of the token grid, written out
    from the module's weight (D, 1, 3, 3) and bias as a sum over the nine shifted copies of the map."""
    import torch.nn.functional as F

    from relook.models.dtop.dpe import ConditionalPositionEncoding

    torch.manual_seed(0)
    cpe = ConditionalPositionEncoding(6).double()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)  # (B, h, w, D)
    xp = F.pad(x.permute(0, 3, 1, 2), (1, 1, 1, 1))  # (B, D, h+2, w+2)
    w, b = cpe.proj.weight[:, 0], cpe.proj.bias  # (D, 3, 3), (D,)
    conv = sum(
        xp[:, :, dy : dy + 4, dx : dx + 5] * w[None, :, dy, dx, None, None] for dy in range(3) for dx in range(3)
    )
    ref = x + (conv + b[None, :, None, None]).permute(0, 2, 3, 1)
    with torch.no_grad():
        torch.testing.assert_close(cpe(x), ref)
