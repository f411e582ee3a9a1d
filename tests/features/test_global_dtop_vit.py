"""The ``dtop_vit`` extractor with the shipped DToP-on-ViT heads (checkpoints/dtop_vits14/): its descriptors of
real UKBench val images reproduce the ones the training path computed from cached trunk tokens (``check.json``,
written by experiments/dtop_vits14_export.py); the training-free rows; bad head files end in one line."""

import json
from pathlib import Path

import numpy as np
import pytest

from relook.errors import DataError
from relook.features import create_extractor
from relook.images import load_image
from relook.train.dtop_vit import retrieval_map
from tests.shared_data import shared

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "dtop_vits14"


@pytest.mark.parametrize("row", ["full", "fc_arcface", "dpe_off", "elm_cited"])
def test_matches_reference(row):
    """Image -> extractor (resize, 3 scales, trunk, heads) = cached tokens -> heads (the training path), on the
    first 8 UKBench val images: cosine matrix within fp16 rounding, and the same mAP."""
    check = json.loads((SHIPPED / row / "check.json").read_text())
    ex = create_extractor("dtop_vit", checkpoint=str(SHIPPED / row / "head.safetensors"), whiten=False)
    d = []
    for p in check["images"]:  # relative to the UKBench folder
        path = shared("multiview", "ukbench", *p.split("/"))
        d.append(ex.extract_one(path.name, load_image(path)).global_desc)
    d = np.stack(d)
    np.testing.assert_allclose(d @ d.T, np.array(check["cosine"]), atol=3e-3)
    assert retrieval_map(d, check["labels"]) == pytest.approx(check["mAP"], abs=1e-6)


def test_training_free_rows():
    """cls and gem rows are unit vectors of the trunk's width, different from each other."""
    img = load_image(sorted(shared("multiview", "ukbench", "images").rglob("*.jpg"))[0])
    cls = create_extractor("dtop_vit", pool="cls", scales=[1.0]).extract_one("a", img).global_desc
    gem = create_extractor("dtop_vit", pool="gem", scales=[1.0]).extract_one("a", img).global_desc
    assert cls.shape == gem.shape == (384,)
    assert np.linalg.norm(cls) == pytest.approx(1, abs=1e-5) and abs(float(cls @ gem)) < 0.99


def test_bad_input(tmp_path):
    bad = tmp_path / "head.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError) as e:
        create_extractor("dtop_vit", checkpoint=str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
