"""Helpers that write small files for the reader fixtures."""

import numpy as np


def write_jpg(path, seed=0, hw=(24, 32)):
    """A small random JPEG at ``path`` (parents created)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = (np.random.default_rng(seed).random((*hw, 3)) * 255).astype(np.uint8)
    path.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    return path


def corrupt(path):
    """Truncate a file to a few bytes (a corrupt JPEG / pickle)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(4, len(data) // 10)])
