import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relook.features import create_extractor, extract_to_store
from relook.models.dtop.multiscale import DEFAULT_SCALES, image_tensor, multiscale_descriptor, scales_for
from relook.store import FeatureStore


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


MODEL = dict(backbone="timm:vit_tiny_patch16_224", pretrained=False, timm_kwargs={"depth": 1}, layers=1,
             out_dim=48)


def test_smoke_store(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    items = []
    for i, (h, w) in enumerate([(60, 90), (80, 50)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        items.append((f"im{i}", p, None))
    torch.manual_seed(0)
    ex = create_extractor("dtop", model=MODEL, image_size=96, device="cpu")
    extract_to_store(ex, items, tmp_path / "f.h5", progress=False)
    with FeatureStore(tmp_path / "f.h5") as store:
        x = store.stack("global_desc", ["im0", "im1"])
        assert x.shape == (2, 48) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
        assert store.read("im1").image_size.tolist() == [80, 50]


def test_matches_reference_multiscale():
    torch.manual_seed(0)
    from relook.models.dtop import DToP

    model = DToP(**MODEL).eval()
    x = image_tensor(np.random.default_rng(1).integers(0, 255, (70, 100, 3), dtype=np.uint8), 128)
    assert x.shape == (1, 3, 90, 128)
    got = multiscale_descriptor(model, x, DEFAULT_SCALES)
    with torch.no_grad():  # reference loop: resize, describe, average, normalise
        ref = sum(model(model.normalize(F.interpolate(x, size=(max(32, round(90 * s)), max(32, round(128 * s))),
                                                        mode="bilinear", align_corners=False, antialias=s < 1)))
                  for s in DEFAULT_SCALES)
    assert torch.allclose(got, F.normalize(ref, dim=-1), atol=1e-5)


def test_role_switches():
    assert scales_for("query", multiscale_query=False) == (1.0,)
    assert scales_for("database", multiscale_query=False) == DEFAULT_SCALES
    assert scales_for("database", multiscale_database=False) == (1.0,)
