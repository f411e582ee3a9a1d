import pytest
import torch

from relook.errors import ConfigError
from relook.models.dtop import DToP
from relook.models.dtop.backbones import BACKBONES, timm_name

TINY = dict(backbone="timm:vit_tiny_patch16_224", pretrained=False, timm_kwargs={"depth": 2}, layers=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DToP(**TINY).eval()


@pytest.mark.parametrize("size", [(224, 224), (320, 480), (512, 384)])
def test_shapes(tiny, size):
    with torch.no_grad():
        y = tiny(torch.randn(1, 3, *size))
    assert y.shape == (1, 1536)  # default head: two 768-d branch vectors
    assert torch.allclose(y.norm(dim=1), torch.ones(1), atol=1e-5)


def test_hybrid_any_size():
    m = DToP(
        backbone="timm:vit_tiny_r_s16_p8_224", pretrained=False, timm_kwargs={"depth": 2}, layers=2, out_dim=64
    ).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 160, 256))
    assert y.shape == (2, 64) and torch.allclose(y.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize(
    "conf,dim",
    [
        (dict(branches="global", out_dim=768), 768),
        (dict(branches="local", fusion="none_wo_elm", out_dim=768), 768),
        (dict(combine="fc", out_dim=512), 512),
        (dict(fusion="concat", pooling="gem", out_dim=128), 128),
    ],
)
def test_variants(conf, dim):
    m = DToP(**{**TINY, **conf}).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, 96, 128))
    assert y.shape == (1, dim) and not torch.isnan(y).any()
    if conf.get("fusion") == "none_wo_elm":
        assert m.local_branch.elm is None


def test_distillation_token():
    m = DToP(
        backbone="timm:deit_tiny_distilled_patch16_224",
        pretrained=False,
        timm_kwargs={"depth": 1},
        layers=1,
        token="dist",
        out_dim=32,
    ).eval()
    assert m.global_branch.token_index == 1
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 96)).shape == (1, 32)


# What the DToP paper states about its backbones (supplementary A.1 and the notes' Sec. 2): R50+ViT-B has 98M
# parameters, ViT-B 86M; both D = 768 with 12 encoder layers and 16-pixel tokens; DeiT-B distilled adds a
# distillation token. (name, params in millions, prefix tokens, hybrid CNN stem)
PAPER_BACKBONES = [
    ("r50_vit_b", 98, 1, True),
    ("vit_b16", 86, 1, False),
    ("deit_b", 86, 1, False),
    ("deit_b_distilled", 86, 2, False),
]


@pytest.mark.parametrize("name,millions,prefix,hybrid", PAPER_BACKBONES)
def test_registry(name, millions, prefix, hybrid):
    """Each registered backbone name builds the network the paper describes, checked against the paper's own
    figures (parameter count, width, depth, token stride), not against the registry's table: built on the meta
    device (no memory, no weights), as DToP uses it (timm classifier removed)."""
    with torch.device("meta"):
        m = DToP(backbone=name, pretrained=False)
    b = m.backbone
    assert round(sum(p.numel() for p in b.parameters()) / 1e6) == millions
    assert b.embed_dim == 768 and len(b.vit.blocks) == 12 and b.num_prefix == prefix
    assert b.has_dist == (prefix == 2)
    side = max(b.pretrained_grid) * 16  # 16-pixel tokens: the pretraining resolution over the grid is 16
    assert side == b.vit.patch_embed.img_size[0] and side in (224, 384)
    assert (type(b.vit.patch_embed).__name__ == "HybridEmbed") == hybrid
    assert name in BACKBONES.names()


def test_default_is_the_papers_model():
    """The default DToP is the paper's: R50+ViT-B (98M), k = 6 layers (Table A8), N = 1536 (Table A7)."""
    with torch.device("meta"):
        m = DToP(pretrained=False)  # default backbone, layers and out_dim
    assert DToP.default_conf["pretrained"] is True and m.backbone.name == "r50_vit_b"
    assert round(sum(p.numel() for p in m.backbone.parameters()) / 1e6) == 98
    assert m.backbone.layers == 6 and m.out_dim == 1536


def test_bad_input():
    with pytest.raises(ConfigError):
        DToP(**{**TINY, "token": "dist"})  # no distillation token
    with pytest.raises(ConfigError):
        DToP(**{**TINY, "out_dim": 15})
    with pytest.raises(ConfigError):
        DToP(**{**TINY, "layers": 3})  # deeper than the backbone
    with pytest.raises(ConfigError):
        DToP(**{**TINY, "fusion": "bogus"})
    with pytest.raises(ConfigError):
        timm_name("r50_vit")


def test_parameter_budget():
    """Supplementary A.1: the components DToP adds to ViT-B (D = 768, k = 6, N = 1536) have 0.3M parameters
    under ``elm_reading: 0.3m``; the cited modules (the default) have what MobileNetV2's IRB (t = 6) and
    DeepLab's projected ASPP (256 wide) have, written out here layer by layer.

    Counted from the whole model: everything outside the backbone, less the two output FCs to N/2 = 768
    (the head every model of Table A5 carries), whose size is written out here by hand."""
    d, hid, w = 768, 6 * 768, 256
    irb = d * hid + 2 * hid + 9 * hid + 2 * hid + hid * d + 2 * d  # 1x1+BN, dw 3x3+BN, 1x1+BN
    sep = 9 * d + 2 * d + d * w + 2 * w  # one separable atrous branch: dw 3x3 + BN, 1x1 + BN
    aspp = (d * w + 2 * w) + 3 * sep + d * w + (5 * w * d + 2 * d)  # 1x1, 3 atrous, pooling 1x1, project
    for reading, expected in (("0.3m", None), ("cited", irb + aspp)):
        m = DToP(backbone="timm:vit_base_patch16_224", pretrained=False, timm_kwargs={"depth": 6}, elm_reading=reading)
        assert m.backbone.embed_dim == 768 and m.conf["layers"] == 6 and m.out_dim == 1536
        total = sum(p.numel() for p in m.parameters())
        backbone = sum(p.numel() for p in m.backbone.parameters())
        head = (768 * 768 + 768) + (2 * 768 * 768 + 768)  # global FC D -> N/2, local FC 2D (orthogonal) -> N/2
        added = total - backbone - head
        if expected is None:
            assert round(added / 1e6, 1) == 0.3
        else:
            assert added == expected and round(added / 1e6, 1) == 9.1
        assert m.added_parameters()["added"] == added and m.added_parameters()["head"] == head


def test_elm_readings():
    """``cited`` (default) builds an inverted residual (hidden wider than D) and a projected ASPP; ``0.3m``
    a bottleneck and a depth-wise averaged ASPP, overriding the two keys; a saved config's explicit keys
    are kept under ``cited``; an unknown reading is refused."""
    kw = {"backbone": "timm:vit_small_patch16_224", "pretrained": False, "timm_kwargs": {"depth": 2}, "layers": 2}
    cited = DToP(**kw).local_branch.elm
    assert cited.irb.body[0][0].out_channels == 6 * 384 and cited.aspp.project is not None
    assert cited.aspp.branches[0][0].out_channels == 256
    small = DToP(**kw, elm_reading="0.3m", irb_expansion=6, aspp_width=256).local_branch.elm
    assert small.irb.body[0][0].out_channels == 96 and small.aspp.project is None
    saved = DToP(**kw, irb_expansion=0.25, aspp_width=None).local_branch.elm
    assert saved.irb.body[0][0].out_channels == 96 and saved.aspp.project is None
    with pytest.raises(ConfigError, match="elm_reading"):
        DToP(**kw, elm_reading="0.5m")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_global_branch_combines_last_k_blocks(k):
    """The multi-layer CLS (Eq. 5) is built from exactly the last k transformer blocks: forward hooks on every
    block catch its output, and the vector the global FC receives must be the mean over blocks depth-k..depth-1
    of their [CLS] token after the backbone's final LayerNorm (backbones.py: every collected layer goes through
    it). Off-by-one layer selection (k+1 or k-1 layers, or the first k) gives a different vector."""
    depth = 4
    m = DToP(
        backbone="timm:vit_tiny_patch16_224", pretrained=False, timm_kwargs={"depth": depth}, layers=k, out_dim=32
    ).eval()
    outs, fc_in = {}, {}
    hooks = [
        blk.register_forward_hook(lambda mod, inp, out, i=i: outs.__setitem__(i, out.detach().clone()))
        for i, blk in enumerate(m.backbone.vit.blocks)
    ]
    hooks.append(m.global_branch.fc.register_forward_pre_hook(lambda mod, inp: fc_in.__setitem__("x", inp[0])))
    try:
        with torch.no_grad():
            m(torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1)))
    finally:
        for h in hooks:
            h.remove()
    assert sorted(outs) == list(range(depth))
    norm = m.backbone.vit.norm
    with torch.no_grad():
        cls = [norm(outs[i])[:, 0] for i in range(depth)]  # (B, D) per block
    expected = torch.stack(cls[depth - k :], 1).mean(1)
    torch.testing.assert_close(fc_in["x"], expected, rtol=1e-5, atol=1e-6)
    wrongs = [cls[depth - k - 1 :], cls[:k]] + ([cls[depth - k + 1 :]] if k > 1 else [])  # k+1, first k, k-1
    for wrong in wrongs:  # the alternatives really differ, so the check above can tell them apart
        assert not torch.allclose(fc_in["x"], torch.stack(wrong, 1).mean(1), atol=1e-4)
