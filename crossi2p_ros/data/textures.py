"""Surface appearance of the synthetic scenes: materials, procedural textures, sky.

Everything here is evaluated per ray hit, vectorised over hits, from the hit
triangle's material and object and the interpolated texture coordinates
(``u, v`` in metres on the surface, ``w`` an auxiliary value, see
:mod:`.meshes`). One evaluation gives both what the camera sees (albedo,
glossiness) and what the LiDAR sees (reflectivity at its near-infrared
wavelength), so image edges (lane paint, windows, signs) are also LiDAR
intensity edges, as on a real street.

Colours are linear RGB albedo in [0, 1]; the renderer applies light, tone
mapping and gamma. Thin patterns are box-filtered over the pixel footprint
``fp`` [m] (the surface width one sample covers), so distant bricks and
window grids fade to their mean colour instead of aliasing.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .meshes import MeshArrays


class Mat(IntEnum):
    """Surface materials; a triangle carries one."""

    TERRAIN = 0    # ground off the road; obj_param[0]: 0 grass, 1 paving, 2 gravel/dirt
    ASPHALT = 1    # road surface with lane paint (uv = arc length s, lateral offset d)
    SIDEWALK = 2   # concrete slabs (uv = s, d)
    CURB = 3
    FACADE = 4     # obj_param: kind, floor_h, win_w, win_h, spacing, height, ground_h, shop
    ROOF = 5       # obj_param[0]: 0 flat, 1 tiles
    BARK = 6
    FOLIAGE = 7
    CAR_PAINT = 8
    CAR_CABIN = 9  # glass with painted pillars and roof
    TIRE = 10
    METAL = 11
    SIGN = 12      # obj_param: shape (0 plate, 1 round), height [m]
    CONCRETE = 13  # obj_param[0]: panel length [m]
    PLASTIC = 14
    WOOD = 15      # obj_param[0]: 0 horizontal boards, 1 vertical boards
    GUARDRAIL = 16


N_MATERIALS = len(Mat)

# Facade kinds (obj_param[0] of FACADE objects).
PLASTER, BRICK, PANELS, CURTAIN_WALL, SIDING = range(5)

# Near-infrared reflectivity per material (what a 905 nm LiDAR's intensity follows).
_REFLECTIVITY = np.zeros(N_MATERIALS, np.float32)
for _m, _r in {Mat.TERRAIN: 0.5, Mat.ASPHALT: 0.2, Mat.SIDEWALK: 0.4, Mat.CURB: 0.4, Mat.FACADE: 0.5,
               Mat.ROOF: 0.3, Mat.BARK: 0.4, Mat.FOLIAGE: 0.6, Mat.CAR_PAINT: 0.45, Mat.CAR_CABIN: 0.4,
               Mat.TIRE: 0.08, Mat.METAL: 0.55, Mat.SIGN: 0.95, Mat.CONCRETE: 0.45, Mat.PLASTIC: 0.4,
               Mat.WOOD: 0.45, Mat.GUARDRAIL: 0.7}.items():
    _REFLECTIVITY[_m] = _r
_PAINT_REFLECTIVITY = 0.9  # lane paint carries glass beads: retro-reflective
_GLASS_REFLECTIVITY = 0.04


def srgb(hex_or_rgb: str | tuple[int, int, int]) -> np.ndarray:
    """Linear-RGB albedo from an sRGB colour (``"#rrggbb"`` or 0..255 triple)."""
    if isinstance(hex_or_rgb, str):
        h = hex_or_rgb.lstrip("#")
        hex_or_rgb = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    return (np.asarray(hex_or_rgb, np.float32) / 255.0) ** 2.2


# --------------------------------------------------------------------------- noise


class Noise:
    """Tileable value-noise tables drawn from a seeded generator.

    ``fbm(u, v)``: smooth fractal noise, zero mean and unit standard deviation,
    one table cell per unit of (u, v), features from 1 to 64 cells.
    ``cell(i, j)``: one uniform [0, 1) value per integer cell (per-brick,
    per-window, per-slab variation). Both tile every 256 units.
    """

    SIZE = 256

    def __init__(self, rng: np.random.Generator):
        n = self.SIZE
        table = np.zeros((n, n), np.float32)
        ii, jj = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(n, dtype=np.float32), indexing="ij")
        for octave, cells in enumerate((4, 8, 16, 32, 64, 128, 256)):
            grid = rng.standard_normal((cells, cells)).astype(np.float32)
            table += 0.62 ** (6 - octave) * _bilinear_wrap(grid, ii * cells / n, jj * cells / n)
        table -= table.mean()
        table /= table.std()
        self._fbm = table.ravel()
        self._cell = rng.random(n * n, dtype=np.float32)

    def fbm(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return _bilinear_wrap(self._fbm, u, v, self.SIZE)

    def cell(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        mask = self.SIZE - 1
        i = np.asarray(i).astype(np.int64) & mask
        j = np.asarray(j).astype(np.int64) & mask
        return self._cell[i * self.SIZE + j]


def _bilinear_wrap(table: np.ndarray, u: np.ndarray, v: np.ndarray, n: int | None = None) -> np.ndarray:
    """Bilinear lookup in a square table (2-D, or raveled with side ``n``), wrapping at the edges."""
    if n is None:
        n = table.shape[0]
        table = table.ravel()
    fu = np.floor(u)
    fv = np.floor(v)
    tu = (u - fu).astype(np.float32)
    tv = (v - fv).astype(np.float32)
    i0 = fu.astype(np.int64) & (n - 1)
    j0 = fv.astype(np.int64) & (n - 1)
    i1 = (i0 + 1) & (n - 1)
    j1 = (j0 + 1) & (n - 1)
    i0 *= n
    i1 *= n
    a = table[i0 + j0]
    b = table[i1 + j0]
    c = table[i0 + j1]
    d = table[i1 + j1]
    top = a + (b - a) * tu
    return top + (c + (d - c) * tu - top) * tv


# --------------------------------------------------------------------------- pattern helpers


def _stripe(x: np.ndarray, half: np.ndarray | float, fp: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of the band ``|x| < half``, box-filtered over footprint ``fp``."""
    return np.clip((half - np.abs(x)) / fp + 0.5, 0.0, 1.0)


def _lines(x: np.ndarray, period: np.ndarray | float, half: float, fp: np.ndarray) -> np.ndarray:
    """Coverage of thin lines at multiples of ``period``, fading to their mean density when unresolved."""
    r = x - period * np.round(x / period)
    cov = _stripe(r, half, fp)
    mean = 2.0 * half / period
    fade = np.clip(2.0 * fp / period - 0.5, 0.0, 1.0)
    return cov + (mean - cov) * fade


def _detail(fp: np.ndarray, size: float) -> np.ndarray:
    """1 where features of ``size`` [m] are resolved, falling to 0 where they shrink below a sample."""
    return np.clip(size / fp - 0.5, 0.0, 1.0)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend colours (n, 3) towards ``b`` ((n, 3) or one colour (3,)) by weights (n,)."""
    return a + (b - a) * t[:, None].astype(np.float32, copy=False)


# --------------------------------------------------------------------------- sky and light


@dataclass(frozen=True)
class Environment:
    """Lighting of one scene (world frame, z up; radiances in linear RGB, arbitrary units).

    ``sun_dir`` points from the scene towards the sun. ``exposure`` scales
    radiance before tone mapping. ``fog_distance_m`` is the e-folding distance
    of aerial perspective.
    """

    sun_dir: np.ndarray
    sun_rgb: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    ambient_sky: np.ndarray
    ambient_ground: np.ndarray
    cloud_cover: float
    fog_distance_m: float
    exposure: float


def random_environment(rng: np.random.Generator) -> Environment:
    """Daylight from a random sun position and weather (clear to overcast)."""
    elevation = np.radians(rng.uniform(18.0, 65.0))
    azimuth = rng.uniform(-np.pi, np.pi)
    sun_dir = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    overcast = rng.uniform(0.0, 1.0) ** 2  # mostly fair weather
    warm = rng.uniform(0.0, 1.0) * (1.0 - np.sin(elevation))  # low sun is warmer
    sun_rgb = np.array([1.0, 0.96 - 0.08 * warm, 0.9 - 0.2 * warm]) * 3.2 * (1.0 - 0.75 * overcast)
    zenith = (1 - overcast) * srgb("#3d6fb6") + overcast * srgb("#9aa3ad")
    horizon = (1 - overcast) * srgb("#b9cde0") + overcast * srgb("#c4c8cc")
    return Environment(
        sun_dir=sun_dir.astype(np.float32),
        sun_rgb=sun_rgb.astype(np.float32),
        sky_zenith=(zenith * rng.uniform(0.9, 1.1)).astype(np.float32),
        sky_horizon=(horizon * rng.uniform(0.95, 1.05)).astype(np.float32),
        ambient_sky=((0.55 + 0.9 * overcast) * (0.5 * zenith + 0.5 * horizon) / horizon.mean()).astype(np.float32) * 0.55,
        ambient_ground=(np.array([0.2, 0.19, 0.17]) * (1.0 + overcast)).astype(np.float32),
        cloud_cover=float(np.clip(rng.uniform(0.0, 0.6) + overcast * 0.5, 0.0, 1.0)),
        fog_distance_m=float(rng.uniform(600.0, 1500.0) * (1.0 - 0.5 * overcast)),
        exposure=float(rng.uniform(1.1, 1.4)),
    )


def sky_radiance(env: Environment, noise: Noise, d: np.ndarray, clouds: bool = True) -> np.ndarray:
    """Radiance (n, 3) of the sky along unit world directions (n, 3): gradient, sun, clouds.

    ``clouds=False`` leaves the clouds out (cheaper; for blurry reflections).
    """
    dz = d[:, 2]
    up = np.clip(dz, 0.0, 1.0)
    t = 1.0 - (1.0 - up) ** 4
    col = env.sky_horizon + (env.sky_zenith - env.sky_horizon) * t[:, None]
    col *= (1.0 + 0.35 * (1.0 - t))[:, None]  # the bright horizon band
    below = dz < 0
    col[below] = env.sky_horizon * 0.85
    cs = d @ env.sun_dir
    glow = 0.25 * np.exp((cs - 1.0) * 12.0) + 4.0 * np.exp((cs - 1.0) * 3000.0)
    if clouds and env.cloud_cover > 0.02:
        safe = np.maximum(dz, 0.02)
        px = d[:, 0] / safe * 2.5  # clouds on a layer 1 km up, features of ~400 m
        py = d[:, 1] / safe * 2.5
        f = noise.fbm(px + 31.0, py + 7.0) + 0.4 * noise.fbm(px * 3.1, py * 3.1)
        thr = 1.6 - 2.6 * env.cloud_cover
        dens = _smoothstep(thr, thr + 0.9, f) * np.clip(dz * 12.0, 0.0, 1.0)
        cloud = np.clip(0.8 + 0.15 * f, 0.6, 1.0)[:, None] * (0.55 * env.sun_rgb / env.sun_rgb.max() * 0.9 + 0.25)
        col = _mix(col, cloud.astype(np.float32), dens * 0.9)
        glow *= 1.0 - 0.8 * dens
    col += env.sun_rgb * glow[:, None] * 0.3
    return col.astype(np.float32)


# --------------------------------------------------------------------------- surfaces


@dataclass(frozen=True)
class RoadMarkings:
    """Painted lines and crossings, in road coordinates (s along, d left of the centreline) [m].

    ``lines`` rows: d centre, half width, dash length (0 for solid), dash
    period, yellow (0/1). ``crossings`` rows: s start, s end of zebra crossings.
    ``lane_centres``: d of every lane (tyre tracks darken the asphalt there).
    """

    lines: np.ndarray
    crossings: np.ndarray
    lane_centres: np.ndarray
    half_width: float


@dataclass
class SurfaceSample:
    """Appearance at ray hits: linear-RGB albedo (n, 3), NIR reflectivity (n,), glossiness (n,) in [0, 1]."""

    albedo: np.ndarray
    reflectivity: np.ndarray
    gloss: np.ndarray


@dataclass
class _Batch:
    """The hits of one material (a view onto the full hit arrays)."""

    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    nz: np.ndarray
    obj: np.ndarray
    fp: np.ndarray

    def __len__(self) -> int:
        return len(self.u)


class Surfaces:
    """Evaluates materials at ray hits on one scene mesh."""

    def __init__(self, mesh: MeshArrays, noise: Noise, markings: RoadMarkings):
        self.mesh = mesh
        self.noise = noise
        self.markings = markings
        self._funcs = {
            Mat.TERRAIN: self._terrain, Mat.ASPHALT: self._asphalt, Mat.SIDEWALK: self._sidewalk,
            Mat.CURB: self._curb, Mat.FACADE: self._facade, Mat.ROOF: self._roof, Mat.BARK: self._bark,
            Mat.FOLIAGE: self._foliage, Mat.CAR_PAINT: self._car_paint, Mat.CAR_CABIN: self._car_cabin,
            Mat.TIRE: self._tire, Mat.METAL: self._metal, Mat.SIGN: self._sign, Mat.CONCRETE: self._concrete,
            Mat.PLASTIC: self._plastic, Mat.WOOD: self._wood, Mat.GUARDRAIL: self._guardrail,
        }
        # Per triangle: vertex-0 attributes and the edge differences, so interpolating at a
        # hit is one row gather plus two multiply-adds (uvw in columns 0..8, normal in 9..17).
        f = mesh.faces
        tab = []
        for attr in (mesh.uvw, mesh.normals):
            a0, a1, a2 = attr[f[:, 0]], attr[f[:, 1]], attr[f[:, 2]]
            tab += [a0, a1 - a0, a2 - a0]
        self._tri_table = np.ascontiguousarray(np.concatenate(tab, 1), dtype=np.float32)

    def interpolate(self, prim: np.ndarray, bary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Texture coordinates (n, 3) and unit shading normals (n, 3) at hits (triangle ids, barycentrics)."""
        t = self._tri_table.take(prim, axis=0)
        b1 = bary[:, 0:1]
        b2 = bary[:, 1:2]
        uv = t[:, 0:3] + t[:, 3:6] * b1 + t[:, 6:9] * b2
        n = t[:, 9:12] + t[:, 12:15] * b1 + t[:, 15:18] * b2
        n *= 1.0 / np.sqrt(np.einsum("ij,ij->i", n, n) + 1e-12)[:, None]
        return uv, n

    def evaluate(self, prim: np.ndarray, uvw: np.ndarray, normal: np.ndarray, footprint: np.ndarray) -> SurfaceSample:
        """Appearance at hits on triangles ``prim`` with texture coords ``uvw`` and normals (n, 3).

        ``footprint`` [m] is the surface width one sample covers (pixel or beam).
        """
        n = len(prim)
        albedo = np.empty((n, 3), np.float32)
        refl = np.empty(n, np.float32)
        gloss = np.zeros(n, np.float32)
        mat = self.mesh.tri_material[prim]
        order = np.argsort(mat, kind="stable")
        counts = np.bincount(mat, minlength=N_MATERIALS)
        start = 0
        obj_all = self.mesh.tri_object[prim]
        fp_all = np.maximum(footprint, 1e-4).astype(np.float32)
        for m, count in enumerate(counts):
            if count == 0:
                continue
            idx = order[start:start + count]
            start += count
            b = _Batch(uvw[idx, 0], uvw[idx, 1], uvw[idx, 2], normal[idx, 2], obj_all[idx], fp_all[idx])
            a, r, g = self._funcs[Mat(m)](b)
            albedo[idx] = a
            refl[idx] = r
            if g is not None:
                gloss[idx] = g
        np.clip(albedo, 0.0, 1.0, out=albedo)
        np.clip(refl, 0.0, 1.0, out=refl)
        return SurfaceSample(albedo, refl, gloss)

    # ------------------------------------------------------------ helpers
    def _color(self, b: _Batch) -> np.ndarray:
        return self.mesh.obj_color[b.obj]

    def _param(self, b: _Batch, k: int) -> np.ndarray:
        return self.mesh.obj_param[b.obj, k]

    def _grain(self, b: _Batch, scale: float, size: float) -> np.ndarray:
        """Fine per-texel grain in [-0.5, 0.5), faded out where unresolved."""
        return (self.noise.cell(np.floor(b.u * scale), np.floor(b.v * scale)) - 0.5) * _detail(b.fp, size)

    # ------------------------------------------------------------ ground
    def _asphalt(self, b: _Batch):
        nz = self.noise
        u, v, fp = b.u, b.v, b.fp
        blotch = nz.fbm(u * 0.25, v * 0.25)
        shade = 1.0 + 0.16 * blotch + 0.08 * nz.fbm(u * 3.1 + 17.0, v * 3.1) + 0.45 * self._grain(b, 50.0, 0.03)
        patch = _smoothstep(1.1, 1.25, nz.fbm(u * 0.07 + 50.0, v * 0.07 + 9.0))  # repaired, darker patches
        shade *= 1.0 - 0.3 * patch
        for c in self.markings.lane_centres:  # tyre tracks: polished, slightly darker bands
            shade *= 1.0 - 0.1 * np.exp(-(((np.abs(v - c) - 0.8) / 0.3) ** 2))
        albedo = self._color(b) * shade[:, None]
        white = np.zeros_like(u)
        yellow = np.zeros_like(u)
        for d, half, dash, period, is_yellow in self.markings.lines:
            cov = _stripe(v - d, half, fp)
            if dash > 0:
                cov = cov * _stripe(np.mod(u, period) - dash / 2, dash / 2, fp)
            if is_yellow:
                np.maximum(yellow, cov, out=yellow)
            else:
                np.maximum(white, cov, out=white)
        road_half = self.markings.half_width - 0.4
        for s0, s1 in self.markings.crossings:
            bars = _stripe(u - (s0 + s1) / 2, (s1 - s0) / 2, fp) * _stripe(np.mod(v, 1.1) - 0.55, 0.3, fp)
            bars *= _stripe(v, road_half, fp)
            stop = _stripe(u - (s0 - 2.0), 0.2, fp) * _stripe(v + road_half / 2, road_half / 2, fp)
            stop += _stripe(u - (s1 + 2.0), 0.2, fp) * _stripe(v - road_half / 2, road_half / 2, fp)
            np.maximum(white, np.maximum(bars, stop), out=white)
        wear = np.clip(0.7 + 0.6 * nz.fbm(u * 1.7 + 3.0, v * 1.7), 0.0, 1.0)
        white *= wear
        yellow *= wear
        albedo = _mix(albedo, np.broadcast_to(srgb("#d8d8d0"), albedo.shape), white)
        albedo = _mix(albedo, np.broadcast_to(srgb("#d9a520"), albedo.shape), yellow)
        paint = np.maximum(white, yellow)
        refl = _REFLECTIVITY[Mat.ASPHALT] * (1.0 + 0.2 * blotch) * (1.0 - paint) + _PAINT_REFLECTIVITY * paint
        return albedo, refl, None

    def _sidewalk(self, b: _Batch):
        nz = self.noise
        size = 1.5
        slab = nz.cell(np.floor(b.u / size) + 1000.0, np.floor(b.v / size))
        joints = np.maximum(_lines(b.u, size, 0.008, b.fp), _lines(b.v, size, 0.008, b.fp))
        shade = (1.0 + 0.12 * (slab - 0.5) + 0.1 * nz.fbm(b.u * 0.6, b.v * 0.6) + 0.3 * self._grain(b, 60.0, 0.02))
        shade *= 1.0 - 0.45 * joints
        stains = _smoothstep(1.0, 1.8, nz.fbm(b.u * 0.9 + 70.0, b.v * 0.9))
        shade *= 1.0 - 0.25 * stains
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.SIDEWALK] * shade, None

    def _curb(self, b: _Batch):
        shade = 1.0 + 0.1 * self.noise.fbm(b.u * 2.0, b.v * 2.0) + 0.4 * self._grain(b, 80.0, 0.02)
        shade *= 1.0 - 0.4 * _lines(b.u, 1.0, 0.006, b.fp)
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.CURB] * shade, None

    def _terrain(self, b: _Batch):
        nz = self.noise
        kind = self._param(b, 0)
        base = self._color(b)
        big = nz.fbm(b.u * 0.08, b.v * 0.08)
        mid = nz.fbm(b.u * 0.7 + 11.0, b.v * 0.7)
        grain = self._grain(b, 25.0, 0.06)
        shade = 1.0 + 0.18 * big + 0.14 * mid + 0.6 * grain
        # grass gets dry, yellowish patches; paving gets a tile grid
        dry = _smoothstep(0.6, 1.6, big + 0.5 * mid) * (kind == 0)
        albedo = base * shade[:, None]
        albedo = _mix(albedo, srgb("#8a7d4e") * shade[:, None], 0.45 * dry)
        tiles = (kind == 1) * np.maximum(_lines(b.u, 0.6, 0.01, b.fp), _lines(b.v, 0.6, 0.01, b.fp))
        albedo *= (1.0 - 0.4 * tiles)[:, None]
        refl = np.where(kind == 0, _REFLECTIVITY[Mat.TERRAIN], 0.7 * _REFLECTIVITY[Mat.TERRAIN]) * shade
        return albedo, refl, None

    # ------------------------------------------------------------ buildings
    def _facade(self, b: _Batch):
        nz = self.noise
        u, z, fp = b.u, b.v, b.fp
        p = self.mesh.obj_param[b.obj]
        kind = p[:, 0]
        base = self._color(b)
        shade = 1.0 + 0.08 * nz.fbm(u * 0.4 + b.obj * 13.0, z * 0.4) - 0.1 * np.clip(nz.fbm(u * 2.5, z * 0.12), 0, 2)
        shade *= 1.0 - 0.3 * np.exp(-np.abs(z) / np.float32(0.5)) * (np.abs(b.nz) < 0.5)  # splash dirt at the foot
        shade += 0.25 * self._grain(b, 40.0, 0.04)
        albedo = base * shade[:, None]
        glassiness = np.zeros(len(b), np.float32)
        # brick: 24 x 7.5 cm bricks in running bond, light mortar
        k = np.flatnonzero(kind == BRICK)
        if len(k):
            zk, fk = z[k], fp[k]
            row = np.floor(zk / np.float32(0.075))
            uo = u[k] + np.mod(row, 2) * np.float32(0.12)
            var = (nz.cell(np.floor(uo / np.float32(0.24)), row) - 0.5) * _detail(fk, 0.1)
            mortar = np.maximum(_lines(zk, 0.075, 0.005, fk), _lines(uo, 0.24, 0.005, fk))
            albedo[k] = _mix(albedo[k] * (1.0 + 0.35 * var)[:, None], srgb("#b5ada0"), mortar)
        # panel joints and siding boards
        k = np.flatnonzero(kind == PANELS)
        if len(k):
            joints = np.maximum(_lines(u[k], 3.0, 0.01, fp[k]), _lines(z[k], p[k, 1], 0.01, fp[k]))
            albedo[k] *= (1.0 - 0.5 * joints)[:, None]
        k = np.flatnonzero(kind == SIDING)
        if len(k):
            albedo[k] *= (1.0 - 0.5 * _lines(z[k], 0.2, 0.012, fp[k]))[:, None]
        # curtain walls: glass with a mullion grid
        k = np.flatnonzero(kind == CURTAIN_WALL)
        if len(k):
            mull = np.maximum(_lines(u[k], 1.5, 0.04, fp[k]), _lines(z[k], p[k, 1], 0.06, fp[k]))
            albedo[k] = _mix(base[k] * 0.35, srgb("#8a9096"), mull)
            glassiness[k] = 1.0 - mull
        # windows: cheap grid coordinates everywhere, the details only near openings
        k = np.flatnonzero(kind != CURTAIN_WALL)
        if len(k):
            self._windows(b, k, p[k], albedo, glassiness)
        refl = _REFLECTIVITY[Mat.FACADE] * (1.0 - glassiness) + _GLASS_REFLECTIVITY * glassiness
        lum = base.mean(1)
        refl *= 0.8 + 0.4 * lum / max(float(lum.max()), 1e-3)
        return albedo, refl, 0.75 * glassiness

    def _windows(self, b: _Batch, k: np.ndarray, p: np.ndarray, albedo: np.ndarray, glassiness: np.ndarray) -> None:
        """Paint window openings, doors and shop signs of facade hits ``k`` into ``albedo`` / ``glassiness``.

        Columns are centred on the face and kept clear of its edges; floors
        start above the ground floor, which holds shop windows or a door.
        """
        f32 = np.float32
        u, z, half, fp = b.u[k], b.v[k], b.w[k], b.fp[k]
        floor_h, win_w, win_h, spacing, height, ground_h, shop = (p[:, j] for j in range(1, 8))
        n_cols = np.floor(np.maximum(2.0 * half - f32(0.8), 0.0) / spacing)
        ci = np.clip(np.round(u / spacing + (n_cols - 1) / 2), 0, np.maximum(n_cols - 1, 0))
        lu = u - (ci - (n_cols - 1) / 2) * spacing
        upper = z >= ground_h
        is_shop = shop > 0
        fl = np.floor((z - ground_h) / floor_h)
        bottom = np.where(upper, ground_h + fl * floor_h + f32(0.9), np.where(is_shop, f32(0.45), f32(0.9)))
        wh = np.where(upper | ~is_shop, win_h, ground_h - f32(1.35))
        ww = np.where(upper | ~is_shop, win_w, spacing * f32(0.8))
        lz = z - bottom
        door_here = ~upper & (ci == np.floor((n_cols - 1) / 2)) & (np.abs(lu) < 0.55 + fp) & (z < 2.2 + fp)
        band = ~upper & is_shop & (np.abs(z - (ground_h - f32(0.35))) < 0.25 + fp)
        opening = ((n_cols > 0) & (bottom + wh < height - f32(0.6)) & (np.abs(lu) < ww / 2 + f32(0.08) + fp)
                   & (lz > -f32(0.08) - fp) & (lz < wh + fp))
        near = np.flatnonzero(opening | door_here | band)
        if not len(near):
            return
        # from here on, only the hits near an opening
        u, z, fp, lu, lz, ww, wh = u[near], z[near], fp[near], lu[near], lz[near], ww[near], wh[near]
        ci, fl, upper, ground_h = ci[near], fl[near], upper[near], ground_h[near]
        obj = b.obj[k[near]]
        ok = opening[near]
        hole = ok * _stripe(lu, ww / 2, fp) * _stripe(lz - wh / 2, wh / 2, fp)
        glass = ok * _stripe(lu, ww / 2 - f32(0.07), fp) * _stripe(lz - wh / 2, wh / 2 - f32(0.07), fp)
        glass *= 1.0 - _stripe(lu, 0.03, fp) * (ww > 1.3)  # mullion in wide windows
        frame = hole - glass
        ledge = ok * _stripe(lz + f32(0.04), 0.04, fp) * _stripe(lu, ww / 2 + f32(0.08), fp)
        door = door_here[near] * _stripe(lu, 0.55, fp) * _stripe(z - f32(1.1), 1.1, fp)
        glass *= 1.0 - door
        frame *= 1.0 - door
        # per window: dark rooms, a few lit, some with curtains; the recess shades the top
        wid = self.noise.cell(ci + obj * 7, np.where(upper, fl, -1) + 3)
        interior = (0.06 + 0.15 * wid)[:, None] * srgb("#c8b8a0")
        curtain = (wid > 0.7) * _stripe(lz - wh, wh * 0.45, fp)
        interior = _mix(interior, srgb("#c9c0ad") * 0.7, curtain)
        interior *= (1.0 - 0.5 * _smoothstep(0.0, 0.3, lz - wh + 0.3))[:, None]
        frame_rgb = np.where((obj % 3 == 0)[:, None], srgb("#3a3a3a"), srgb("#e8e6e0"))
        door_rgb = srgb("#4a3526") * (1.0 + 0.4 * (wid - 0.5))[:, None]
        sign_band = band[near] * _stripe(z - (ground_h - f32(0.35)), 0.25, fp) * (1 - glass)
        hue = np.stack([0.1 + 0.6 * wid, 0.08 + 0.3 * self.noise.cell(ci + 3, obj), 0.1 + 0.5 * (1 - wid)], 1)
        sign_rgb = 0.45 * hue + 0.08  # painted fascia: muted colours
        rows = k[near]
        a = albedo[rows]
        a = _mix(a, srgb("#cfcac0"), ledge)
        a = _mix(a, frame_rgb, frame)
        a = _mix(a, interior, glass)
        a = _mix(a, door_rgb, door)
        albedo[rows] = _mix(a, sign_rgb, sign_band)
        glassiness[rows] = glass * (1.0 - curtain)

    def _roof(self, b: _Batch):
        nz = self.noise
        tiles = self._param(b, 0) == 1
        row = np.floor(b.v / 0.3)
        tile_var = (nz.cell(np.floor(b.u / 0.25 + 0.5 * row), row) - 0.5) * _detail(b.fp, 0.08)
        shadow = _lines(b.v, 0.3, 0.03, b.fp)
        shade = 1.0 + 0.12 * nz.fbm(b.u * 0.5, b.v * 0.5) + 0.3 * self._grain(b, 30.0, 0.05)
        shade = np.where(tiles, shade * (1.0 + 0.3 * tile_var) * (1.0 - 0.5 * shadow), shade)
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.ROOF] * shade, None

    # ------------------------------------------------------------ vegetation
    def _bark(self, b: _Batch):
        shade = 1.0 + 0.25 * self.noise.fbm(b.u * 10.0, b.v * 0.8) + 0.3 * self._grain(b, 60.0, 0.02)
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.BARK] * shade, None

    def _foliage(self, b: _Batch):
        nz = self.noise
        clusters = nz.fbm(b.u * 1.6, b.v * 1.6) + 0.6 * nz.fbm(b.u * 6.0 + 5.0, b.v * 6.0) * _detail(b.fp, 0.1)
        leaves = self._grain(b, 30.0, 0.05)
        shade = 0.35 + 0.9 * _smoothstep(-1.2, 1.4, clusters) + 0.5 * leaves
        shade *= 0.65 + 0.35 * (0.5 + 0.5 * b.nz)  # the inside and underside of the crown are darker
        albedo = self._color(b) * shade[:, None]
        albedo[:, 0] *= 1.0 + 0.15 * nz.fbm(b.u * 0.3, b.v * 0.3)  # hue drift between leaf clusters
        return albedo, _REFLECTIVITY[Mat.FOLIAGE] * (0.7 + 0.3 * shade), None

    # ------------------------------------------------------------ vehicles and street furniture
    def _car_paint(self, b: _Batch):
        fp = b.fp
        side = np.abs(b.nz) < 0.5
        end = side & (b.w < 1.2)  # front and back faces: their half-width is half the car's width
        seams = (side & ~end) * np.maximum(_lines(b.u, 1.15, 0.005, fp), _stripe(b.v - 0.42, 0.01, fp))
        bumper = side * _stripe(b.v - 0.09, 0.09, fp)
        lamps = end * _stripe(np.abs(b.u) - (b.w - 0.2), 0.14, fp) * _stripe(b.v - 0.52, 0.07, fp)
        plate = end * _stripe(b.u, 0.26, fp) * _stripe(b.v - 0.27, 0.06, fp)
        albedo = self._color(b) * (1.0 - 0.6 * seams)[:, None]
        albedo = _mix(albedo, srgb("#1c1c1c"), bumper)
        albedo = _mix(albedo, srgb("#9a2418"), lamps)
        albedo = _mix(albedo, srgb("#d8d8d0"), plate)
        refl = _REFLECTIVITY[Mat.CAR_PAINT] * (0.6 + 0.8 * self._color(b).mean(1)) * (1.0 - 0.7 * bumper)
        refl = refl + 0.5 * (lamps + plate)  # lamp lenses and plates are retro-reflective
        return albedo, refl, 0.25 * (1.0 - bumper)

    def _car_cabin(self, b: _Batch):
        vertical = np.abs(b.nz) < 0.75
        glass = vertical * _stripe(b.u, b.w - 0.13, b.fp) * _stripe(b.v - 0.28, 0.2, b.fp)
        albedo = _mix(self._color(b), np.broadcast_to(srgb("#0d1114"), (len(b), 3)), glass)
        refl = _REFLECTIVITY[Mat.CAR_PAINT] * (1.0 - glass) + _GLASS_REFLECTIVITY * glass
        return albedo, refl, 0.12 + 0.3 * glass

    def _tire(self, b: _Batch):
        cap = b.w < 1.0  # caps carry the radius in w; the tread carries half the circumference
        r = np.hypot(b.u, b.v) / np.maximum(b.w, 1e-3)
        rim = cap * _stripe(r, 0.62, b.fp / np.maximum(b.w, 1e-3))
        albedo = _mix(np.broadcast_to(srgb("#1a1a1a"), (len(b), 3)), np.broadcast_to(srgb("#9a9ca0"), (len(b), 3)), rim)
        return albedo, np.full(len(b), _REFLECTIVITY[Mat.TIRE], np.float32) + 0.3 * rim, 0.3 * rim

    def _metal(self, b: _Batch):
        shade = 1.0 + 0.1 * self.noise.fbm(b.u * 3.0, b.v * 0.5)
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.METAL] * shade, np.full(len(b), 0.15, np.float32)

    def _sign(self, b: _Batch):
        round_ = self._param(b, 0) == 1
        h = self._param(b, 1)
        fp = b.fp
        r = np.hypot(b.u, b.v)
        inner_round = _stripe(r, b.w - 0.06, fp)
        inner_plate = _stripe(b.u, b.w - 0.05, fp) * _stripe(b.v - h / 2, h / 2 - 0.05, fp)
        inner = np.where(round_, inner_round, inner_plate)
        glyph = np.where(round_, _stripe(b.u, b.w * 0.55, fp) * _stripe(b.v, b.w * 0.13, fp),
                         _stripe(b.u, b.w * 0.5, fp) * _stripe(b.v - h * 0.55, h * 0.08, fp))
        white = np.broadcast_to(srgb("#f0f0f0"), (len(b), 3))
        albedo = _mix(white, self._color(b), inner)
        albedo = _mix(albedo, white, glyph * inner)
        return albedo, np.full(len(b), _REFLECTIVITY[Mat.SIGN], np.float32), None

    def _concrete(self, b: _Batch):
        panel = np.maximum(self._param(b, 0), 0.5)
        shade = 1.0 + 0.12 * self.noise.fbm(b.u * 0.8, b.v * 0.8) + 0.3 * self._grain(b, 50.0, 0.03)
        shade *= 1.0 - 0.5 * _lines(b.u, panel, 0.01, b.fp)
        shade *= 1.0 - 0.2 * np.exp(-np.abs(b.v) / np.float32(0.3)) * (np.abs(b.nz) < 0.5)  # grime at the foot
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.CONCRETE] * shade, None

    def _plastic(self, b: _Batch):
        shade = 1.0 + 0.05 * self.noise.fbm(b.u * 2.0, b.v * 2.0)
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.PLASTIC] * shade, np.full(len(b), 0.1, np.float32)

    def _wood(self, b: _Batch):
        vertical = self._param(b, 0) == 1
        across = np.where(vertical, b.u, b.v)
        along = np.where(vertical, b.v, b.u)
        board = np.floor(across / 0.15)
        shade = 1.0 + 0.2 * (self.noise.cell(board, 7.0) - 0.5) + 0.15 * self.noise.fbm(along * 0.7, across * 9.0)
        shade *= 1.0 - 0.6 * _lines(across, 0.15, 0.008, b.fp)
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.WOOD] * shade, None

    def _guardrail(self, b: _Batch):
        ripple = 0.8 + 0.2 * np.cos(b.v * (2 * np.pi / 0.11)) * _detail(b.fp, 0.05)
        shade = ripple * (1.0 + 0.1 * self.noise.fbm(b.u * 0.5, b.v * 4.0))
        return self._color(b) * shade[:, None], _REFLECTIVITY[Mat.GUARDRAIL] * shade, np.full(len(b), 0.2, np.float32)
