"""``combined``: locals of one extractor + global_desc of another in one store, checked against each
extractor run alone on real photos, through the store stage (provenance, refusal of another part)."""

import numpy as np
import pytest

from relook.errors import ConfigError, DataError
from relook.features import create_extractor, extract_to_store
from relook.store import FeatureStore
from tests.real_geometry import GEOMETRY
from tests.shared_data import shared

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

LOCALS = {"name": "sift", "num_features": 200, "max_image_size": 320}
GLOBAL = {"name": "cnn_local", "image_size": 128, "write_patch_tokens": False}  # pretrained Lite0 (wheel)
IMAGES = [
    ("graf1", GEOMETRY / "oxford_graf_affnet/img1.png", None),
    ("graf3", GEOMETRY / "oxford_graf_affnet/img3.png", None),
    ("church", GEOMETRY / "hpatches_subset_tfeat/v_churchill/1.png", (200.0, 150.0, 500.0, 420.0)),
]


def _alone(conf):
    from relook.images import load_image

    ex = create_extractor(conf["name"], **{k: v for k, v in conf.items() if k != "name"})
    return {i: ex.extract_one(i, load_image(p, b)) for i, p, b in IMAGES}


def test_store_holds_each_part_as_extracted_alone(tmp_path):
    shared("geometry")  # real photos: skips without ../shared/data (fails under CI)
    ex = create_extractor("combined", locals=LOCALS, **{"global": GLOBAL}, batch_size=2)
    path = extract_to_store(ex, IMAGES, tmp_path / "c.h5", progress=False)
    loc, glo = _alone(LOCALS), _alone(GLOBAL)
    with FeatureStore(path, "r") as st:
        for i, _, _ in IMAGES:
            f = st.read(i)
            np.testing.assert_array_equal(f.local_desc, loc[i].local_desc)  # SIFT's, not the CNN's grid
            np.testing.assert_array_equal(f.keypoints, loc[i].keypoints)
            np.testing.assert_array_equal(f.image_size, loc[i].image_size)
            np.testing.assert_allclose(f.global_desc, glo[i].global_desc, atol=1e-6)
            assert f.local_desc.shape[0] > 49
        meta = st.meta
    assert meta["extractor"] == "combined" and meta["extractor.locals"] == "sift"
    assert meta["extractor.global"] == "cnn_local" and "EfficientNet-Lite0" in meta["global.weights"]
    assert "locals sift" in meta["weights"] and "global cnn_local" in meta["weights"]
    # another locals extractor may not be mixed into the store; nothing in it changes
    before = path.read_bytes()
    other = create_extractor("combined", locals={**LOCALS, "num_features": 100}, **{"global": GLOBAL})
    with pytest.raises(DataError, match="extractor.locals.num_features"):
        extract_to_store(
            other, IMAGES + [("graf2", GEOMETRY / "oxford_graf_affnet/img2.png", None)], path, progress=False
        )
    assert path.read_bytes() == before


def test_bad_parts():
    with pytest.raises(ConfigError, match="locals must be an extractor config"):
        create_extractor("combined", **{"global": GLOBAL})
    with pytest.raises(ConfigError, match="does not write global_desc"):
        create_extractor("combined", locals=LOCALS, **{"global": LOCALS})
    with pytest.raises(ConfigError, match="does not write local_desc"):
        create_extractor(
            "combined",
            locals={
                "name": "dtop",
                "model": {
                    "backbone": "timm:vit_tiny_patch16_224",
                    "pretrained": False,
                    "timm_kwargs": {"depth": 1},
                    "layers": 1,
                },
            },
            **{"global": GLOBAL},
        )
