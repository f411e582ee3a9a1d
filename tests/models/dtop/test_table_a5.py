"""Table A5's hierarchical backbones wired into DToP: CvT-21 (transformers) and PiT-B (timm).

Parameter counts are taken on the meta device (no memory, no download) and compared with the numbers Table A5
prints (31M, 73M: the ImageNet classifiers as published); the token outputs of tiny random-init versions are
compared with the libraries' own forward passes.
"""

import pytest
import timm
import torch
from transformers import CvtConfig, CvtForImageClassification, CvtModel

from relook.errors import ConfigError
from relook.models.dtop import DToP
from relook.models.dtop.backbones import BACKBONES
from relook.models.dtop.table_a5 import CVT21, NAMES, PAPER_PARAMS_M, create_table_a5

PIT_TINY = {"base_dims": [8, 8, 8], "depth": [1, 1, 3], "heads": [1, 2, 2]}
CVT_TINY = {
    "depth": [1, 2, 3],
    "embed_dim": [16, 32, 48],
    "num_heads": [1, 2, 2],
}  # stage s needs depth > s (transformers)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_paper():
    assert set(NAMES) <= set(BACKBONES.names())
    with torch.device("meta"):
        pit = timm.create_model("pit_b_224")  # ImageNet-1k head, as counted in the paper
        pit_d = timm.create_model("pit_b_distilled_224")
        cvt = CvtForImageClassification(CvtConfig(**CVT21, num_labels=1000))
        ours_pit = create_table_a5("pit_b", False, 4, "bilinear")
        ours_cvt = create_table_a5("cvt21", False, 6, "bilinear")
    assert int(_count(pit) / 1e6) == PAPER_PARAMS_M["pit_b"] == 73
    assert int(_count(pit_d) / 1e6) in (73, 74)  # the distilled model adds a second head
    assert int(_count(cvt) / 1e6) == PAPER_PARAMS_M["cvt21"] == 31
    assert _count(ours_pit) == _count(pit) - (1024 * 1000 + 1000)  # the same network, classifier left out
    assert _count(ours_cvt) == _count(cvt) - (384 * 1000 + 1000)  # CvtModel + the classifier's LayerNorm
    assert ours_cvt.embed_dim == 384 and ours_pit.embed_dim == 1024


def test_pit_matches_reference():
    """The last layer's [CLS] (after the final norm) is what timm's own forward_features returns at 224 px."""
    m = create_table_a5("pit_b", False, 2, "bilinear", PIT_TINY, seed=1).eval()
    ref = timm.create_model("pit_b_224", num_classes=0, **PIT_TINY)
    ref.load_state_dict(m.vit.state_dict())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        prefix, patches = m(x)
        torch.testing.assert_close(prefix[:, -1], ref.eval().forward_features(x))
    assert prefix.shape == (2, 2, 1, 16) and patches.shape[:2] == (2, 2) and patches.shape[-1] == 16
    with torch.no_grad():  # any input size: the position grid follows (DPE)
        _, p2 = m(torch.randn(1, 3, 150, 190))
    assert p2.shape[2:4] != patches.shape[2:4]


def test_cvt_matches_reference():
    """Stage 3's last-layer [CLS] before the final LayerNorm is CvtModel's ``cls_token_value``; the patch grid
    is its ``last_hidden_state``."""
    m = create_table_a5("cvt21", False, 2, "none", CVT_TINY, seed=2).eval()
    ref = CvtModel(CvtConfig(**CVT_TINY), add_pooling_layer=False).eval()
    ref.load_state_dict(m.model.state_dict())
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        prefix, patches = m(x)
        out = ref(pixel_values=x)
        torch.testing.assert_close(prefix[:, -1], m.norm(out.cls_token_value))
        torch.testing.assert_close(patches[:, -1], m.norm(out.last_hidden_state.permute(0, 2, 3, 1)))
    assert prefix.shape == (2, 2, 1, 48) and patches.shape == (2, 2, 6, 8, 48)


@pytest.mark.parametrize("name,kw", [("pit_b", PIT_TINY), ("pit_b_distilled", PIT_TINY), ("cvt21", CVT_TINY)])
def test_dtop_runs_on_table_a5(name, kw):
    token = "dist" if name.endswith("distilled") else "cls"
    m = DToP(backbone=name, pretrained=False, timm_kwargs=kw, layers=2, out_dim=32, token=token).eval()
    with torch.no_grad():
        d = m(torch.randn(2, 3, 112, 140))
    assert d.shape == (2, 32) and torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-5)


def test_bad_input():
    with pytest.raises(ConfigError, match=r"layers k=5 must be in \[1, 3\]"):
        create_table_a5("pit_b", False, 5, "bilinear", PIT_TINY)
    with pytest.raises(ConfigError, match="cpe"):
        create_table_a5("cvt21", False, 1, "cpe", CVT_TINY)
    with pytest.raises(ConfigError, match="dist"):
        DToP(backbone="pit_b", pretrained=False, timm_kwargs=PIT_TINY, layers=2, token="dist")
