"""The ``lite0_vit`` hybrid (models/dtop/backbones.py): EfficientNet-Lite0 stem map as the ViT's patch tokens."""

import math

import torch
import torch.nn.functional as F

from relook.models.backbone import create_backbone
from relook.models.dtop import DToP
from relook.models.dtop.backbones import TokenBackbone
from relook.models.efficientnet_lite import LITE_MEAN, LITE_STD

SMALL_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def test_matches_reference():
    """Patch tokens = 1x1 projection of the pretrained (wheel) Lite0's own forward_features map, on a
    ceil(H/32) x ceil(W/32) grid, computed here from an independently created timm backbone."""
    bb = TokenBackbone("lite0_vit", pretrained=True, layers=1, dpe="none", timm_kwargs=SMALL_VIT, seed=0).eval()
    cnn, record, _ = create_backbone("tf_efficientnet_lite0", pretrained=True, num_classes=0)
    assert bb.weights_record.sha256 == record.sha256 and (bb.mean, bb.std) == (LITE_MEAN, LITE_STD)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 200, 330)
    with torch.no_grad():
        tokens, (h, w) = bb.embed(x)
        fmap = cnn.eval().forward_features(x)  # (2, 1280, h, w)
        proj = bb.vit.patch_embed.proj
        ref = F.conv2d(fmap, proj.weight, proj.bias).permute(0, 2, 3, 1)  # (2, h, w, 32)
    assert (h, w) == (math.ceil(200 / 32), math.ceil(330 / 32)) == tuple(fmap.shape[2:])
    assert tokens.shape == (2, 1 + h * w, 32)
    torch.testing.assert_close(tokens[:, 1:].reshape(2, h, w, 32), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tokens[:, 0], bb.vit.cls_token[0].expand(2, -1))


def test_stem_frozen():
    """A training step moves the ViT part, never the stem's weights or its BatchNorm statistics."""
    m = DToP(backbone="lite0_vit", pretrained=False, timm_kwargs=SMALL_VIT, layers=2, out_dim=16, seed=0)
    stem = m.backbone.vit.patch_embed.backbone
    before = {k: v.clone() for k, v in stem.state_dict().items()}
    vit_before = m.backbone.vit.blocks[0].attn.qkv.weight.clone()
    m.train()
    assert not stem.cnn.training and not any(p.requires_grad for p in stem.parameters())
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss = m(torch.randn(2, 3, 96, 128)).sum()
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in stem.state_dict().items())
    assert not torch.equal(vit_before, m.backbone.vit.blocks[0].attn.qkv.weight)


def test_seeded():
    a = DToP(backbone="lite0_vit", pretrained=False, timm_kwargs=SMALL_VIT, layers=1, out_dim=16, seed=3).eval()
    b = DToP(backbone="lite0_vit", pretrained=False, timm_kwargs=SMALL_VIT, layers=1, out_dim=16, seed=3).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
