"""Turn one camera image and one LiDAR sweep into the network's input tensors (inference side).

Training crops every image to ``ModelConfig.image_height``; at inference the
whole field of view matters, so the image keeps its aspect ratio: it is
undistorted to a pinhole camera with the same K, resized to the network width
and its height rounded to the coarse stride (the network is fully
convolutional and its 2-D position encoding is absolute, so any height works).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import CrossI2PError
from ..geometry import CameraModel, finite_rows, transform_points
from ..camera_views import Undistorter, scale_intrinsics
from ..data.samples import in_view, sample_points
from ..model.config import ModelConfig


@dataclass(frozen=True)
class InputConfig:
    max_height_px: int = 512       # network image height cap (tall images are centre-cropped to this)
    view_margin_px: float = 32.0   # with a prior: keep points projecting this far outside the image too
    min_depth_m: float = 0.5
    min_points: int = 32           # fewer usable points than this: no estimate
    seed: int = 0                  # point subsampling is deterministic


@dataclass
class NetworkInput:
    image: torch.Tensor        # (1, 3, H, W) float RGB in [0, 1]
    points: torch.Tensor       # (1, N, 4) x y z [m] intensity, in the input frame (T_prior @ p_lidar)
    K: np.ndarray              # (3, 3) intrinsics of the network image [px]
    T_prior: np.ndarray        # T_input_lidar (T_LEVEL_CAMERA_LIDAR without a prior)
    num_valid_points: int      # finite, in-view points before subsampling


_undistort = Undistorter()

# Without a prior the network is shown the sweep in the frame it was trained on for that case: the i2p
# protocol's, a camera-like frame (x right, y down, z forward) a yaw about y and a horizontal shift away
# from the camera. For a LiDAR that follows REP 103 (x forward, y left, z up) that is this rotation, the
# level mount at heading 0 (``WindowEstimator.mount_hypotheses()[0]``); shown raw, with z up, the cloud
# is rotated 90 deg from anything the network has seen, and its proposals are noise.
T_LEVEL_CAMERA_LIDAR = np.array([[0.0, -1.0, 0.0, 0.0],
                                 [0.0, 0.0, -1.0, 0.0],
                                 [1.0, 0.0, 0.0, 0.0],
                                 [0.0, 0.0, 0.0, 1.0]])


def undistorted(image_rgb: np.ndarray, camera: CameraModel) -> tuple[np.ndarray, CameraModel]:
    """The image checked against its camera and undistorted, with the pinhole camera it now follows (the same
    K, or for a fisheye lens the pinhole view that keeps its field of view: :func:`..camera_views.pinhole_view`).

    Later stages given the pinhole camera do not undistort again (a no-op for pinhole models).
    """
    image = np.asarray(image_rgb)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 8 or image.shape[1] < 8:
        raise CrossI2PError(f"image of shape {image.shape}: expected an RGB (H, W, 3) or grey (H, W) image "
                            "of at least 8x8 pixels")
    if (image.shape[1], image.shape[0]) != (camera.width, camera.height):
        raise CrossI2PError(f"image is {image.shape[1]}x{image.shape[0]} but the camera model is "
                            f"{camera.width}x{camera.height}; pass the CameraInfo that belongs to this image")
    return _undistort(image, camera), _undistort.target(camera)


def valid_region(camera: CameraModel) -> np.ndarray | None:
    """The pixels of :func:`undistorted`'s image of ``camera`` that the lens saw (H, W) bool, or None: all."""
    return _undistort.valid_region(camera)


def network_image(image_rgb: np.ndarray, camera: CameraModel, mcfg: ModelConfig, cfg: InputConfig
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted, resized float image (H, W, 3) in [0, 1] and its pinhole K (pixel centres at integers)."""
    image, camera = undistorted(image_rgb, camera)
    h, w = image.shape[:2]
    stride = mcfg.coarse_stride
    new_w = mcfg.image_width
    new_h = max(stride, round(h * new_w / w))
    sx, sy = new_w / w, new_h / h
    interp = cv2.INTER_AREA if sx < 1.0 else cv2.INTER_LINEAR
    image = cv2.resize(image, (new_w, new_h), interpolation=interp).astype(np.float32) / np.float32(255.0)
    K = scale_intrinsics(camera.K, sx, sy)
    target_h = min(cfg.max_height_px, max(stride, (new_h // stride) * stride))
    oy = (new_h - target_h) // 2
    image = image[oy:oy + target_h]
    K[1, 2] -= oy
    return image, K


def prepare_input(image_rgb: np.ndarray, points_lidar: np.ndarray, camera: CameraModel, mcfg: ModelConfig,
                  cfg: InputConfig = InputConfig(), T_prior: np.ndarray | None = None,
                  device: torch.device | str = "cpu") -> NetworkInput | None:
    """Network input for one pair, or ``None`` when too few usable points remain.

    ``points_lidar`` (N, 3 or 4) [m] in the LiDAR frame; NaN/Inf rows are dropped.
    With ``T_prior`` (an initial ``T_camera_lidar``) the points are moved into the
    camera frame under the prior and only those in view are kept, so the network
    solves for the small correction ``T_camera_input``. Without it the whole sweep
    is moved by :data:`T_LEVEL_CAMERA_LIDAR` (the LiDAR is taken to be z up) and
    the network solves the i2p problem of its training.
    """
    image, K = network_image(image_rgb, camera, mcfg, cfg)
    pts = np.asarray(points_lidar, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise CrossI2PError(f"points of shape {pts.shape}: expected (N, 3) or (N, 4) x y z [intensity]")
    pts = pts[finite_rows(pts[:, :3])]
    intensity = pts[:, 3:4] if pts.shape[1] > 3 else np.zeros((len(pts), 1))
    intensity = np.nan_to_num(np.clip(intensity, 0.0, 1.0), nan=0.0)
    xyz = pts[:, :3]
    T = T_LEVEL_CAMERA_LIDAR if T_prior is None else np.asarray(T_prior, dtype=np.float64)
    xyz = transform_points(T, xyz)
    if T_prior is not None:
        keep = in_view(xyz, K, image.shape[1], image.shape[0], cfg.view_margin_px, cfg.min_depth_m)
        xyz, intensity = xyz[keep], intensity[keep]
    if len(xyz) < cfg.min_points:
        return None
    sampled = sample_points(np.concatenate([xyz, intensity], 1), mcfg.num_points, np.random.default_rng(cfg.seed))
    return NetworkInput(
        image=torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device),
        points=torch.from_numpy(sampled.astype(np.float32))[None].to(device),
        K=K, T_prior=T, num_valid_points=len(xyz))
