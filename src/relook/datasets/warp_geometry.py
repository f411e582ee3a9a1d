"""The geometry of a warped view (``relook.datasets.warp``): explicit 3x3 matrices and their composition.

Pure functions of numbers, no pixels: ``ViewGeometry.homography()`` is ``H_0_k = Crop @ Resize @ G`` with
``G = T(c) T(shift) S(scale) R(rotation) P(tilt) T(-c)`` (``c``: view 0's centre), so the H written next
to every view can be checked by hand (see the warp module docstring for the steps and conventions:
pixel centres at integer coordinates, as in OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relook.geometry.pixel_maps import apply_h, resize_matrix, scaling, translation

MAX_DRAWS = 100  # geometry draws per view before falling back to a plain crop


# ----------------------------------------------------------------------------------------------- matrices
def rotation(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about the origin (counter-clockwise on screen, y pointing down)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def tilt(angle: float, axis: float, focal: float) -> np.ndarray:
    """Homography of a plane facing the camera turned by ``angle`` radians about the in-plane axis of
    direction ``axis`` (radians), seen by a camera of focal length ``focal`` pixels: ``K R K^-1``
    (centred coordinates), followed by the translation that keeps the origin in place."""
    u = np.array([np.cos(axis), np.sin(axis), 0.0])
    ux = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    R = np.eye(3) + np.sin(angle) * ux + (1 - np.cos(angle)) * ux @ ux  # Rodrigues
    K = np.diag([focal, focal, 1.0])
    H = K @ R @ np.linalg.inv(K)
    centre = H @ np.array([0.0, 0.0, 1.0])
    H = translation(-centre[0] / centre[2], -centre[1] / centre[2]) @ H
    return H / H[2, 2]


@dataclass
class ViewGeometry:
    """The drawn geometry of one view; ``homography`` composes it (module docstring, steps 1-3)."""

    tilt_deg: float  # plane turned out of the image plane
    tilt_axis_deg: float  # direction of the axis it turns about
    rotation_deg: float  # in-plane rotation
    scale: float  # zoom about the centre
    shift: tuple[float, float]  # translation in view-0 pixels
    frame_wh: tuple[int, int]  # size of the frame the geometry maps into (view 0's size)
    render_wh: tuple[int, int]  # the frame resized so that the crop's long side is the output size
    crop: tuple[int, int, int, int]  # x0, y0, width, height sliced out of the resized frame = the view's size

    def geometric(self) -> np.ndarray:
        """``G``: view-0 pixels -> frame pixels (step 1)."""
        w, h = self.frame_wh
        c = translation((w - 1) / 2, (h - 1) / 2)
        G = (
            c
            @ translation(*self.shift)
            @ scaling(self.scale)
            @ rotation(np.radians(self.rotation_deg))
            @ tilt(np.radians(self.tilt_deg), np.radians(self.tilt_axis_deg), float(max(w, h)))
            @ np.linalg.inv(c)
        )
        return G / G[2, 2]

    def render_matrix(self) -> np.ndarray:
        """``Resize @ G``: view-0 pixels -> pixels of the resized frame (what ``render_view`` warps by)."""
        M = resize_matrix(self.frame_wh, self.render_wh) @ self.geometric()
        return M / M[2, 2]

    def homography(self) -> np.ndarray:
        """``H_0_k = Crop @ Resize @ G``: view-0 pixel coordinates -> view-k pixel coordinates."""
        H = translation(-self.crop[0], -self.crop[1]) @ self.render_matrix()
        return H / H[2, 2]

    @property
    def out_wh(self) -> tuple[int, int]:
        """The view's size (width, height)."""
        return self.crop[2], self.crop[3]


def keeps_most(
    H: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int], keep: float = 0.6, cover: float = 0.7, n: int = 24
) -> bool:
    """Whether the view keeps at least ``keep`` of the photo (grid of view-0 points landing inside the view,
    all in front of the camera) and is at least ``cover`` photo (grid of view points whose preimage lies in
    view 0)."""

    def grid(wh):
        xs, ys = np.linspace(0, wh[0] - 1, n), np.linspace(0, wh[1] - 1, n)
        return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)

    def inside(p, wh):
        return (p[:, 0] >= 0) & (p[:, 0] <= wh[0] - 1) & (p[:, 1] >= 0) & (p[:, 1] <= wh[1] - 1)

    src = grid(src_wh)
    if np.any(np.c_[src, np.ones(len(src))] @ H[2] <= 0):
        return False  # part of the photo would fold behind the camera
    return (
        inside(apply_h(H, src), dst_wh).mean() >= keep
        and inside(apply_h(np.linalg.inv(H), grid(dst_wh)), src_wh).mean() >= cover
    )


def draw_geometry(rng: np.random.Generator, view0_wh: tuple[int, int], size: int) -> ViewGeometry:
    """One view's geometry: tilt <= 35 deg, rotation +-30 deg, scale in [0.75, 1.35] (log-uniform),
    shift +-8 % of the long side, a crop keeping 80-100 % of each side, resized to long side ``size``.
    Redrawn until ``keeps_most``; after ``MAX_DRAWS`` draws, the crop alone (no warp)."""
    w, h = view0_wh
    geo = None
    for _ in range(MAX_DRAWS):
        fx, fy = rng.uniform(0.8, 1.0, 2)
        r = size / max(fx * w, fy * h)  # the crop's long side becomes ``size``
        render = (max(1, int(round(w * r))), max(1, int(round(h * r))))
        cw, ch = min(render[0], max(1, int(round(fx * w * r)))), min(render[1], max(1, int(round(fy * h * r))))
        x0, y0 = int(rng.integers(0, render[0] - cw + 1)), int(rng.integers(0, render[1] - ch + 1))
        geo = ViewGeometry(
            tilt_deg=float(rng.uniform(0, 35)),
            tilt_axis_deg=float(rng.uniform(0, 360)),
            rotation_deg=float(rng.uniform(-30, 30)),
            scale=float(np.exp(rng.uniform(np.log(0.75), np.log(1.35)))),
            shift=tuple(float(v) for v in rng.uniform(-0.08, 0.08, 2) * max(w, h)),
            frame_wh=(w, h),
            render_wh=render,
            crop=(x0, y0, cw, ch),
        )
        if keeps_most(geo.homography(), view0_wh, geo.out_wh):
            return geo
    return ViewGeometry(0.0, 0.0, 0.0, 1.0, (0.0, 0.0), geo.frame_wh, geo.render_wh, geo.crop)
