"""A textured synthetic two-view scene with exact cameras, for checking pseudo ground truth against exact F.

Built on ``relook.datasets.synthetic`` (objects, exact z-buffer renderer, look-at cameras): one object on
its textured ground, two cameras orbiting it ``delta_deg`` degrees apart. Synthetic data only. Used by
``benchmarks/pseudo_gt.py`` and as a test fixture (``tests/geometry/test_robust.py``, ``tests/test_cli_epipolar.py``);
no library code needs it.
"""

from __future__ import annotations

import numpy as np

from relook.datasets.synthetic import (
    Face,
    _smooth_field,
    look_at,
    make_object,
    procedural_texture,
    render,
    sample_surface,
)


def render_two_views(seed: int = 0, delta_deg: float = 30.0, size: int = 224, family: str = "stack"):
    """Returns (img1, img2) RGB uint8 (size, size, 3), cameras ((K, R, t), (K, R, t)) world-to-camera with
    pixel centres at integers, and object surface points (500, 3) in world coordinates."""
    rng = np.random.default_rng([seed, 11])
    faces = make_object(rng, family, lambda: procedural_texture(rng))
    g = 1.8
    faces.append(
        Face(
            np.array([-g, -g, -0.601]),
            np.array([2 * g, 0, 0.0]),
            np.array([0, 2 * g, 0.0]),
            procedural_texture(rng),
            1.0,
            tiles=3.0,
            is_object=False,
        )
    )
    f = size * 1.4
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    az0, el, dist = rng.uniform(0, 2 * np.pi), np.radians(25), 3.6
    cams, imgs = [], []
    for az in (az0, az0 + np.radians(delta_deg)):
        center = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        R, t = look_at(center, np.array([0.0, 0.0, -0.1]))
        bg = _smooth_field(rng, size, 3)
        img, _, _ = render(faces, K, R, t, (size, size), bg)
        cams.append((K.copy(), R, t))
        imgs.append((img * 255 + 0.5).clip(0, 255).astype(np.uint8))
    return imgs[0], imgs[1], cams, sample_surface(faces, rng, 500)
