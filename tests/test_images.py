"""``load_image`` on files written here, checked against pixel values computed by hand."""

import numpy as np
import pytest
from PIL import Image

from relook.errors import DataError
from relook.images import is_image_file, load_image
from tests.synthetic_images import huge_png

# 16-bit values and round(v / 257) worked out by hand: 1000/257 = 3.89 -> 4 (the high byte would give 3),
# 383/257 = 1.49 -> 1, 128/257 = 0.498 -> 0, 65535/257 = 255 (clipping at 255 would turn 2570 into 255)
SIXTEEN = [0, 2570, 65535, 1000, 383, 128]
EIGHT = [0, 10, 255, 4, 1, 0]


def _grey16(path):
    data = np.array([SIXTEEN], dtype="<u2")
    Image.frombytes("I;16", (len(SIXTEEN), 1), data.tobytes()).save(path)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_grey(tmp_path, suffix):
    path = _grey16(tmp_path / f"g16{suffix}")
    assert Image.open(path).mode.startswith("I;16")  # the file really is 16-bit
    img = load_image(path)
    assert img.dtype == np.uint8 and img.shape == (1, len(SIXTEEN), 3)
    assert img[0, :, 0].tolist() == EIGHT and (img == img[..., :1]).all()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_colour(tmp_path, suffix):
    import cv2

    rgb = np.array([[SIXTEEN[:3], SIXTEEN[3:]]], dtype=np.uint16)  # (1, 2, 3): R, G, B of two pixels
    path = tmp_path / f"c16{suffix}"
    cv2.imwrite(str(path), rgb[..., ::-1])  # OpenCV writes BGR
    img = load_image(path)
    assert img.shape == (1, 2, 3)
    assert img.reshape(-1).tolist() == EIGHT


def test_cmyk_jpeg(tmp_path):
    cmyk = (50, 100, 150, 60)
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), cmyk).save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    # R = (255 - C)(255 - K) / 255: (205 * 195) / 255 = 156.8, (155 * 195) / 255 = 118.5, (105 * 195) / 255 = 80.3
    expected = np.array([156.8, 118.5, 80.3])
    img = load_image(path).astype(np.float64)
    assert np.abs(img - expected).max() <= 2.0  # JPEG rounding


def test_exif_orientation(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)  # 16 high, 32 wide as stored in the file
    stored[:8, :16] = (255, 0, 0)  # red top-left quadrant
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: rotate 90 degrees clockwise to display
    path = tmp_path / "rot6.jpg"
    Image.fromarray(stored).save(path, quality=100, exif=exif.tobytes())
    img = load_image(path).astype(int)
    assert img.shape == (32, 16, 3)  # displayed upright: 32 high, 16 wide
    # clockwise: stored (row r, col c) -> displayed (row c, col 15 - r); the red block lands top-right
    assert (np.abs(img[2:14, 10:14] - (255, 0, 0)) <= 8).all()
    for rows, cols in ((slice(2, 14), slice(2, 6)), (slice(18, 30), slice(2, 6)), (slice(18, 30), slice(10, 14))):
        assert (img[rows, cols] <= 8).all()
    assert load_image(path, bbox=(8, 0, 16, 16)).astype(int).mean(axis=(0, 1))[0] > 240  # crop in upright pixels
    raw = load_image(path, exif_orientation=False).astype(int)  # benchmarks: the stored grid, boxes as stored
    assert raw.shape == (16, 32, 3) and (np.abs(raw[2:6, 2:14] - (255, 0, 0)) <= 8).all()


def test_datasets_choose_orientation(tmp_path):
    """Benchmarks read stored pixels (their boxes and cameras are in them); a user's folder reads upright."""
    from relook.datasets.base import RetrievalDataset

    assert RetrievalDataset("x", tmp_path, [], [], "labels").exif_orientation is False
    for g in ("a", "b"):
        (tmp_path / g).mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / g / f"{i}.png")
    from relook.datasets import load_dataset

    assert load_dataset("folder", tmp_path).exif_orientation is True


def test_palette_grey_alpha(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 150, 100] + [0] * 762)
    pal.putdata([0, 1])
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").reshape(-1).tolist() == [10, 20, 30, 200, 150, 100]
    Image.frombytes("LA", (2, 1), bytes([7, 255, 90, 0])).save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").reshape(-1).tolist() == [7, 7, 7, 90, 90, 90]  # alpha dropped
    Image.frombytes("L", (2, 1), bytes([3, 250])).save(tmp_path / "l.png")
    assert load_image(tmp_path / "l.png").reshape(-1).tolist() == [3, 3, 3, 250, 250, 250]
    Image.frombytes("1", (8, 1), bytes([0b10000000])).save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png")[0, :2, 0].tolist() == [255, 0]


def test_bad_input(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot decode"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="nope.png: image not found"):
        load_image(tmp_path / "nope.png")
    assert is_image_file("a/B.JPG") and is_image_file("x.tiff")
    assert not is_image_file("notes.txt") and not is_image_file(".hidden.jpg") and not is_image_file("groups.csv")


def test_huge_image_refused_in_one_line(tmp_path):
    """Pillow alone raises DecompressionBombError (a traceback in the CLI); relook refuses with the size
    and the limit, and the folder reader gives the same reason for skipping it."""
    from relook.images import image_problem

    path = huge_png(tmp_path / "huge.png")
    with pytest.raises(Image.DecompressionBombError):  # the failure relook must not let through
        Image.open(path)
    with pytest.raises(DataError, match=r"huge.png: 20000x10000 pixels \(200 megapixels\), over relook's limit") as e:
        load_image(path)
    assert "\n" not in str(e.value) and "MAX_PIXELS" in str(e.value)
    assert image_problem(path).startswith("20000x10000 pixels (200 megapixels), over relook's limit")
    assert Image.MAX_IMAGE_PIXELS == 89478485  # Pillow's own check is back in place for everyone else


def test_huge_jpeg_decoded_reduced(tmp_path, monkeypatch, caplog):
    """A JPEG over the pixel limit is decoded at the largest of 1/2, 1/4, 1/8 that fits, with one warning;
    the result matches Pillow's full decode downscaled by box filter, and a bbox is scaled with it."""
    import relook.images

    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((32, 32, 1))).astype(np.uint8)  # 384x512
    path = tmp_path / "big.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    monkeypatch.setattr(relook.images, "MAX_PIXELS", 20_000)  # 196,608 px: /4 -> 49,152 > 20,000; /16 fits
    with caplog.at_level("WARNING", logger="relook.images"):
        img = load_image(path)
    assert img.shape == (96, 128, 3) and "decoded at 1/4 scale (128x96)" in caplog.text
    reference = np.asarray(Image.open(path).convert("RGB").reduce(4), np.float64)
    assert np.abs(img - reference).mean() < 3.0
    crop = load_image(path, bbox=(64, 32, 192, 160))  # file pixels -> (16, 8, 48, 40) decoded
    assert crop.shape == (32, 32, 3) and np.array_equal(crop, img[8:40, 16:48])
    monkeypatch.setattr(relook.images, "MAX_PIXELS", 1_000)  # would need 1/16: refused
    with pytest.raises(DataError, match="more than 1/8 scale would be needed"):
        load_image(path)
