"""DToP on the frozen DINOv2 ViT-S/14 trunk: the trunk's multi-layer tokens against timm's own forward, the
model with every DToP part disabled against timm's [CLS], the token memo, the head file (round trip, bad files).

The architecture is drawn from seed 0 (``pretrained=False``) and its layer scales (DINOv2 inits them at 1e-5,
so a random block is nearly the identity) set to 0.5, so that every block moves the tokens: the reference is
timm's ``forward_intermediates`` on the same module, so the test needs no weights file; fp16 rounding of the
trunk's outputs (``vit_trunk.py``) sets the tolerance. The token memo is emptied before each test.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relook.errors import ConfigError, DataError
from relook.models.dinov2_onnx import set_grid
from relook.models.dtop import DToP
from relook.models.dtop.head_checkpoint import head_state, load_dtop_head, save_dtop_head
from relook.models.dtop.vit_baselines import TrainingFreeViT
from relook.models.dtop.vit_trunk import MEMO, FrozenViTTrunk, TokenMemo

TOL = dict(rtol=4e-3, atol=4e-3)  # fp16 rounding of the trunk's tokens


@pytest.fixture(autouse=True)
def _empty_memo():
    MEMO.items.clear()
    yield
    MEMO.items.clear()


def _lively(trunk):
    """Layer scales 1e-5 -> 0.5 (module doc); returns the trunk."""
    for block in trunk.vit.blocks:
        block.ls1.gamma.data.fill_(0.5)
        block.ls2.gamma.data.fill_(0.5)
    return trunk


def _images(seed=0, h=56, w=42):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trunk():
    return _lively(FrozenViTTrunk(last_block=10, layers=6, dpe="bicubic", pretrained=False, seed=0))


def _timm_reference(trunk, x, blocks):
    """timm's forward_intermediates on the trunk's ViT with its grid set to the input (bicubic, as set_grid)."""
    import copy

    vit = copy.deepcopy(trunk.vit)
    set_grid(vit, tuple(x.shape[2:]), trunk.vit.pos_embed.detach())
    out = vit.forward_intermediates(x, indices=blocks, norm=True, return_prefix_tokens=True, intermediates_only=True)
    return [(p[:, 0], t.permute(0, 2, 3, 1)) for t, p in out]  # CLS (B, D), patches (B, h, w, D)


@torch.no_grad()
def test_matches_reference(trunk):
    """Each of the last k = 6 blocks (5..10, 0-based 4..9): CLS and patch tokens = timm's, normalised by the
    final LayerNorm; the trunk stops at block 10 (not 12)."""
    x = _images()
    prefix, patches = trunk(x)
    assert prefix.shape == (2, 6, 1, 384) and patches.shape == (2, 6, 4, 3, 384)
    ref = _timm_reference(trunk, x, [4, 5, 6, 7, 8, 9])
    for i, (cls, toks) in enumerate(ref):
        torch.testing.assert_close(prefix[:, i, 0], cls, **TOL)
        torch.testing.assert_close(patches[:, i], toks, **TOL)


@torch.no_grad()
def test_all_parts_disabled_equals_timm_cls(trunk):
    """DToP with k = 1, the global branch only and an identity FC is the L2-normalised [CLS] of block 10, and so
    is the training-free ``cls`` baseline."""
    x = _images(1)
    ((cls10, toks10),) = _timm_reference(trunk, x, [9])
    model = DToP(backbone="dinov2_s14_imgfocus", pretrained=False, layers=1, branches="global", out_dim=384,
                 dpe="bicubic")  # fmt: skip
    _lively(model.backbone)
    model.global_branch.fc.weight.copy_(torch.eye(384))
    model.global_branch.fc.bias.zero_()
    torch.testing.assert_close(model.eval()(x), F.normalize(cls10, dim=-1), **TOL)
    base = TrainingFreeViT("cls", 10, "bicubic", pretrained=False).eval()
    _lively(base.backbone)
    torch.testing.assert_close(base(x), F.normalize(cls10, dim=-1), **TOL)
    gem = TrainingFreeViT("gem", 10, "bicubic", pretrained=False).eval()
    _lively(gem.backbone)
    ref = toks10.flatten(1, 2).clamp_min(1e-6).pow(3).mean(1).pow(1 / 3)  # GeM p = 3, written out
    torch.testing.assert_close(gem(x), F.normalize(ref, dim=-1), **TOL)


@torch.no_grad()
def test_dpe_modes():
    """bilinear DPE (Eq. 2) = timm's forward with the 37x37 grid resized bilinearly to the input grid (written
    out here with F.interpolate); bicubic gives other tokens; none = timm's forward with no position embedding.
    The position embedding is set to N(0, 1) values so that the grids differ visibly."""
    import copy

    x = _images(2)
    pos = torch.randn(1, 1370, 384, generator=torch.Generator().manual_seed(7))
    trunks = {m: _lively(FrozenViTTrunk(10, 1, m, pretrained=False, seed=0)) for m in ("bilinear", "bicubic", "none")}
    for t in trunks.values():
        t.vit.pos_embed.data.copy_(pos)
    vit = copy.deepcopy(trunks["bilinear"].vit)
    grid = F.interpolate(pos[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2), size=(4, 3), mode="bilinear")
    vit.pos_embed = torch.nn.Parameter(torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 12, 384)], 1))
    vit.patch_embed.set_input_size(img_size=(56, 42))
    out = vit.forward_intermediates(x, indices=[9], norm=True, return_prefix_tokens=True, intermediates_only=True)
    torch.testing.assert_close(trunks["bilinear"](x)[0][:, 0, 0], out[0][1][:, 0], **TOL)
    torch.testing.assert_close(trunks["bilinear"](x)[1][:, 0], out[0][0].permute(0, 2, 3, 1), **TOL)
    assert not torch.allclose(trunks["bicubic"](x)[0], trunks["bilinear"](x)[0], **TOL)
    vit.pos_embed.data.zero_()
    out = vit.forward_intermediates(x, indices=[9], norm=True, return_prefix_tokens=True, intermediates_only=True)
    torch.testing.assert_close(trunks["none"](x)[0][:, 0, 0], out[0][1][:, 0], **TOL)


def test_bad_input():
    with pytest.raises(ConfigError, match="dpe"):
        FrozenViTTrunk(10, 6, "cpe", pretrained=False)
    with pytest.raises(ConfigError, match="layers"):
        FrozenViTTrunk(4, 6, "bilinear", pretrained=False)


@torch.no_grad()
def test_memo_exact_and_keyed_by_input(trunk, tmp_path):
    """A memo hit returns exactly what the miss returned; another input is another entry; the folder copy
    serves a fresh process's memo."""
    x, y = _images(3), _images(4)
    a = trunk(x)
    assert len(MEMO.items) == 1
    b = trunk(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = trunk(y)
    assert len(MEMO.items) == 2 and not torch.allclose(a[0], c[0])
    memo = TokenMemo(folder=tmp_path)
    memo.put("k", (a[0].half(), a[1].half()))
    fresh = TokenMemo(folder=tmp_path)
    assert torch.equal(fresh.get("k")[1], a[1].half())


def test_head_file_round_trip(tmp_path):
    """Only the heads are stored (no trunk tensor), fp16; loading gives the same descriptors as the model with
    fp16-rounded heads; the whitening comes back."""
    model = DToP(backbone="dinov2_s14_imgfocus", pretrained=False, layers=2, out_dim=64, elm_reading="0.3m").eval()
    w = (np.zeros(64, np.float32), np.eye(64, dtype=np.float32))
    path = save_dtop_head(tmp_path / "head.safetensors", model, w, {"note": "test"})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert not any(k.startswith("backbone.") for k in keys)
        assert all(f.get_tensor(k).dtype == torch.float16 for k in keys if "num_batches" not in k)
    loaded, w2 = load_dtop_head(path)
    for v in head_state(model).values():
        if v.is_floating_point():
            v.copy_(v.half().float())
    x = _images(5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(w2[1], w[1])


def test_bad_head_file(tmp_path):
    """Missing, truncated, foreign: one DataError line naming the file."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    for path, words in ((tmp_path / "nope.safetensors", "no such"), (bad, "not a readable"), (foreign, "not a relook")):
        with pytest.raises(DataError) as e:
            load_dtop_head(path)
        assert str(path) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)
