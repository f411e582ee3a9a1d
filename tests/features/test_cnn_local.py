"""cnn_local extractor: grid geometry, pooling, seeded projection, learned weights."""

import numpy as np
import pytest
import torch

from relook.errors import ConfigError, DataError
from relook.features import create_extractor
from relook.features.cnn_local import CNNLocalNet, gem, grid_keypoints

CONF = {"arch": "resnet10t", "pretrained": False, "image_size": 64, "local_dim": 16}


def _img(h=96, w=128, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_shapes():
    ex = create_extractor("cnn_local", **CONF)
    f = ex.extract_one("a", _img()).validate()
    assert f.local_desc.shape == (4, 16) and f.keypoints.shape == (4, 2)  # 64 px / stride 32 -> 2x2
    assert f.patch_tokens.shape == (2, 2, 16) and f.global_desc.shape == (512,)
    assert f.image_size.tolist() == [96, 128]
    np.testing.assert_allclose(np.linalg.norm(f.global_desc), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(f.patch_tokens.reshape(4, 16), f.local_desc)


def test_matches_reference():
    # keypoints: cell centres in original pixels, row-major, hand computed for a 2x2 grid of 96x128
    np.testing.assert_allclose(grid_keypoints(2, 2, 96, 128), [[32, 24], [96, 24], [32, 72], [96, 72]])
    # GeM with p=1 is the average; large p tends to the max
    x = torch.rand(2, 3, 4, 5) + 0.1
    torch.testing.assert_close(gem(x, 1.0), x.mean(dim=(-2, -1)))
    assert torch.allclose(gem(x, 200.0), x.amax(dim=(-2, -1)), rtol=0.05)
    # the projection is a 1x1 conv: locals == W @ backbone features + b
    net = CNNLocalNet("resnet10t", False, 16).eval()
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = net(img)
        fmap = net.backbone.forward_features((img - net.mean) / net.std)[0].flatten(1).T  # (4, 512)
        ref = fmap @ net.proj.weight[:, :, 0, 0].T + net.proj.bias
        torch.testing.assert_close(out["local"][0], ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["attention"][0], fmap.norm(dim=1))


def test_seeded():
    a = CNNLocalNet("resnet10t", False, 16, projection_seed=1).proj.weight
    b = CNNLocalNet("resnet10t", False, 16, projection_seed=1).proj.weight
    c = CNNLocalNet("resnet10t", False, 16, projection_seed=2).proj.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_learned_weights(tmp_path):
    torch.manual_seed(0)
    net = CNNLocalNet("resnet10t", False, 16, projection_seed=7)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    f1 = create_extractor("cnn_local", **CONF, weights=str(tmp_path / "w.pt")).extract_one("a", _img())
    torch.manual_seed(1)
    f2 = create_extractor("cnn_local", **CONF, weights=str(tmp_path / "w.pt")).extract_one("a", _img())
    np.testing.assert_allclose(f1.local_desc, f2.local_desc, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError):
        create_extractor("cnn_local", **{**CONF, "local_dim": 8}, weights=str(tmp_path / "w.pt"))


def test_bad_input():
    with pytest.raises(ConfigError):
        create_extractor("cnn_local", **CONF, global_pool="max")
    with pytest.raises(DataError):
        create_extractor("cnn_local", **CONF).extract_one("a", np.zeros((10, 10), np.uint8))


def test_eval_resize_center_crop_matches_reference():
    """Official SOP test preprocessing (resize 256 x 256, centre crop 224): the features are those of the
    hand-made crop, and each keypoint is its cell's centre mapped back to the original image."""
    import cv2
    import torch

    from relook.features.cnn_local import CNNLocal, to_tensor

    img = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    ex = CNNLocal(arch="resnet10t", pretrained=False, eval_resize=256, image_size=224, write_patch_tokens=False)
    f = ex.extract_one("x", img)
    crop = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)[16:240, 16:240]
    with torch.inference_mode():
        ref = ex.net(to_tensor(crop, None)[None])
    np.testing.assert_allclose(f.local_desc, ref["local"][0].numpy(), atol=1e-5)
    # cell (r, c) of the 7x7 crop grid: centre 16 + 32 (c + 0.5) in the 256 frame (continuous coordinates),
    # i.e. x = that * 400 / 256, y = that * 300 / 256 in the original
    r, c = np.divmod(np.arange(49), 7)
    want = np.stack([(16 + 32 * (c + 0.5)) * 400 / 256, (16 + 32 * (r + 0.5)) * 300 / 256], 1)
    np.testing.assert_allclose(f.keypoints, want, atol=1e-3)
    assert tuple(f.image_size) == (300, 400)


def test_learned_head(tmp_path):
    """``projection: HEAD`` (relook train global): locals = W f + b and global = L2norm(W GeM_3(f) + b),
    written out by hand from the backbone map; the store's provenance names the head's sha256."""
    from relook.models.global_head import GlobalHead, save_global_head
    from relook.weights import file_sha256

    head = GlobalHead(512, 16, gem_p=3.0, seed=5)
    with torch.no_grad():
        head.proj.bias.normal_()
    path = save_global_head(
        tmp_path / "head.pt",
        head,
        {"arch": "resnet10t", "weights": "random init, seed 0", "weights_sha256": "", "train": {"epochs": 0}},
    )
    ex = create_extractor("cnn_local", **CONF, projection=str(path))
    img = _img()
    f = ex.extract_one("a", img)
    with torch.no_grad():
        from relook.features.cnn_local import to_tensor

        x = to_tensor(img, 64)[None]
        fmap = ex.net.backbone.forward_features((x - ex.net.mean) / ex.net.std)[0].flatten(1).T.double()  # (4, 512)
        w, b = head.proj.weight[:, :, 0, 0].double(), head.proj.bias.double()
        g = (fmap.clamp(min=1e-6) ** 3).mean(0) ** (1 / 3) @ w.T + b
    np.testing.assert_allclose(f.local_desc, (fmap @ w.T + b).numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(f.global_desc, (g / g.norm()).numpy(), atol=1e-5)
    assert ex.provenance["head.sha256"] == file_sha256(path) and f.global_desc.shape == (16,)
