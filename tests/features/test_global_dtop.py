import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relook.features import create_extractor, extract_to_store
from relook.models.dtop.multiscale import DEFAULT_SCALES, image_tensor, multiscale_descriptor, scales_for
from relook.store import FeatureStore

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


#: the 3 scales, written out: cirtorch's convention that DToP cites ([19, 52]) -- independent of the library's
#: two copies (multiscale.DEFAULT_SCALES, the dtop extractor's default conf), so a change to either fails here
SCALES = (1.0, 2**-0.5, 0.5)
MODEL = dict(backbone="timm:vit_tiny_patch16_224", pretrained=False, timm_kwargs={"depth": 1}, layers=1, out_dim=48)


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
    got = multiscale_descriptor(model, x)  # the default scale set
    with torch.no_grad():  # reference loop: resize, describe, average, normalise
        ref = sum(
            model(
                model.normalize(
                    F.interpolate(
                        x,
                        size=(max(32, round(90 * s)), max(32, round(128 * s))),
                        mode="bilinear",
                        align_corners=False,
                        antialias=s < 1,
                    )
                )
            )
            for s in SCALES
        )
    assert torch.allclose(got, F.normalize(ref, dim=-1), atol=1e-5)


def test_scale_set_is_pinned():
    """The multi-scale set lives in two places (``multiscale.DEFAULT_SCALES``, the ``dtop`` extractor's
    ``scales``): each is compared with the literal set, so changing one, or both at once, fails."""
    from relook.features.global_dtop import DToPExtractor

    assert pytest.approx(SCALES, abs=1e-12) == DEFAULT_SCALES and len(DEFAULT_SCALES) == 3
    assert DToPExtractor.default_conf["scales"] == pytest.approx(SCALES, abs=1e-12)
    assert scales_for("query") == pytest.approx(SCALES, abs=1e-12)


def _revisitop_fixture(root):
    """A 2-query / 3-image Revisited Oxford in the official layout (gnd_roxford5k.pkl + jpg/)."""
    import pickle

    from PIL import Image

    rng = np.random.default_rng(3)
    (root / "jpg").mkdir(parents=True)
    names = ["a", "b", "c"]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (70, 100, 3), dtype=np.uint8)).save(root / "jpg" / f"{n}.jpg")
    gnd = [
        {"bbx": [0, 0, 100, 70], "easy": [0], "hard": [], "junk": []},
        {"bbx": [0, 0, 100, 70], "easy": [1], "hard": [2], "junk": []},
    ]
    with open(root / "gnd_roxford5k.pkl", "wb") as f:
        pickle.dump({"imlist": names, "qimlist": ["a", "b"], "gnd": gnd}, f)
    return root


def test_role_switches(tmp_path):
    """Table A11 through `relook run`: with multiscale_query=False the query store holds single-scale
    descriptors and the gallery store 3-scale ones, each equal to a reference forward pass written here."""
    import yaml

    from relook.cli import main
    from relook.images import load_image
    from relook.models.dtop import DToP

    root = _revisitop_fixture(tmp_path / "rox")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": "roxford5k", "root": str(root)},
                "extractors": [
                    {"name": "dtop", "model": MODEL, "image_size": 64, "device": "cpu", "multiscale_query": False}
                ],
                "shortlist": {"k": 3},
                "out": str(tmp_path / "run"),
            }
        )
    )
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    model = DToP(**MODEL, seed=0).eval()  # the extractor's default seed

    def reference(image, scales):
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255
        f = 64 / max(x.shape[2:])
        x = F.interpolate(
            x, size=(round(x.shape[2] * f), round(x.shape[3] * f)), mode="bilinear", align_corners=False, antialias=True
        )
        with torch.no_grad():
            feats = [
                model(
                    model.normalize(
                        x
                        if s == 1
                        else F.interpolate(
                            x,
                            size=tuple(max(32, round(d * s)) for d in x.shape[2:]),
                            mode="bilinear",
                            align_corners=False,
                            antialias=True,
                        )
                    )
                )
                for s in scales
            ]
        return F.normalize(sum(feats) / len(feats), dim=-1)[0].numpy()

    feats = tmp_path / "run" / "features" / "dtop"
    with FeatureStore(feats / "queries.h5") as qs, FeatureStore(feats / "gallery.h5") as gs:
        img = load_image(root / "jpg" / "a.jpg", (0, 0, 100, 70), False)
        single, multi = reference(img, (1.0,)), reference(img, SCALES)
        assert not np.allclose(single, multi, atol=1e-3)  # the switch is visible on this image
        assert np.allclose(qs.read("q/a").global_desc, single, atol=1e-5)
        assert np.allclose(gs.read("a").global_desc, multi, atol=1e-5)
        assert qs.meta["extractor.role"] == "query" and gs.meta["extractor.role"] == "database"
    assert scales_for("database", multiscale_query=False) == pytest.approx(SCALES)
    assert scales_for("database", multiscale_database=False) == (1.0,)
