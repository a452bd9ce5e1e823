"""Scan patterns of the synthetic sensor zoo: where each LiDAR of a kind points its beams in one sweep.

A pattern gives the unit beam directions of one sweep in the LiDAR frame
(x forward, y left, z up) in the order the sensor's driver publishes them;
:class:`.sensors.Lidar` casts them into the scene. Three kinds cover what
users mount (DESIGN.md, "Rigs and time"):

* ``spinning``: beams at fixed elevations turning about z (Velodyne, Ouster,
  Hesai, RoboSense). Published ring after ring (``rows``: KITTI, Ouster's
  organized image) or firing after firing (``columns``: Velodyne's and
  Hesai's packets, every beam at one azimuth, then the next azimuth).
* ``rosette``: a non-repetitive pattern of two counter-rotating prisms
  (Livox Avia-like), a flower of petals that precesses from sweep to sweep,
  so one 100 ms sweep covers only part of the field of view.
* ``raster``: a non-spinning long-range scanner (Luminar-type): lines swept
  across a ~120 deg field, the vertical mirror moving while a line is
  drawn, so a line's elevation drifts across it and no two points share a
  "ring"; lines are denser near the horizon.

Each kind's numbers are those of a real sensor where it is named after one
(datasheet field of view, beam layout, points per sweep at 10 Hz); the noise,
dropouts and range limits stay :class:`.sensors.LidarSpec`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The Velodyne VLP-32C's beam elevations [deg], top first: 0.33 deg apart near the horizon, up to 9.4 deg apart
# at the ends of its field of view
VLP32C_ELEVATIONS_DEG: tuple[float, ...] = (
    15.0, 10.333, 7.0, 4.667, 3.333, 2.333, 1.667, 1.333, 1.0, 0.667, 0.333, 0.0, -0.333, -0.667, -1.0, -1.333,
    -1.667, -2.0, -2.333, -2.667, -3.0, -3.333, -3.667, -4.0, -4.667, -5.333, -6.148, -7.254, -8.843, -11.31,
    -15.639, -25.0)
# The Hesai Pandar64's [deg], top first: 0.167 deg apart from +1.8 to -6 deg (where the Pandar64 of the real
# motorway drive in ../shared/data has its crisp 0.15-0.17 deg peaks), coarse towards the ends
PANDAR64_ELEVATIONS_DEG: tuple[float, ...] = (
    (15.0, 11.0, 8.0, 5.0, 3.0, 2.0)
    + tuple(float(v) for v in np.round(np.linspace(1.833, -6.0, 48), 3))
    + (-7.0, -8.0, -9.0, -10.0, -11.0, -12.0, -13.0, -14.0, -19.0, -25.0))
# named beam layouts (SynthConfig.lidar_elevations_deg; the benchmarks' --elevations)
LIDAR_ELEVATIONS_DEG: dict[str, tuple[float, ...]] = {"vlp32c": VLP32C_ELEVATIONS_DEG,
                                                      "pandar64": PANDAR64_ELEVATIONS_DEG}


@dataclass(frozen=True)
class LidarModel:
    """One kind of the zoo: ``pattern`` spinning | rosette | raster and its geometry.

    Spinning: ``beams`` x ``columns`` over ``vfov_deg`` (top, bottom) or at ``elevations_deg``, published in
    ``order`` rows | columns. Rosette: ``points`` per sweep over ``fov_deg`` (horizontal, vertical) from
    ``beams`` emitters. Raster: ``beams`` lines of ``columns`` points over ``fov_deg`` horizontally and
    ``vfov_deg`` (top, bottom).
    """

    pattern: str
    beams: int
    columns: int = 0
    vfov_deg: tuple[float, float] = (0.0, 0.0)
    elevations_deg: tuple[float, ...] | None = None
    order: str = "rows"
    points: int = 0
    fov_deg: tuple[float, float] = (0.0, 0.0)


LIDAR_MODELS: dict[str, LidarModel] = {
    # Velodyne HDL-64E as in KITTI; the generator's default sensor (SynthConfig without lidar_model)
    "hdl64": LidarModel("spinning", 64, 1024, (2.0, -24.9)),
    "vlp16": LidarModel("spinning", 16, 1800, (15.0, -15.0), order="columns"),
    "vlp32c": LidarModel("spinning", 32, 1800, (15.0, -25.0), VLP32C_ELEVATIONS_DEG, order="columns"),
    "os128": LidarModel("spinning", 128, 1024, (22.5, -22.5)),
    "pandar64": LidarModel("spinning", 64, 1800, (15.0, -25.0), PANDAR64_ELEVATIONS_DEG, order="columns"),
    # Livox Avia: 70.4 x 77.2 deg circular field, 6 emitters, 240 k points/s (24 k a 100 ms sweep)
    "avia": LidarModel("rosette", 6, points=24000, fov_deg=(70.4, 77.2)),
    # a long-range raster scanner: 120 x 25 deg, 64 lines a sweep, 0.1 deg along a line
    "raster": LidarModel("raster", 64, 1200, (5.0, -20.0), fov_deg=(120.0, 25.0)),
}

# The rosette's prism frequencies [Hz]: incommensurate, so the flower precesses and never repeats; petal tips
# pass at f1 + f2 = ~190 Hz, ~19 petals a sweep
_ROSETTE_F1, _ROSETTE_F2 = 110.3, 79.1
_ROSETTE_EMITTER_STEP_DEG = 0.9   # the emitters' spacing across the pattern


def _unit(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Unit directions (n, 3) float32 from azimuth (left of +x) and elevation [rad]."""
    ce = np.cos(el)
    return np.stack([ce * np.cos(az), ce * np.sin(az), np.sin(el)], -1).astype(np.float32)


def rosette_directions(model: LidarModel, start_s: float, sweep_s: float = 0.1) -> np.ndarray:
    """Beam directions (points, 3) of one rosette sweep from time ``start_s`` [s] in the pattern, time order
    (the emitters interleaved, as they fire together)."""
    per = model.points // model.beams
    t = start_s + np.arange(per) * (sweep_s / per)
    # two counter-rotating prisms deflect by the sum of two unit phasors: |p| <= 1, through the centre each petal
    p = 0.5 * (np.exp(2j * np.pi * _ROSETTE_F1 * t) + np.exp(-2j * np.pi * _ROSETTE_F2 * t))
    offsets = (np.arange(model.beams) - (model.beams - 1) / 2) * np.radians(_ROSETTE_EMITTER_STEP_DEG)
    half_h, half_v = np.radians(model.fov_deg[0]) / 2, np.radians(model.fov_deg[1]) / 2
    az = np.broadcast_to(half_h * p.real[:, None], (per, model.beams))
    el = half_v * p.imag[:, None] + offsets[None, :]
    return _unit(az.ravel(), el.ravel())


def raster_line_elevations(model: LidarModel) -> np.ndarray:
    """Start elevation [rad] (beams,) of each raster line, top first: denser near the horizon (a square-root
    warp of an even spread, the horizon at the field's upper third)."""
    top, bottom = np.radians(model.vfov_deg[0]), np.radians(model.vfov_deg[1])
    u = np.linspace(-1.0, 1.0, model.beams)
    warped = np.sign(u) * np.abs(u) ** 1.6
    horizon = 0.0 if bottom < 0.0 < top else 0.5 * (top + bottom)
    return np.where(warped >= 0, horizon - warped * (horizon - bottom), horizon - warped * (top - horizon))


def raster_directions(model: LidarModel, phase: float) -> np.ndarray:
    """Beam directions (beams * columns, 3) of one raster sweep, line after line, lines drawn alternately
    right-to-left and left-to-right; ``phase`` in [0, 1) shifts every line's start by that part of a column.

    The vertical mirror keeps moving while a line is drawn: a line's elevation moves from its own start
    towards the next line's across the field, so elevations spread evenly and form no rings.
    """
    el0 = raster_line_elevations(model)
    el1 = np.r_[el0[1:], 2 * el0[-1] - el0[-2]]
    u = (np.arange(model.columns) + phase) / model.columns          # progress along the line
    half = np.radians(model.fov_deg[0]) / 2
    az = half - 2 * half * u                                        # left to right (azimuth falls)
    az = np.where((np.arange(model.beams) % 2 == 1)[:, None], -az[None, :], az[None, :])
    el = el0[:, None] + (el1 - el0)[:, None] * u[None, :]
    return _unit(az.ravel(), el.ravel())


def spinning_order(beams: int, columns: int, order: str) -> np.ndarray | None:
    """Index array putting a row-major (beam, column) sweep into the driver's ``order``; None: rows as they are."""
    if order == "rows":
        return None
    return np.arange(beams * columns).reshape(beams, columns).T.ravel()
