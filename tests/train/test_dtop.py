import json

import numpy as np
import pytest
from PIL import Image

from relook.errors import ConfigError
from relook.models.dtop.checkpoint import load_dtop
from relook.train.dtop import train_dtop

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


MODEL = dict(
    backbone="timm:vit_tiny_patch16_224",
    pretrained=False,
    timm_kwargs={"depth": 1},
    layers=1,
    out_dim=32,
    aspp_rates=[1, 2, 3],
)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    items, labels = [], []
    for c in range(3):
        base = rng.integers(0, 255, (3,))
        for v in range(4):
            h, w = [(48, 64), (64, 48), (56, 56), (40, 80)][v]
            img = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            p = root / f"c{c}_v{v}.png"
            Image.fromarray(img).save(p)
            items.append((p, None))
            labels.append(f"class{c}")
    return items, labels


def test_smoke_and_resume(images, tmp_path):
    items, labels = images
    conf = dict(model=MODEL, epochs=2, batch_size=4, max_size=32, num_groups=2, warmup_epochs=1)
    ckpt = train_dtop(conf, items, labels, tmp_path, progress=False)
    hist = json.loads((tmp_path / "history.json").read_text())["epoch_loss"]
    assert ckpt.exists() and len(hist) == 2 and np.isfinite(hist).all()
    assert (tmp_path / "config.yaml").exists()
    train_dtop({**conf, "epochs": 3}, items, labels, tmp_path, progress=False)  # resumes at epoch 2
    hist3 = json.loads((tmp_path / "history.json").read_text())["epoch_loss"]
    assert len(hist3) == 3 and hist3[:2] == hist
    model = load_dtop(ckpt)
    assert model.out_dim == 32 and not model.training
    from relook.features import create_extractor  # the extractor reads the trained checkpoint

    ex = create_extractor("dtop", checkpoint=str(ckpt), image_size=48, role="query", multiscale_query=False)
    assert ex.scales == (1.0,)
    feats = ex.extract_one("q", np.zeros((40, 60, 3), np.uint8))
    assert feats.global_desc.shape == (32,) and abs(np.linalg.norm(feats.global_desc) - 1) < 1e-5


def test_bad_input(images, tmp_path):
    items, labels = images
    with pytest.raises(ConfigError):
        train_dtop(dict(model=MODEL, sampling="random"), items, labels, tmp_path)
    with pytest.raises(ConfigError):
        train_dtop(dict(model=MODEL, training_set="imagenet"), items, labels, tmp_path)


def test_cli_help():
    from typer.testing import CliRunner

    from relook.cli import app

    res = CliRunner().invoke(app, ["train", "dtop", "--help"])
    assert res.exit_code == 0 and "ArcFace" in res.output
