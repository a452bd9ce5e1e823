"""Simulated sensors that ray-cast a :class:`~.scene.Scene`: a spinning LiDAR and a camera.

Frames: the LiDAR frame is x forward, y left, z up (REP-103 body frame); the
camera frame is the optical frame (x right, y down, z forward). Poses come in
as ``T_world_lidar`` / ``T_world_camera``; distances are metres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..geometry import CameraModel
from .lidar_models import LidarModel, raster_directions, rosette_directions, spinning_order
from .scene import Scene
from .textures import sky_radiance

# Vertical field of view (top, bottom) [deg] of common spinning LiDARs by beam count.
LIDAR_VFOV_DEG: dict[int, tuple[float, float]] = {
    16: (15.0, -15.0),    # VLP-16
    32: (10.0, -30.0),    # HDL-32E
    64: (2.0, -24.9),     # HDL-64E (KITTI)
    128: (15.0, -25.0),   # VLS-128
}

_GLASS_DROPOUT = 0.7       # chance a beam passes through glass without a return
_GRAZING_COS = 0.05        # below this |cos(incidence)| most returns are lost
_POSE_STEP_S = 1e-4        # a moving sweep is cast from one pose per this long
_SHADOW_OFFSET_M = 0.02    # shadow-ray origins lift off the surface by this much to avoid acne


@dataclass(frozen=True)
class LidarSpec:
    """A LiDAR: by default spinning, ``beams`` rows spread over ``vfov_deg`` (top, bottom), ``columns`` azimuths;
    ``pattern`` (:mod:`.lidar_models`) rosette or raster for the non-spinning kinds, whose geometry is then
    ``model``'s, and ``order`` the order a spinning sweep is published in (rows | columns).

    Ranges [m]: returns outside ``[min_range_m, max_range_m]`` are dropped;
    ``range_noise_m`` is the Gaussian range noise (1 sigma); ``dropout_prob``
    the chance any return is lost; ``intensity_noise`` the relative noise of
    the intensity; ``beam_jitter_deg`` how far each unit's beams sit off the
    nominal elevation grid (fixed per sensor, as real beams are);
    ``elevations_deg`` the nominal elevations of the beams when they are not
    spread evenly over ``vfov_deg`` (many sensors pack them near the horizon);
    ``foliage_free_path_m``: crowns and hedges are porous to the beams, which
    return from a depth inside them drawn with this mean free path, or pass
    through to what lies behind (0: solid foliage, every return on its skin).
    """

    beams: int
    columns: int
    vfov_deg: tuple[float, float]
    max_range_m: float
    min_range_m: float
    range_noise_m: float
    dropout_prob: float
    intensity_noise: float
    beam_jitter_deg: float = 0.05
    elevations_deg: tuple[float, ...] | None = None
    divergence_rad: float = 0.003
    foliage_free_path_m: float = 0.0
    pattern: str = "spinning"
    order: str = "rows"
    model: LidarModel | None = None


class Lidar:
    """Casts one sweep of a :class:`LidarSpec` sensor from a pose, or along a moving one (:meth:`scan`)."""

    def __init__(self, spec: LidarSpec, rng: np.random.Generator):
        self.spec = spec
        top, bottom = spec.vfov_deg
        nominal = np.linspace(top, bottom, spec.beams) if spec.elevations_deg is None else \
            np.asarray(spec.elevations_deg, np.float64)
        elev = np.radians(nominal + rng.uniform(-1, 1, spec.beams) * spec.beam_jitter_deg)
        self._elev = elev
        # Column k fires at azimuth pi - 2 pi (k + 0.5) / columns: the sweep starts behind and turns clockwise.
        self._az0 = np.pi - 2 * np.pi * (np.arange(spec.columns) + 0.5) / spec.columns

    def directions(self, phase: float = 0.0) -> np.ndarray:
        """Unit beam directions (beams * columns, 3) in the LiDAR frame, row-major by beam."""
        az = self._az0 + phase
        ce, se = np.cos(self._elev)[:, None], np.sin(self._elev)[:, None]
        d = np.stack([ce * np.cos(az), ce * np.sin(az), np.broadcast_to(se, (len(self._elev), len(az)))], -1)
        return d.reshape(-1, 3).astype(np.float32)

    def sweep_directions(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Unit beam directions (n, 3) of one sweep in the order the sensor publishes them, and when each fires
        (n,) as a fraction of the sweep in [0, 1)."""
        spec = self.spec
        if spec.pattern == "rosette":
            dirs = rosette_directions(spec.model, float(rng.uniform(0.0, 1000.0)))
            # time order, the emitters firing together
            return dirs, np.arange(len(dirs)) // spec.model.beams / (len(dirs) // spec.model.beams)
        if spec.pattern == "raster":
            dirs = raster_directions(spec.model, float(rng.uniform(0.0, 1.0)))
            return dirs, np.arange(len(dirs)) / len(dirs)                # line after line
        dirs = self.directions(rng.uniform(0.0, 2 * np.pi / spec.columns))
        # every beam of a column fires at once (a spinning head's firing), columns in turn from behind
        fraction = np.tile((np.arange(spec.columns) + 0.5) / spec.columns, len(self._elev))
        order = spinning_order(len(self._elev), spec.columns, spec.order)
        return (dirs, fraction) if order is None else (dirs[order], fraction[order])

    def scan(self, scene: Scene, T_world_lidar: np.ndarray, rng: np.random.Generator,
             pose_at: Callable[[float], np.ndarray] | None = None, sweep_s: float = 0.0
             ) -> tuple[np.ndarray, np.ndarray]:
        """One sweep: (N, 4) float32 ``x, y, z, intensity`` in the LiDAR frame, intensity in [0, 1], and each
        point's time (N,) float32 [s] from the sweep's start.

        At rest (``sweep_s`` 0, the default) every beam is cast from ``T_world_lidar``. With ``sweep_s`` > 0
        and ``pose_at`` (time from the sweep's start [s] -> ``T_world_lidar``) each beam is cast from where
        the sensor is when it fires, and its point is measured in the sensor frame of that instant, as a
        raw sweep of a moving sensor is (not motion-compensated).
        """
        spec = self.spec
        dirs, fraction = self.sweep_directions(rng)
        times = (fraction * sweep_s).astype(np.float32)
        rays = np.empty((len(dirs), 6), np.float32)
        if sweep_s > 0 and pose_at is not None:
            # one pose per 0.1 ms of the sweep: 3 mm at 30 m/s, under the range noise
            bins = np.round(times / _POSE_STEP_S).astype(np.int64)
            unique, which = np.unique(bins, return_inverse=True)
            poses = np.stack([pose_at(float(b) * _POSE_STEP_S) for b in unique]).astype(np.float32)
            rays[:, :3] = poses[which, :3, 3]
            rays[:, 3:] = np.einsum("nij,nj->ni", poses[which, :3, :3], dirs)
        else:
            R = T_world_lidar[:3, :3].astype(np.float32)
            rays[:, :3] = T_world_lidar[:3, 3]
            rays[:, 3:] = dirs @ R.T
        hit = scene.cast(rays)
        if spec.foliage_free_path_m > 0:
            # a stream of its own: the sweep's noise stays the one it has with solid foliage, so that a
            # comparison of the two differs only in the foliage
            hit = _porous_foliage(scene, rays, hit, spec.foliage_free_path_m, rng.spawn(1)[0])
        rng_m = hit["t_hit"]
        keep = np.flatnonzero((rng_m >= spec.min_range_m) & (rng_m <= spec.max_range_m))
        r = rng_m[keep]
        prim = hit["primitive_ids"][keep]
        uvw, normal = scene.surfaces.interpolate(prim, hit["primitive_uvs"][keep])
        surf = scene.surfaces.evaluate(prim, uvw, normal, r * spec.divergence_rad)
        cos_inc = np.abs(np.einsum("ij,ij->i", hit["primitive_normals"][keep], rays[keep, 3:]))
        intensity = surf.reflectivity * cos_inc * (1.0 + spec.intensity_noise * rng.standard_normal(len(keep), np.float32))
        lost = rng.random(len(keep), np.float32) < (
            spec.dropout_prob + _GLASS_DROPOUT * surf.gloss * (surf.gloss > 0.5)
            + 0.8 * (cos_inc < _GRAZING_COS))
        ok = ~lost
        r_noisy = r[ok] + spec.range_noise_m * rng.standard_normal(int(ok.sum()), np.float32)
        pts = np.empty((int(ok.sum()), 4), np.float32)
        pts[:, :3] = dirs[keep[ok]] * r_noisy[:, None]
        pts[:, 3] = np.clip(intensity[ok], 0.0, 1.0)
        return pts, times[keep[ok]]


def _porous_foliage(scene: Scene, rays: np.ndarray, hit: dict[str, np.ndarray], free_path_m: float,
                    rng: np.random.Generator, max_layers: int = 3) -> dict[str, np.ndarray]:
    """First returns of beams ``rays`` (n, 6) through porous foliage: a beam entering a crown (its first hit
    ``hit`` on a FOLIAGE triangle) returns from a depth inside it drawn from an exponential distribution of
    mean ``free_path_m`` [m], or, if that lies beyond the crown's far side, goes on to whatever is behind it
    (through at most ``max_layers`` crowns). An inside return keeps the entry's surface (for its intensity)
    at the drawn range. Real crowns scatter returns over their depth and let beams through their gaps,
    which is what makes LiDAR silhouettes of trees unlike their image outlines."""
    from .textures import Mat

    out = {k: v.copy() for k, v in hit.items()}
    valid = np.isfinite(out["t_hit"])
    active = np.flatnonzero(valid)
    active = active[scene.mesh.tri_material[out["primitive_ids"][active]] == Mat.FOLIAGE]
    for _ in range(max_layers):
        if not len(active):
            break
        entry = out["t_hit"][active]
        depth = rng.exponential(free_path_m, len(active)).astype(np.float32)
        # from just inside the crown: the next hit is its far side (the blobs are closed meshes)
        inside = rays[active].copy()
        inside[:, :3] += inside[:, 3:] * (entry + 1e-3)[:, None]
        thickness = scene.cast(inside)["t_hit"] + 1e-3
        stop = depth < thickness
        out["t_hit"][active[stop]] = entry[stop] + depth[stop]
        through = active[~stop]
        offset = entry[~stop] + thickness[~stop] + 1e-3     # just past the crown's far side
        beyond = rays[through].copy()
        beyond[:, :3] += beyond[:, 3:] * offset[:, None]
        behind = scene.cast(beyond)
        for key in ("primitive_ids", "primitive_uvs", "primitive_normals"):
            out[key][through] = behind[key]
        out["t_hit"][through] = behind["t_hit"] + offset    # inf stays inf: nothing behind
        again = np.isfinite(behind["t_hit"])
        again[again] = scene.mesh.tri_material[behind["primitive_ids"][again]] == Mat.FOLIAGE
        active = through[again]
    return out


class CameraRenderer:
    """Renders RGB images and depth of a scene through a :class:`CameraModel` (lens distortion included).

    Ray directions come from ``camera.unproject`` of every pixel centre, once;
    each frame casts them from the camera pose, shades the hits (sun with
    shadow rays, sky ambient, sky reflections on glass, aerial perspective)
    and applies exposure, tone curve, vignetting, a slight lens blur and
    sensor noise.
    """

    def __init__(self, camera: CameraModel, blur_sigma_px: float = 0.6, noise_sigma: float = 0.008,
                 noise_seed: int | list[int] = 0):
        self.camera = camera
        h, w = camera.height, camera.width
        vv, uu = np.mgrid[0:h, 0:w]
        uv = np.stack([uu.ravel(), vv.ravel()], 1).astype(np.float64)
        rays = camera.unproject(uv)  # z = 1: a hit distance along these rays is the optical-axis depth
        self._rays = rays.astype(np.float32)
        self._len = np.linalg.norm(rays, axis=1).astype(np.float32)
        self._vignette = ((1.0 / self._len) ** 1.5).astype(np.float32)  # mild natural vignetting (cos^4 is harsher than real lenses)
        self.blur_sigma_px = blur_sigma_px
        noise_rng = np.random.default_rng(noise_seed)
        self._noise = (255.0 * noise_sigma) * noise_rng.standard_normal((h + _NOISE_PAD, w + _NOISE_PAD, 3), np.float32)

    def render(self, scene: Scene, T_world_camera: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(image, depth)``: RGB uint8 (H, W, 3) and depth along the optical axis [m] (H, W), inf for sky.

        ``T_world_camera``: the camera's pose (4, 4), or one per image row (H, 4, 4), a rolling shutter's rows
        each exposed from where the camera was then."""
        cam = self.camera
        env = scene.env
        n = len(self._rays)
        rays = np.empty((n, 6), np.float32)
        T = np.asarray(T_world_camera, dtype=np.float64)
        if T.ndim == 2:
            R = T[:3, :3].astype(np.float32)
            rays[:, :3] = T[:3, 3]
            rays[:, 3:] = self._rays @ R.T
        else:
            if T.shape != (cam.height, 4, 4):
                raise ValueError(f"poses of shape {T.shape}: one (4, 4) or one per image row ({cam.height}, 4, 4)")
            rows = self._rays.reshape(cam.height, cam.width, 3)
            rays[:, :3] = np.repeat(T[:, :3, 3], cam.width, axis=0)
            rays[:, 3:] = np.einsum("hwj,hij->hwi", rows, T[:, :3, :3].astype(np.float32)).reshape(n, 3)
        hit = scene.cast(rays)
        depth = hit["t_hit"]
        idx = np.flatnonzero(np.isfinite(depth))
        view = rays[idx, 3:] / self._len[idx, None]  # unit directions towards the hits
        dist = depth[idx] * self._len[idx]
        prim = hit["primitive_ids"][idx]
        uvw, normal = scene.surfaces.interpolate(prim, hit["primitive_uvs"][idx])
        geo_n = hit["primitive_normals"][idx]
        # face both normals towards the camera: thin parts are seen from either side
        flip = np.einsum("ij,ij->i", geo_n, view) > 0
        geo_n[flip] *= -1
        cos_v = np.einsum("ij,ij->i", normal, view)
        normal[cos_v > 0] *= -1
        cos_v = np.abs(cos_v)
        footprint = dist / (cam.fx * np.maximum(cos_v, 0.15))
        surf = scene.surfaces.evaluate(prim, uvw, normal, footprint)
        # direct sun with shadow rays from the lit hits
        ndl = normal @ env.sun_dir
        lit = np.flatnonzero(ndl > 0)
        pos = rays[idx[lit], :3] + view[lit] * dist[lit, None]
        srays = np.empty((len(lit), 6), np.float32)
        srays[:, :3] = pos + geo_n[lit] * _SHADOW_OFFSET_M
        srays[:, 3:] = env.sun_dir
        sun = np.zeros(len(idx), np.float32)
        sun[lit] = ndl[lit] * ~scene.occluded(srays)
        # sky light from above, bounce light from the ground, blended by the normal's tilt
        nz = normal[:, 2:3]
        amb_mid = 0.55 * env.ambient_sky + 0.5 * env.ambient_ground
        amb_tilt = 0.45 * env.ambient_sky - 0.5 * env.ambient_ground
        color = surf.albedo * (sun[:, None] * env.sun_rgb + amb_mid + amb_tilt * nz)
        # glass and paint mirror the sky (Schlick's Fresnel approximation)
        glossy = np.flatnonzero(surf.gloss > 0)
        if len(glossy):
            c = cos_v[glossy]
            refl_dir = view[glossy] + (2.0 * c)[:, None] * normal[glossy]
            fresnel = 0.04 + 0.96 * (1.0 - c) ** 5
            k = (surf.gloss[glossy] * (0.25 + 0.75 * fresnel))[:, None]
            color[glossy] += (sky_radiance(env, scene.noise, refl_dir, clouds=False) - color[glossy]) * k
        # aerial perspective
        fog = (1.0 - np.exp(-dist / np.float32(env.fog_distance_m)))[:, None]
        color += (env.sky_horizon - color) * fog
        radiance = np.empty((n, 3), np.float32)
        radiance[idx] = color
        miss = np.flatnonzero(~np.isfinite(depth))
        if len(miss):
            radiance[miss] = sky_radiance(env, scene.noise, rays[miss, 3:] / self._len[miss, None])
        image = self._develop(radiance, env.exposure, rng)
        return image, depth.reshape(cam.height, cam.width)

    def _develop(self, radiance: np.ndarray, exposure: float, rng: np.random.Generator) -> np.ndarray:
        """Linear radiance (n, 3) -> 8-bit image: exposure, vignetting, lens blur, tone curve, noise.

        The blur acts on linear light, as a lens does. The tone curve (a soft
        shoulder, then gamma 1/2.2) is a lookup table indexed by the square root
        of the exposure, which keeps shadows finely quantised.
        """
        h, w = self.camera.height, self.camera.width
        x = (radiance * (exposure * self._vignette)[:, None]).reshape(h, w, 3)
        if self.blur_sigma_px > 0:
            x = cv2.GaussianBlur(x, (0, 0), self.blur_sigma_px)
        np.sqrt(x, out=x)
        x *= _LUT_SCALE
        idx = np.minimum(x.astype(np.int32), len(_TONE_LUT) - 1)
        img = _TONE_LUT[idx]
        # sensor noise: a random window of a fixed noise field (cheaper than fresh draws, same look)
        dy, dx = rng.integers(0, _NOISE_PAD, 2)
        img += self._noise[dy:dy + h, dx:dx + w]
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)


def _tone_lut(size: int, scale: float) -> np.ndarray:
    """8-bit value (float, +0.5 for rounding) of exposure ``(i / scale) ** 2``."""
    x = (np.arange(size, dtype=np.float64) + 0.5) / scale
    return (255.0 * (1.0 - np.exp(-x * x)) ** (1 / 2.2) + 0.5).astype(np.float32)


_LUT_SCALE = np.float32(1024.0)
_TONE_LUT = _tone_lut(4096, float(_LUT_SCALE))
_NOISE_PAD = 64
