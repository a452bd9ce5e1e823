"""The pinhole views the estimator works in: undistortion, resizing, and wide lenses. numpy + OpenCV, no torch.

Every stage after decoding works on a pinhole image (edges, distance fields,
projection in the compiled kernels). A distorted image is remapped once to a
pinhole camera of the same size:

* ``plumb_bob`` (radial-tangential) lenses keep their ``K``: their field of
  view fits a pinhole image of the same focal length;
* ``equidistant`` (Kannala-Brandt fisheye) lenses see well past what a pinhole
  of their focal length holds (a 150 deg lens through its own K keeps the
  central ~110 deg at best, and its corners not at all): their pinhole view
  gets the focal length that keeps the lens's horizontal field up to
  ``max_half_fov_deg`` either side (60 deg: beyond it a pinhole stretches a
  degree over more pixels than the lens had, for nothing), the same
  principal point and the same pixel aspect (non-square pixels stay so).

Frames: the optical frame of the camera (x right, y down, z forward); pixels
with centres at integer coordinates, as in OpenCV.
"""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import CameraModel

MAX_HALF_FOV_DEG = 60.0


def pinhole_view(camera: CameraModel, max_half_fov_deg: float = MAX_HALF_FOV_DEG) -> CameraModel:
    """The pinhole camera (same image size) that ``camera``'s images are undistorted to; see the module doc."""
    if camera.model != "equidistant" or not camera.is_distorted:
        return CameraModel(camera.width, camera.height, camera.K)
    # the lens's horizontal half-fields at the image's left and right edges, on the principal row
    edges = np.array([[-0.5, camera.cy], [camera.width - 0.5, camera.cy]])
    rays = camera.unproject(edges)
    half = np.arctan(np.abs(rays[:, 0]))                 # z = 1 rays: the angle off the optical axis
    half = np.minimum(half, np.radians(max_half_fov_deg))
    # focal length [px] that puts those angles at the same image edges through a pinhole
    extent = np.array([camera.cx + 0.5, camera.width - 0.5 - camera.cx])
    fx = float(np.min(extent / np.tan(half)))
    fx = min(fx, camera.fx)                              # never magnify the lens's centre
    K = camera.K.copy()
    K[0, 0], K[1, 1], K[0, 1] = fx, fx * camera.fy / camera.fx, camera.K[0, 1] * fx / camera.fx
    return CameraModel(camera.width, camera.height, K)


class Undistorter:
    """Remaps distorted images to a pinhole camera (:func:`pinhole_view` by default, else the same K); the
    maps are cached per camera."""

    def __init__(self, keep_field_of_view: bool = True) -> None:
        self.keep_field_of_view = keep_field_of_view
        self._maps: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._valid: dict[tuple, np.ndarray | None] = {}

    def target(self, camera: CameraModel) -> CameraModel:
        """The pinhole camera images of ``camera`` come out in."""
        return pinhole_view(camera) if self.keep_field_of_view else CameraModel(camera.width, camera.height,
                                                                                 camera.K)

    def __call__(self, image: np.ndarray, camera: CameraModel) -> np.ndarray:
        """``image`` (H, W[, C]) of ``camera`` remapped to :meth:`target` (returned as is when undistorted)."""
        if not camera.is_distorted:
            return image
        map_x, map_y = self._maps_for(camera)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def valid_region(self, camera: CameraModel, margin_px: int = 3) -> np.ndarray | None:
        """(H, W) bool of the :meth:`target` image: the pixels whose source lies inside ``camera``'s image,
        less ``margin_px`` next to the rest (remapped pixels blend with the black fill up to a pixel from
        it); None where every pixel has one (no distortion, a barrel lens seen through its own K). A wide
        lens's pinhole view has black crescents whose outline is no edge of the scene."""
        if not camera.is_distorted:
            return None
        key = (*self._key(camera), margin_px)
        if key not in self._valid:   # once per camera, like the maps: every keyframe asks
            map_x, map_y = self._maps_for(camera)
            seen = (map_x >= -0.5) & (map_x <= camera.width - 0.5) & (map_y >= -0.5) \
                & (map_y <= camera.height - 0.5)
            self._valid[key] = None if seen.all() else cv2.erode(
                seen.astype(np.uint8), np.ones((2 * margin_px + 1,) * 2, np.uint8), borderType=cv2.BORDER_REPLICATE) > 0
        return self._valid[key]

    def _key(self, camera: CameraModel) -> tuple:
        return (camera.model, camera.width, camera.height, camera.K.tobytes(), camera.dist.tobytes(),
                self.keep_field_of_view)

    def _maps_for(self, camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        """The remap tables (source u, v of every target pixel, float32 (H, W) each) of ``camera``, cached."""
        key = self._key(camera)
        if key not in self._maps:
            size = (camera.width, camera.height)
            K_new = self.target(camera).K
            if camera.model == "equidistant":
                maps = cv2.fisheye.initUndistortRectifyMap(camera.K, camera.dist, np.eye(3), K_new, size,
                                                           cv2.CV_32FC1)
            else:
                maps = cv2.initUndistortRectifyMap(camera.K, camera.dist, None, K_new, size, cv2.CV_32FC1)
            self._maps[key] = maps
        return self._maps[key]


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K (3x3) after resizing by (sx, sy), pixel centres at integer coordinates: u -> s(u + 0.5) - 0.5."""
    K = np.array(K, dtype=np.float64)
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[0, 2] = sx * (K[0, 2] + 0.5) - 0.5
    K[1, 1] *= sy
    K[1, 2] = sy * (K[1, 2] + 0.5) - 0.5
    return K


def working_view(image: np.ndarray, camera: CameraModel, max_focal_px: float, valid: np.ndarray | None = None
                 ) -> tuple[np.ndarray, CameraModel, np.ndarray | None]:
    """``image`` (H, W[, C]) of pinhole ``camera`` and its ``valid`` mask (H, W) bool, downscaled (area
    averaging) so that the mean focal length is at most ``max_focal_px`` [px]; returned as they are when it
    already is (or ``max_focal_px`` <= 0).

    An objective whose finest scale is an angle needs a fixed number of pixels per degree, not the sensor's:
    a 2-4 K camera's full resolution costs edge detection time per keyframe (1 s at 4 K; the distance
    fields are stored per angular scale either way) and resolves nothing more."""
    focal = 0.5 * (camera.K[0, 0] + camera.K[1, 1])
    if max_focal_px <= 0 or focal <= max_focal_px:
        return image, camera, valid
    scale = max_focal_px / focal
    size = (max(int(round(camera.width * scale)), 1), max(int(round(camera.height * scale)), 1))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    K = scale_intrinsics(camera.K, size[0] / camera.width, size[1] / camera.height)
    if valid is not None:   # a pixel is seen when all it averages were
        valid = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.999
    return small, CameraModel(size[0], size[1], K), valid
