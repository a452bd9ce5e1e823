"""Procedural driving scenes from a seed, ready for ray casting with open3d/Embree.

World frame: x, y horizontal, z up [m]; the road surface is at z = 0. The
road is a smooth random curve; positions along it are given in road
coordinates ``(s, d)``: arc length ``s`` [m] and lateral offset ``d`` [m],
positive to the left of the direction of travel. Traffic drives on the right
(``d < 0`` for the rig).

A scene is cut into blocks of ``BLOCK_M`` metres along the road; each block
draws its objects from its own generator seeded by ``(seed, style, block)``,
so a longer scene of the same seed holds the same objects where the shorter
one has them.

Four styles:

* ``urban``: two lanes with parking lanes, curbs, sidewalks, closed rows of
  3-9 storey buildings (plaster, brick, panels, glass) with shops, a second
  row behind, street trees, street lights, signs, traffic lights at zebra
  crossings, parked cars, bins and bollards.
* ``suburban``: a curvier two-lane street, grass verges, detached houses with
  pitched roofs set back behind lawns, hedges and fences, driveways with cars,
  many trees, wooden utility poles.
* ``highway``: a divided road with three lanes per direction, a concrete
  median barrier, guard rails, embankments, noise walls, sign gantries, light
  poles, traffic in the other lanes, distant hills.
* ``indoor``: a warehouse or office hall a robot drives through at walking
  pace: a concrete floor with tape lines, a ceiling 3-5 m up, walls (panels,
  or plaster with painted door and window shapes) with openings into rooms,
  pillars, shelving racks with cartons, cabinets and tables; lit from above
  (no sun reaches in), no sky anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CrossI2PError
from .meshes import MeshArrays, MeshBuilder, Part, blob, box, cylinder, gable_roof, rot_x, rot_y, rot_z
from .textures import (BRICK, CURTAIN_WALL, PANELS, PLASTER, SIDING, Environment, Mat, Noise, RoadMarkings,
                       Surfaces, random_environment, srgb)

STYLES = ("urban", "suburban", "highway", "indoor")
BLOCK_M = 50.0
_TERRAIN_OUTER_M = 90.0   # terrain strips reach this far from the road; a flat plane lies beyond
_GROUND_Z = -0.05         # height of the far ground plane [m]


@dataclass(frozen=True)
class StyleParams:
    """Cross-section and driving parameters of a style (lengths in metres)."""

    lane_width_m: float
    lanes_per_side: int
    parking_width_m: float     # parking lane on each side, 0 for none
    shoulder_m: float          # paved outer shoulder on each side
    median_half_m: float       # half-width of the paved median (divided roads)
    curb_height_m: float       # 0 for no curb
    verge_m: float             # grass strip between curb and sidewalk
    sidewalk_m: float          # 0 for none
    max_curvature: float       # [1/m]
    speed_mps: tuple[float, float]
    yellow_centre_prob: float  # chance of a yellow (North American) centre line


STYLE_PARAMS: dict[str, StyleParams] = {
    "urban": StyleParams(3.25, 1, 2.2, 0.0, 0.0, 0.15, 0.0, 3.5, 1 / 350, (5.0, 10.0), 0.3),
    "suburban": StyleParams(3.2, 1, 0.0, 0.5, 0.0, 0.13, 1.8, 1.5, 1 / 160, (6.0, 11.0), 0.5),
    "highway": StyleParams(3.6, 3, 0.0, 3.0, 1.6, 0.0, 0.0, 0.0, 1 / 700, (15.0, 25.0), 0.0),
    # a hall's aisle: the "road" is the floor between the tape lines, walls stand beyond INDOOR_WALL_M
    "indoor": StyleParams(1.4, 1, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0, 1 / 120, (0.6, 1.6), 0.0),
}
# indoor: walls at least this far from the aisle's centre (|d|, m), so that they lie beyond the LiDAR's minimum
# range from a rig in either lane (SynthConfig.lidar_min_range_m); rooms behind openings reach this much deeper
INDOOR_WALL_M = (3.5, 5.0)
INDOOR_ROOM_DEPTH_M = (3.0, 7.0)

# Palettes (sRGB), drawn per object.
_PLASTER = ["#d9cfc0", "#e8dcc2", "#c9b79c", "#d4c4a8", "#b8c4c8", "#e0d0b8", "#c98f6b", "#9fb3a5",
            "#e6e2d8", "#a89f91", "#d8b890", "#b0b8b0"]
_BRICK = ["#8c4a32", "#9b5a3c", "#7a3e2b", "#a0664a", "#6e4a3a", "#8a5a48"]
_PANELS = ["#a8a49c", "#8f8c86", "#bdb8ae", "#9a968c"]
_CURTAIN = ["#3c5a6e", "#2e4450", "#4a5a52", "#506070"]
_SIDING = ["#e8e4da", "#c8d4dc", "#d8c8a0", "#9aaa98", "#b0a090", "#d0d8d0"]
_ROOF_TILES = ["#8a3a28", "#5a4a40", "#3a3a3c", "#6b5040", "#4a3a34"]
_CARS = ["#e0e0e0", "#e8e8e4", "#151515", "#1c1c20", "#9a9da0", "#a8aaac", "#55585c", "#1f2f4a",
         "#8a1a1a", "#2a4a8a", "#b8a888", "#2a4a3a", "#6a6e72", "#c0c4c8"]
_FOLIAGE = ["#3f5f2a", "#4a6a2a", "#2f4a22", "#5a7030", "#3a5530", "#4d6535"]
_BARK = ["#4a3c30", "#5a5048", "#3e3630"]
_BINS = ["#2e5a32", "#555555", "#2a4a7a", "#202020", "#c86010", "#6a5a3a"]
_SIGNS = ["#b01e23", "#1f4f9f", "#1e6b3a", "#e0b000"]
_POLES = ["#6a6e70", "#2a3a2a", "#222222", "#7a7c7e"]


def _pick(rng: np.random.Generator, palette: list[str], jitter: float = 0.08) -> np.ndarray:
    return srgb(palette[rng.integers(len(palette))]) * rng.uniform(1 - jitter, 1 + jitter, 3).astype(np.float32)


# --------------------------------------------------------------------------- road


@dataclass(frozen=True)
class Road:
    """The road centreline sampled every ``ds`` metres: arc length, position, heading [rad]."""

    s: np.ndarray
    xy: np.ndarray
    heading: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, length_m: float, max_curvature: float, ds: float = 1.0) -> "Road":
        """A smooth curve: curvature is a sum of sinusoids in ``s``, bounded by ``max_curvature``.

        The sinusoids' parameters do not depend on ``length_m``, so a longer
        road of the same generator state extends a shorter one.
        """
        wavelengths = rng.uniform(120.0, 900.0, 4)
        phases = rng.uniform(0.0, 2 * np.pi, 4)
        weights = rng.uniform(-1.0, 1.0, 4)
        peak = max_curvature * rng.uniform(0.3, 1.0) / np.abs(weights).sum()
        heading0 = rng.uniform(-np.pi, np.pi)
        s = np.arange(0.0, length_m + ds, ds)
        kappa = peak * (weights * np.sin(2 * np.pi * s[:, None] / wavelengths + phases)).sum(1)
        heading = heading0 + np.concatenate([[0.0], np.cumsum((kappa[1:] + kappa[:-1]) / 2 * ds)])
        mid = (heading[1:] + heading[:-1]) / 2
        steps = np.stack([np.cos(mid), np.sin(mid)], 1) * ds
        xy = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, 0)])
        return cls(s, xy, heading)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def frame(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position (..., 2) and heading (...) [rad] of the centreline at arc length ``s``."""
        s = np.asarray(s, float)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        return np.stack([x, y], -1), np.interp(s, self.s, self.heading)

    def point(self, s: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        """World xy (..., 2) of road coordinates ``(s, d)``."""
        xy, h = self.frame(s)
        d = np.asarray(d, float)
        return xy + d[..., None] * np.stack([-np.sin(h), np.cos(h)], -1)

    def pose(self, s: float, d: float, z: float = 0.0, yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` of a local frame at ``(s, d, z)``: x along the road turned by ``yaw``, z up."""
        xy = self.point(s, d)
        _, h = self.frame(s)
        return rot_z(float(h) + yaw), np.array([xy[0], xy[1], z])


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where things are across the road, as |d| from the centreline [m] (symmetric)."""

    road_half: float
    curb_height: float
    sidewalk: tuple[float, float]
    lot_start: float
    lane_centres: np.ndarray  # d of every lane, both directions
    ego_d: float              # the lane the rig drives in
    parking_d: float          # |d| of the parking lane centre, 0 if none


def _layout(p: StyleParams, rng: np.random.Generator) -> tuple[Layout, np.ndarray]:
    """Cross-section and lane paint lines (rows of RoadMarkings.lines) of a style."""
    travel = p.median_half_m + p.lanes_per_side * p.lane_width_m
    road_half = travel + p.parking_width_m + p.shoulder_m
    k = np.arange(p.lanes_per_side)
    right = -(p.median_half_m + (k + 0.5) * p.lane_width_m)
    lanes = np.concatenate([right, -right])
    ego_d = float(right[rng.integers(p.lanes_per_side)])
    side_start = road_half + (0.2 if p.curb_height_m > 0 else 0.0) + p.verge_m
    lines = []
    for side in (-1.0, 1.0):
        if p.median_half_m > 0:  # divided: inner edge, dashed separators, outer edge
            lines.append((side * (p.median_half_m + 0.15), 0.075, 0.0, 0.0, 0.0))
            for j in range(1, p.lanes_per_side):
                lines.append((side * (p.median_half_m + j * p.lane_width_m), 0.075, 3.0, 12.0, 0.0))
        lines.append((side * (travel - 0.1 * (p.parking_width_m == 0)), 0.06 if p.parking_width_m else 0.1,
                      0.0, 0.0, 0.0))
    if p.median_half_m == 0:
        yellow = float(rng.uniform() < p.yellow_centre_prob)
        if yellow and rng.uniform() < 0.5:
            lines += [(-0.12, 0.06, 0.0, 0.0, 1.0), (0.12, 0.06, 0.0, 0.0, 1.0)]
        else:
            lines.append((0.0, 0.06, 3.0, 9.0, yellow))
    layout = Layout(road_half=road_half, curb_height=p.curb_height_m,
                    sidewalk=(side_start, side_start + p.sidewalk_m), lot_start=side_start + p.sidewalk_m,
                    lane_centres=lanes, ego_d=ego_d,
                    parking_d=travel + p.parking_width_m / 2 if p.parking_width_m else 0.0)
    return layout, np.array(lines, np.float32).reshape(-1, 5)


# --------------------------------------------------------------------------- scene


@dataclass
class Scene:
    """A built scene: mesh + appearance tables, its Embree scene, road, lighting."""

    style: str
    mesh: MeshArrays
    raycaster: object                # open3d.t.geometry.RaycastingScene (open3d is imported lazily)
    surfaces: Surfaces
    road: Road
    layout: Layout
    env: Environment
    noise: Noise
    threads: int

    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        """First hits of rays (n, 6) float32 ``[origin, direction]`` (world frame) as numpy arrays."""
        import open3d as o3d

        out = self.raycaster.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self.threads)
        return {k: out[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs", "primitive_normals")}

    def occluded(self, rays: np.ndarray) -> np.ndarray:
        """Whether rays (n, 6) hit anything (shadow rays)."""
        import open3d as o3d

        return self.raycaster.test_occlusions(o3d.core.Tensor.from_numpy(rays), nthreads=self.threads).numpy()


def build_scene(style: str, seed: int, length_m: float, threads: int = 0) -> Scene:
    """Generate the scene of ``(style, seed)`` along a road of ``length_m`` metres.

    ``threads``: Embree threads for building and casting (0: all cores).
    """
    if style not in STYLES:
        raise CrossI2PError(f"unknown synthetic scene style {style!r}; use one of {', '.join(STYLES)}")
    style_id = STYLES.index(style)
    p = STYLE_PARAMS[style]
    rng = np.random.default_rng([seed, style_id, 1])
    road = Road.random(rng, length_m, p.max_curvature)
    layout, lines = _layout(p, rng)
    env = indoor_environment(rng) if style == "indoor" else random_environment(rng)
    noise = Noise(rng)
    B = MeshBuilder()
    ctx = _Ctx(B, road, layout, p, rng.uniform(0.0, 3.5) if style == "highway" else 0.0,
               rng.uniform(3.0, 5.0) if style == "indoor" else 0.0)
    _ground(ctx, rng, style)
    crossings: list[tuple[float, float]] = []
    block_fn = {"urban": _urban_block, "suburban": _suburban_block, "highway": _highway_block,
                "indoor": _indoor_block}[style]
    for b in range(int(np.ceil(length_m / BLOCK_M))):
        s0, s1 = b * BLOCK_M, min((b + 1) * BLOCK_M, length_m)
        block_rng = np.random.default_rng([seed, style_id, 2, b])
        block_fn(ctx, block_rng, s0, s1, crossings)
        if style != "indoor":
            _backdrop(ctx, block_rng, s0, style)
    mesh = B.build()
    # imported here, not at the top: the CLI and the trainer import this module's constants on machines
    # without open3d (a lent GPU machine trains from caches, crossi2p_ros/data/cache.py)
    import open3d as o3d

    raycaster = o3d.t.geometry.RaycastingScene(nthreads=threads)
    raycaster.add_triangles(o3d.core.Tensor.from_numpy(mesh.verts), o3d.core.Tensor.from_numpy(mesh.faces))
    markings = RoadMarkings(lines=lines, crossings=np.array(crossings, np.float32).reshape(-1, 2),
                            lane_centres=layout.lane_centres.astype(np.float32), half_width=layout.road_half)
    return Scene(style, mesh, raycaster, Surfaces(mesh, noise, markings), road, layout, env, noise, threads)


@dataclass
class _Ctx:
    B: MeshBuilder
    road: Road
    lay: Layout
    p: StyleParams
    embankment_m: float  # highway: height of the cut beside the road
    ceiling_m: float = 0.0  # indoor: the ceiling's height

    def terrain_z(self, d: float) -> float:
        """Ground height [m] at lateral offset ``d`` off the carriageway."""
        ad = abs(d)
        if self.embankment_m == 0.0 and self.lay.curb_height == 0.0:
            return 0.0
        if self.p.median_half_m > 0:  # highway profile: ditch, then a slope up to the cut
            r = self.lay.road_half
            return float(np.interp(ad, [r, r + 2, r + 4, r + 14, _TERRAIN_OUTER_M],
                                   [0.0, -0.6, -0.6, self.embankment_m, self.embankment_m]))
        return self.lay.curb_height if ad >= self.lay.road_half else 0.0


# --------------------------------------------------------------------------- strips and ground


def _strip(ctx: _Ctx, s0: float, s1: float, d0: float, z0: float, d1: float, z1: float,
           material: Mat, obj: int, ds: float = 2.0) -> None:
    """A ribbon following the road between offsets ``d0`` and ``d1`` (heights ``z0``, ``z1``).

    uv = (s, d) on ribbons that run across, (s, z) on vertical ones (``d0 == d1``).
    """
    n = max(int(np.ceil((s1 - s0) / ds)), 1) + 1
    s = np.linspace(s0, s1, n)
    xy0 = ctx.road.point(s, np.full(n, d0))
    xy1 = ctx.road.point(s, np.full(n, d1))
    verts = np.concatenate([np.column_stack([xy0, np.full(n, z0)]), np.column_stack([xy1, np.full(n, z1)])])
    vertical = d0 == d1
    if vertical:
        uv = np.concatenate([np.column_stack([s, np.full(n, z0)]), np.column_stack([s, np.full(n, z1)])])
    else:
        uv = np.concatenate([np.column_stack([s, np.full(n, d0)]), np.column_stack([s, np.full(n, d1)])])
    uvw = np.column_stack([uv, np.zeros(2 * n)])
    _, h = ctx.road.frame(s)
    tangent = np.column_stack([np.cos(h), np.sin(h), np.zeros(n)])
    across = verts[n:] - verts[:n]
    nrm = np.cross(tangent, across)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
    if vertical:  # face the road centreline
        left = np.column_stack([-np.sin(h), np.cos(h), np.zeros(n)])
        nrm = -np.sign(d0 if d0 != 0 else 1.0) * left
    elif np.mean(nrm[:, 2]) < 0:
        nrm = -nrm
    i = np.arange(n - 1)
    faces = np.concatenate([np.stack([i, i + 1, n + i + 1], 1), np.stack([i, n + i + 1, n + i], 1)])
    ctx.B.add(Part(verts, uvw, np.concatenate([nrm, nrm]), faces), material, obj)


def _ground(ctx: _Ctx, rng: np.random.Generator, style: str) -> None:
    """Road surface, curbs, sidewalks, verges, terrain ribbons and the far ground plane (indoors: the hall's
    floor and ceiling)."""
    B, lay, p = ctx.B, ctx.lay, ctx.p
    L = ctx.road.length
    if style == "indoor":
        _floor_and_ceiling(ctx, rng)
        return
    asphalt = B.new_object(srgb("#5c5c5a") * rng.uniform(0.75, 1.25) * rng.uniform(0.97, 1.03, 3))
    _strip(ctx, 0, L, -lay.road_half, 0.0, lay.road_half, 0.0, Mat.ASPHALT, asphalt)
    grass = B.new_object(_pick(rng, ["#56722f", "#5e7a35", "#4f6a2c", "#6a7a3a"]), (0,))
    paving = B.new_object(srgb("#8a8680") * rng.uniform(0.85, 1.1), (1,))
    gravel = B.new_object(srgb("#7a7264") * rng.uniform(0.85, 1.1), (2,))
    off_road = {"urban": paving, "suburban": grass, "highway": grass}[style]
    ch = lay.curb_height
    for side in (-1.0, 1.0):
        if ch > 0:
            curb = B.new_object(srgb("#a09c96") * rng.uniform(0.85, 1.1))
            _strip(ctx, 0, L, side * lay.road_half, 0.0, side * lay.road_half, ch, Mat.CURB, curb)
            _strip(ctx, 0, L, side * lay.road_half, ch, side * (lay.road_half + 0.2), ch, Mat.CURB, curb)
        if p.verge_m > 0:
            _strip(ctx, 0, L, side * (lay.road_half + 0.2), ch, side * lay.sidewalk[0], ch, Mat.TERRAIN, grass)
        if p.sidewalk_m > 0:
            walk = B.new_object(srgb("#aaa69e") * rng.uniform(0.8, 1.1))
            _strip(ctx, 0, L, side * lay.sidewalk[0], ch, side * lay.sidewalk[1], ch, Mat.SIDEWALK, walk)
        if style == "highway":  # gravel edge, ditch, slope, cut top
            r = lay.road_half
            prof = [r, r + 1.0, r + 2, r + 4, r + 14, _TERRAIN_OUTER_M]
            for a, b in zip(prof[:-1], prof[1:]):
                _strip(ctx, 0, L, side * a, ctx.terrain_z(a), side * b, ctx.terrain_z(b), Mat.TERRAIN,
                       gravel if a == r else grass, ds=4.0)
            z_out = ctx.embankment_m
        else:
            _strip(ctx, 0, L, side * lay.lot_start, ch, side * _TERRAIN_OUTER_M, ch, Mat.TERRAIN, off_road, ds=4.0)
            z_out = ch
        _strip(ctx, 0, L, side * _TERRAIN_OUTER_M, z_out, side * (_TERRAIN_OUTER_M + 40), _GROUND_Z,
               Mat.TERRAIN, grass, ds=4.0)
    if style == "highway":  # median barrier (New Jersey profile) and guard rails, the whole length
        barrier = B.new_object(srgb("#b0aca4") * rng.uniform(0.85, 1.05), (4.0,))
        for side in (-1.0, 1.0):
            _strip(ctx, 0, L, side * 0.3, 0.0, side * 0.2, 0.3, Mat.CONCRETE, barrier)
            _strip(ctx, 0, L, side * 0.2, 0.3, side * 0.1, 0.85, Mat.CONCRETE, barrier)
        _strip(ctx, 0, L, -0.1, 0.85, 0.1, 0.85, Mat.CONCRETE, barrier)
        rail = B.new_object(srgb("#a4a8ac"))
        post = B.new_object(srgb("#7a7e80"))
        for side in (-1.0, 1.0):
            d = side * (lay.road_half + 0.6)
            _strip(ctx, 0, L, d, 0.45, d, 0.78, Mat.GUARDRAIL, rail)
            s = np.arange(2.0, L, 4.0)
            _, h = ctx.road.frame(s)
            xy = ctx.road.point(s, np.full(len(s), d + side * 0.1))
            c, si = np.cos(h), np.sin(h)
            Rs = np.zeros((len(s), 3, 3))
            Rs[:, 0, 0], Rs[:, 0, 1], Rs[:, 1, 0], Rs[:, 1, 1], Rs[:, 2, 2] = c, -si, si, c, 1.0
            B.add_many(box(0.1, 0.15, 0.75), Mat.METAL, post, Rs, np.column_stack([xy, np.zeros(len(s))]))
    # far ground plane under everything, well beyond the camera's horizon
    lo = ctx.road.xy.min(0) - 3000.0
    hi = ctx.road.xy.max(0) + 3000.0
    v = np.array([[lo[0], lo[1], _GROUND_Z], [hi[0], lo[1], _GROUND_Z], [hi[0], hi[1], _GROUND_Z], [lo[0], hi[1], _GROUND_Z]])
    B.add(Part(v, np.column_stack([v[:, :2], np.zeros(4)]), np.tile([0.0, 0.0, 1.0], (4, 1)),
               np.array([[0, 1, 2], [0, 2, 3]])), Mat.TERRAIN, grass)


# --------------------------------------------------------------------------- objects


def _building(ctx: _Ctx, rng: np.random.Generator, s: float, d_front: float, side: float, width: float,
              depth: float, height: float, kind: int, z: float, shop: bool, cornice: bool = True) -> None:
    """A block of flats or offices with its street face at ``|d| = d_front``."""
    palette = {PLASTER: _PLASTER, BRICK: _BRICK, PANELS: _PANELS, CURTAIN_WALL: _CURTAIN, SIDING: _SIDING}[kind]
    floor_h = rng.uniform(2.9, 3.6)
    ground_h = rng.uniform(3.6, 4.5) if shop else floor_h
    spacing = rng.uniform(2.4, 4.0)
    win_w = min(rng.uniform(0.9, 1.8), spacing - 0.5)
    win_h = min(rng.uniform(1.2, 1.9), floor_h - 1.1)
    params = (kind, floor_h, win_w, win_h, spacing, height, ground_h, float(shop))
    obj = ctx.B.new_object(_pick(rng, palette), params)
    R, t = ctx.road.pose(s, side * (d_front + depth / 2), z)
    ctx.B.add(box(width, depth, height), Mat.FACADE, obj, R, t)
    if cornice and kind != CURTAIN_WALL and rng.uniform() < 0.6:
        trim = ctx.B.new_object(srgb("#d8d4ca") * rng.uniform(0.7, 1.05), (3.0,))
        ctx.B.add(box(width + 0.4, depth + 0.4, 0.35), Mat.CONCRETE, trim, R, t + np.array([0, 0, height - 0.35]))
    if rng.uniform() < 0.35:  # roof structure: lift housing, plant room
        w, dd, h = rng.uniform(3, 8), rng.uniform(3, 6), rng.uniform(2, 3.5)
        roof = ctx.B.new_object(srgb("#8a8884"), (3.0,))
        off = R @ np.array([rng.uniform(-width / 4, width / 4), rng.uniform(-depth / 4, depth / 4), height])
        ctx.B.add(box(w, dd, h), Mat.CONCRETE, roof, R, t + off)


def _house(ctx: _Ctx, rng: np.random.Generator, s: float, d_front: float, side: float) -> float:
    """A detached house with a gable roof; returns its width along the road."""
    width, depth = rng.uniform(8.0, 13.0), rng.uniform(7.5, 11.0)
    floors = int(rng.integers(1, 3))
    wall_h = floors * rng.uniform(2.7, 3.0) + 0.3
    kind = SIDING if rng.uniform() < 0.45 else (BRICK if rng.uniform() < 0.4 else PLASTER)
    palette = {PLASTER: _PLASTER, BRICK: _BRICK, SIDING: _SIDING}[kind]
    floor_h = (wall_h - 0.3) / floors
    params = (kind, floor_h, rng.uniform(0.9, 1.4), min(rng.uniform(1.1, 1.5), floor_h - 1.1),
              rng.uniform(2.6, 3.6), wall_h + 2.0, floor_h, 0.0)
    wall = ctx.B.new_object(_pick(rng, palette), params)
    z = ctx.lay.curb_height
    R, t = ctx.road.pose(s, side * (d_front + depth / 2), z)
    ctx.B.add(box(width, depth, wall_h), Mat.FACADE, wall, R, t)
    slopes, gables = gable_roof(width, depth, rng.uniform(1.8, 3.5))
    roof = ctx.B.new_object(_pick(rng, _ROOF_TILES, 0.15), (1.0,))
    top = t + np.array([0.0, 0.0, wall_h])
    ctx.B.add(slopes, Mat.ROOF, roof, R, top)
    ctx.B.add(gables, Mat.FACADE, wall, R, top)
    return width


def _car(ctx: _Ctx, rng: np.random.Generator, R: np.ndarray, t: np.ndarray, kind: int | None = None) -> None:
    """A car (0 sedan, 1 hatchback/SUV, 2 van) or truck (3) facing local +x, wheels on z = 0."""
    kind = int(rng.choice(4, p=[0.45, 0.35, 0.12, 0.08])) if kind is None else kind
    B = ctx.B
    color = _pick(rng, _CARS, 0.05)
    paint = B.new_object(color)
    if kind == 3:
        cab_l, box_l, w = 2.3, rng.uniform(6.0, 9.0), 2.5
        wheel_r, clear = 0.5, 0.55
        cargo = B.new_object(_pick(rng, ["#e8e8e8", "#d0d0d0", "#2a4a8a", "#8a1a1a", "#c8b890"], 0.05))
        B.add(box(box_l, w, 3.0), Mat.CAR_PAINT, cargo, R, t + R @ np.array([-cab_l / 2, 0, clear + 0.1]))
        B.add(box(cab_l, w, 1.1), Mat.CAR_PAINT, paint, R, t + R @ np.array([box_l / 2 + 0.1, 0, clear]))
        B.add(box(cab_l, w * 0.98, 1.3, (0.95, 0.98)), Mat.CAR_CABIN, paint, R,
              t + R @ np.array([box_l / 2 + 0.1, 0, clear + 1.1]))
        length = box_l + cab_l
        axles = [box_l / 2 + 0.4, -box_l / 2 + 1.2, -box_l / 2 + 2.5]
    else:
        length, w, body_h, cabin_h = {
            0: (rng.uniform(4.3, 4.9), rng.uniform(1.75, 1.85), 0.68, 0.48),
            1: (rng.uniform(3.8, 4.7), rng.uniform(1.7, 1.9), 0.8, 0.62),
            2: (rng.uniform(4.8, 5.4), 1.95, 1.1, 0.9),
        }[kind]
        wheel_r, clear = 0.32, 0.3
        cab_len = length * (0.5 if kind == 0 else 0.62 if kind == 1 else 0.8)
        shift = -0.08 * length if kind == 0 else -0.12 * length if kind == 1 else 0.05 * length
        B.add(box(length, w, body_h), Mat.CAR_PAINT, paint, R, t + R @ np.array([0, 0, clear]))
        top = (0.72, 0.86) if kind == 0 else (0.85, 0.88) if kind == 1 else (0.92, 0.95)
        B.add(box(cab_len, w * 0.94, cabin_h, top, top_shift_x=-0.05 * length), Mat.CAR_CABIN, paint,
              R, t + R @ np.array([shift, 0, clear + body_h]))
        axles = [length / 2 - 0.8, -length / 2 + 0.8]
    tire = B.new_object(srgb("#1a1a1a"))
    wheel = cylinder(wheel_r, wheel_r, 0.24, sides=10, caps="both")
    for ax in axles:
        for side in (-1.0, 1.0):
            Rw = R @ rot_x(-side * np.pi / 2)  # cylinder axis -> +-y
            pos = t + R @ np.array([ax, side * (w / 2 - 0.25), wheel_r])
            B.add(wheel, Mat.TIRE, tire, Rw, pos)


def _tree(ctx: _Ctx, rng: np.random.Generator, xy: np.ndarray, z: float, kind: int = 0, scale: float = 1.0) -> None:
    """A tree at world ``xy`` on ground height ``z``: 0 broadleaf, 1 conifer, 2 bush."""
    B = ctx.B
    R = rot_z(rng.uniform(-np.pi, np.pi))
    base = np.array([xy[0], xy[1], z])
    leaf = B.new_object(_pick(rng, _FOLIAGE, 0.12))
    uv_off = tuple(rng.uniform(0, 200, 2))
    if kind == 2:
        r = rng.uniform(0.5, 1.2) * scale
        B.add(blob((r * rng.uniform(1, 1.5), r, r * 0.8), rng, 0.25), Mat.FOLIAGE, leaf, R, base + [0, 0, r * 0.5],
              uv_off)
        return
    bark = B.new_object(_pick(rng, _BARK, 0.1))
    if kind == 1:
        h = rng.uniform(6.0, 14.0) * scale
        B.add(cylinder(0.2 * scale, 0.1, h * 0.4, 6), Mat.BARK, bark, R, base)
        r = h * rng.uniform(0.18, 0.25)
        for z0, frac in ((0.15, 1.0), (0.45, 0.75), (0.7, 0.5)):
            B.add(cylinder(r * frac, 0.0, h * 0.45, 9, caps="both"), Mat.FOLIAGE, leaf, R, base + [0, 0, h * z0], uv_off)
        return
    h_trunk = rng.uniform(2.0, 3.5) * scale
    crown = rng.uniform(1.8, 3.2) * scale
    B.add(cylinder(0.16 * scale, 0.11 * scale, h_trunk + crown * 0.5, 7), Mat.BARK, bark, R, base)
    for _ in range(int(rng.integers(2, 5))):
        off = rng.normal(0, crown * 0.35, 3)
        r = crown * rng.uniform(0.6, 0.9)
        c = base + np.array([off[0], off[1], h_trunk + crown * 0.8 + off[2] * 0.5])
        B.add(blob((r, r * rng.uniform(0.85, 1.15), r * rng.uniform(0.75, 1.0)), rng, 0.22), Mat.FOLIAGE, leaf,
              R, c, uv_off)


def _street_light(ctx: _Ctx, rng: np.random.Generator, s: float, d: float, z: float, double: bool = False) -> None:
    B = ctx.B
    side = np.sign(d) if d != 0 else 1.0
    R, t = ctx.road.pose(s, d, z)
    h = rng.uniform(6.5, 9.0)
    pole = B.new_object(_pick(rng, _POLES, 0.05))
    B.add(cylinder(0.11, 0.07, h, 8), Mat.METAL, pole, R, t)
    lamp = B.new_object(srgb("#d8d8d4"))
    arm = rng.uniform(1.2, 2.2)
    for sgn in ((-1.0, 1.0) if double else (-side,)):
        B.add(box(0.08, arm, 0.08), Mat.METAL, pole, R, t + R @ np.array([0, sgn * arm / 2, h - 0.1]))
        B.add(box(0.35, 0.6, 0.14), Mat.PLASTIC, lamp, R, t + R @ np.array([0, sgn * (arm - 0.1), h - 0.22]))


def _sign(ctx: _Ctx, rng: np.random.Generator, s: float, d: float, z: float, height: float | None = None,
          size: float | None = None) -> None:
    """A traffic sign on a post at road coordinates ``(s, d)``, facing oncoming traffic."""
    B = ctx.B
    R, t = ctx.road.pose(s, d, z, yaw=rng.normal(0, 0.08))
    height = rng.uniform(2.0, 2.6) if height is None else height
    post = B.new_object(srgb("#8a8c8e"))
    B.add(cylinder(0.035, 0.035, height, 6), Mat.METAL, post, R, t)
    round_ = rng.uniform() < 0.5
    size = rng.uniform(0.55, 0.8) if size is None else size
    color = _pick(rng, _SIGNS, 0.05)
    if round_:
        obj = B.new_object(color, (1.0, size))
        B.add(cylinder(size / 2, size / 2, 0.03, 16, caps="both"), Mat.SIGN, obj, R @ rot_y(np.pi / 2),
              t + R @ np.array([0.04, 0, height]))
    else:
        h = size * rng.uniform(0.8, 1.3)
        obj = B.new_object(color, (0.0, h))
        B.add(box(0.03, size, h), Mat.SIGN, obj, R, t + R @ np.array([0.04, 0, height - h / 2]))


def _clutter(ctx: _Ctx, rng: np.random.Generator, s: float, d: float, z: float) -> None:
    """A bin, bollard, crate, hydrant, cabinet or planter."""
    B = ctx.B
    R, t = ctx.road.pose(s, d, z, yaw=rng.normal(0, 0.3))
    kind = int(rng.integers(6))
    if kind == 0:
        obj = B.new_object(_pick(rng, _BINS))
        if rng.uniform() < 0.5:
            B.add(box(0.6, 0.7, rng.uniform(0.9, 1.1)), Mat.PLASTIC, obj, R, t)
        else:
            B.add(cylinder(0.3, 0.28, 0.9, 10), Mat.PLASTIC, obj, R, t)
    elif kind == 1:
        obj = B.new_object(_pick(rng, _POLES, 0.05))
        for k in range(int(rng.integers(1, 4))):
            B.add(cylinder(0.08, 0.08, 0.9, 8), Mat.METAL, obj, R, t + R @ np.array([k * 1.5, 0, 0]))
    elif kind == 2:
        obj = B.new_object(_pick(rng, ["#8a6a48", "#a07a50", "#b08a60"]), (0.0,))
        for k in range(int(rng.integers(1, 4))):
            sz = rng.uniform(0.4, 0.9)
            B.add(box(sz, sz * rng.uniform(0.8, 1.2), sz), Mat.WOOD, obj, R, t + R @ np.array([k * 0.9, 0, 0]))
    elif kind == 3:
        obj = B.new_object(srgb("#a81c1c") * rng.uniform(0.8, 1.1))
        B.add(cylinder(0.13, 0.12, 0.7, 8), Mat.PLASTIC, obj, R, t)
    elif kind == 4:
        obj = B.new_object(srgb("#8a8e8a") * rng.uniform(0.8, 1.1))
        B.add(box(0.9, 0.45, 1.35), Mat.METAL, obj, R, t)
    else:
        obj = B.new_object(srgb("#9a968e"), (2.0,))
        B.add(box(1.2, 1.2, 0.6), Mat.CONCRETE, obj, R, t)
        _tree(ctx, rng, t[:2], z + 0.5, kind=2, scale=0.8)


def _traffic(ctx: _Ctx, rng: np.random.Generator, s0: float, s1: float, count: int) -> None:
    """Cars in lanes other than the rig's, facing their direction of travel."""
    others = [d for d in ctx.lay.lane_centres if abs(d - ctx.lay.ego_d) > 0.5]
    for _ in range(count):
        d = float(others[rng.integers(len(others))]) + rng.normal(0, 0.2)
        s = rng.uniform(s0 + 5, s1 - 5)
        yaw = (0.0 if d < 0 else np.pi) + rng.normal(0, 0.02)
        R, t = ctx.road.pose(s, d, 0.0, yaw)
        _car(ctx, rng, R, t, kind=None if ctx.p.median_half_m > 0 else int(rng.choice(3, p=[0.5, 0.38, 0.12])))


def _parked_row(ctx: _Ctx, rng: np.random.Generator, s0: float, s1: float, d: float, occupancy: float) -> None:
    s = s0 + rng.uniform(0.5, 3.0)
    while s < s1 - 5.0:
        length = 5.5 + rng.uniform(0.3, 2.5)
        if rng.uniform() < occupancy:
            yaw = (0.0 if d < 0 else np.pi) + rng.normal(0, 0.02)
            R, t = ctx.road.pose(s + length / 2, d + rng.normal(0, 0.1), 0.0, yaw)
            _car(ctx, rng, R, t, kind=int(rng.choice(3, p=[0.5, 0.38, 0.12])))
        s += length


def _backdrop(ctx: _Ctx, rng: np.random.Generator, s0: float, style: str) -> None:
    """Far scenery that fills the horizon: hills, or a skyline in the city."""
    B = ctx.B
    for side in (-1.0, 1.0):
        if rng.uniform() > 0.6:
            continue
        s = s0 + rng.uniform(0, BLOCK_M)
        if style == "urban":
            d = side * rng.uniform(130.0, 400.0)
            w, dd, h = rng.uniform(20, 45), rng.uniform(20, 40), rng.uniform(30, 110)
            kind = CURTAIN_WALL if rng.uniform() < 0.5 else PANELS
            obj = B.new_object(_pick(rng, _CURTAIN if kind == CURTAIN_WALL else _PANELS),
                               (kind, 3.5, 1.5, 1.6, 3.0, h, 3.5, 0.0))
            R, t = ctx.road.pose(s, d, 0.0, rng.uniform(-0.3, 0.3))
            B.add(box(w, dd, h), Mat.FACADE, obj, R, t)
        else:
            d = side * rng.uniform(300.0, 900.0)
            obj = B.new_object(_pick(rng, ["#4a6a35", "#56703a", "#3d5a30"], 0.1), (0,))
            R, t = ctx.road.pose(s, d, -10.0)
            rad = rng.uniform(100, 250)
            B.add(blob((rad, rad * rng.uniform(0.6, 1.2), rng.uniform(25, 80)), rng, 0.3), Mat.TERRAIN, obj, R, t)


# --------------------------------------------------------------------------- indoor


def indoor_environment(rng: np.random.Generator) -> Environment:
    """Light inside a hall: from the ceiling's lamps above and bounced off the floor; no sun reaches in (its
    shadow rays all meet the ceiling), and what a glossy surface mirrors is the ceiling's grey, not a sky."""
    grey = srgb("#9a9a96") * rng.uniform(0.8, 1.1)
    warm = rng.uniform(0.0, 1.0)
    lamps = np.array([1.0, 0.97 - 0.05 * warm, 0.92 - 0.12 * warm]) * rng.uniform(0.9, 1.3)
    return Environment(sun_dir=np.array([0.0, 0.0, 1.0], np.float32), sun_rgb=np.zeros(3, np.float32),
                       sky_zenith=grey.astype(np.float32), sky_horizon=grey.astype(np.float32),
                       ambient_sky=lamps.astype(np.float32), ambient_ground=(0.35 * lamps).astype(np.float32),
                       cloud_cover=0.0, fog_distance_m=1e5, exposure=float(rng.uniform(1.1, 1.4)))


def _floor_and_ceiling(ctx: _Ctx, rng: np.random.Generator) -> None:
    """The hall's concrete floor (tape lines along the aisle, as the road's paint) and its ceiling, both wide
    enough to cover the rooms beside the aisle."""
    B, L = ctx.B, ctx.road.length
    reach = INDOOR_WALL_M[1] + INDOOR_ROOM_DEPTH_M[1] + 1.0
    floor = B.new_object(srgb("#9c9a94") * rng.uniform(0.8, 1.15) * rng.uniform(0.97, 1.03, 3))
    _strip(ctx, 0, L, -reach, 0.0, reach, 0.0, Mat.ASPHALT, floor)
    ceiling = B.new_object(srgb("#d8d6d0") * rng.uniform(0.8, 1.05), (rng.uniform(1.2, 3.0),))
    # its normals point up like the floor's: the renderer turns every normal towards the camera
    _strip(ctx, 0, L, -reach, ctx.ceiling_m, reach, ctx.ceiling_m, Mat.CONCRETE, ceiling)


def _wall_run(ctx: _Ctx, s0: float, s1: float, d: float, material: Mat, obj: int) -> None:
    """A wall from floor to ceiling along the aisle at offset ``d`` between ``s0`` and ``s1``."""
    _strip(ctx, s0, s1, d, 0.0, d, ctx.ceiling_m, material, obj, ds=1.0)


def _cross_wall(ctx: _Ctx, s: float, d0: float, d1: float, obj: int) -> None:
    """A wall across the aisle's direction at ``s`` from offset ``d0`` to ``d1`` (a room's side)."""
    R, t = ctx.road.pose(s, 0.5 * (d0 + d1))
    ctx.B.add(box(0.12, abs(d1 - d0), ctx.ceiling_m), Mat.CONCRETE, obj, R, t)


def _rack(ctx: _Ctx, rng: np.random.Generator, s: float, d: float, side: float, length: float) -> None:
    """A shelving rack with its back to a wall: uprights, shelves and cartons on them."""
    B = ctx.B
    depth, height = rng.uniform(0.5, 0.8), min(rng.uniform(1.8, 2.8), ctx.ceiling_m - 0.3)
    R, t = ctx.road.pose(s, d - side * depth / 2)
    frame = B.new_object(_pick(rng, ["#2a4a8a", "#c86010", "#6a6e72", "#2e5a32"], 0.05))
    for x in np.linspace(-length / 2, length / 2, int(length // 1.2) + 2):
        for y in (-depth / 2, depth / 2):
            B.add(box(0.07, 0.07, height), Mat.METAL, frame, R, t + R @ np.array([x, y, 0.0]))
    levels = np.linspace(0.15, height - 0.05, int(rng.integers(3, 6)))
    for z in levels:
        B.add(box(length, depth, 0.04), Mat.METAL, frame, R, t + np.array([0.0, 0.0, z]))
    cartons = B.new_object(_pick(rng, ["#a07a50", "#b08a60", "#8a6a48", "#c0a070"], 0.1), (0.0,))
    for z0, z1 in zip(levels[:-1], levels[1:]):
        x = -length / 2 + 0.05
        while x < length / 2 - 0.3:
            w = rng.uniform(0.3, 0.8)
            if rng.uniform() < 0.75:
                h = min(rng.uniform(0.2, 0.6), z1 - z0 - 0.06)
                dd = depth * rng.uniform(0.6, 0.95)
                B.add(box(min(w, length / 2 - x), dd, h), Mat.WOOD, cartons, R,
                      t + R @ np.array([x + min(w, length / 2 - x) / 2, 0.0, z0 + 0.04]))
            x += w + rng.uniform(0.02, 0.2)


def _furniture(ctx: _Ctx, rng: np.random.Generator, s: float, d: float) -> None:
    """A cabinet, a table, a stack of crates or a machine on the floor, at most 1 m deep across the aisle."""
    B = ctx.B
    R, t = ctx.road.pose(s, d, 0.0, yaw=rng.normal(0, 0.15))
    kind = int(rng.integers(4))
    if kind == 0:
        obj = B.new_object(_pick(rng, ["#8a8e8a", "#d0d0cc", "#5a5e62"]))
        B.add(box(rng.uniform(0.8, 1.2), 0.5, rng.uniform(1.2, 2.0)), Mat.METAL, obj, R, t)
    elif kind == 1:
        obj = B.new_object(_pick(rng, ["#b08a60", "#d8d4ca", "#6a5a48"]), (0.0,))
        w, dd, h = rng.uniform(1.2, 2.0), rng.uniform(0.6, 0.9), rng.uniform(0.72, 0.78)
        B.add(box(w, dd, 0.04), Mat.WOOD, obj, R, t + np.array([0.0, 0.0, h - 0.04]))
        for x in (-w / 2 + 0.05, w / 2 - 0.05):
            for y in (-dd / 2 + 0.05, dd / 2 - 0.05):
                B.add(box(0.05, 0.05, h - 0.04), Mat.METAL, obj, R, t + R @ np.array([x, y, 0.0]))
    elif kind == 2:
        obj = B.new_object(_pick(rng, ["#2a4a7a", "#c83020", "#2e5a32", "#505050"]))
        for k in range(int(rng.integers(2, 5))):
            B.add(box(0.6, 0.4, 0.3), Mat.PLASTIC, obj, R, t + np.array([0.0, 0.0, 0.3 * k]))
    else:
        obj = B.new_object(_pick(rng, ["#c8c8c0", "#4a6a8a", "#8a9a7a"]))
        B.add(box(rng.uniform(1.0, 2.5), rng.uniform(0.6, 1.0), rng.uniform(1.0, 2.2)), Mat.METAL, obj, R, t)


def _indoor_block(ctx: _Ctx, rng: np.random.Generator, s0: float, s1: float, crossings: list) -> None:
    """One stretch of the hall: on each side a wall with openings into rooms, racks and furniture against
    it, and pillars along the aisle."""
    del crossings   # no zebra crossings indoors
    for side in (-1.0, 1.0):
        d_wall = rng.uniform(*INDOOR_WALL_M)
        kind = Mat.CONCRETE if rng.uniform() < 0.5 else Mat.FACADE
        params = (rng.uniform(1.2, 4.0),) if kind == Mat.CONCRETE else \
            (PLASTER, ctx.ceiling_m, rng.uniform(0.9, 1.2), min(2.1, ctx.ceiling_m - 0.4), rng.uniform(3.0, 6.0),
             ctx.ceiling_m, ctx.ceiling_m, 0.0)
        wall = ctx.B.new_object(_pick(rng, _PLASTER if kind == Mat.FACADE else _PANELS), params)
        s = s0
        while s < s1 - 0.5:
            run = min(rng.uniform(4.0, 14.0), s1 - s)
            _wall_run(ctx, s, s + run, side * d_wall, kind, wall)
            # what stands against this run: racks or furniture, with gaps
            x = s + rng.uniform(0.3, 1.5)
            while x < s + run - 1.0:
                if rng.uniform() < 0.55:
                    length = min(rng.uniform(1.5, 4.0), s + run - x - 0.2)
                    if length > 1.0:
                        _rack(ctx, rng, x + length / 2, side * (d_wall - 0.05), side, length)
                    x += length + rng.uniform(0.5, 3.0)
                else:
                    _furniture(ctx, rng, x + 0.6, side * (d_wall - 0.6))
                    x += rng.uniform(1.5, 4.0)
            s += run
            if s >= s1 - 0.5:
                break
            # an opening into a room: its back wall deeper, its sides across
            width = min(rng.uniform(1.5, 5.0), s1 - s)
            room = rng.uniform(*INDOOR_ROOM_DEPTH_M)
            back = ctx.B.new_object(_pick(rng, _PLASTER), (rng.uniform(1.2, 4.0),))
            _wall_run(ctx, s - 0.5, s + width + 0.5, side * (d_wall + room), Mat.CONCRETE, back)
            _cross_wall(ctx, s, side * d_wall, side * (d_wall + room), wall)
            _cross_wall(ctx, s + width, side * d_wall, side * (d_wall + room), wall)
            if rng.uniform() < 0.6:
                _furniture(ctx, rng, s + width / 2, side * (d_wall + room - 0.8))
            s += width
    # pillars along the aisle, clear of the rig's lanes
    pillar = ctx.B.new_object(srgb("#b0aca4") * rng.uniform(0.85, 1.05), (3.0,))
    step = rng.uniform(6.0, 12.0)
    for s in np.arange(s0 + rng.uniform(0, step), s1, step):
        for side in (-1.0, 1.0):
            if rng.uniform() < 0.7:
                R, t = ctx.road.pose(s, side * (ctx.lay.road_half + rng.uniform(0.2, 0.35)))
                ctx.B.add(box(0.4, 0.4, ctx.ceiling_m), Mat.CONCRETE, pillar, R, t)


# --------------------------------------------------------------------------- blocks


def _urban_block(ctx: _Ctx, rng: np.random.Generator, s0: float, s1: float, crossings: list) -> None:
    lay = ctx.lay
    z = lay.curb_height
    crossing = None
    if rng.uniform() < 0.3:
        c = s0 + rng.uniform(12, BLOCK_M - 12)
        crossing = (c - 2.0, c + 2.0)
        crossings.append(crossing)
    for side in (-1.0, 1.0):
        # a closed row of buildings; occasional gaps and setbacks
        s = s0
        while s < s1 - 4.0:
            width = min(rng.uniform(8.0, 24.0), s1 - s)
            if width >= 4.0:
                kind = int(rng.choice([PLASTER, BRICK, PANELS, CURTAIN_WALL], p=[0.45, 0.3, 0.15, 0.1]))
                floors = int(rng.integers(3, 10))
                height = 4.0 + floors * rng.uniform(3.0, 3.4)
                _building(ctx, rng, s + width / 2, lay.lot_start + rng.uniform(0, 0.6) * (rng.uniform() < 0.3),
                          side, width - 0.05, rng.uniform(10, 18), height, kind, z, shop=rng.uniform() < 0.55)
            s += width + (rng.uniform(2.0, 8.0) if rng.uniform() < 0.12 else 0.0)
        # second row behind, taller, visible through gaps and above
        for _ in range(int(rng.integers(1, 3))):
            width = rng.uniform(15, 30)
            kind = int(rng.choice([PLASTER, BRICK, PANELS, CURTAIN_WALL], p=[0.3, 0.2, 0.3, 0.2]))
            _building(ctx, rng, rng.uniform(s0, s1), lay.lot_start + rng.uniform(22, 40), side, width,
                      rng.uniform(12, 20), rng.uniform(15, 45), kind, z, shop=False, cornice=False)
        # sidewalk furniture
        curb_d = lay.road_half + 0.6
        for s in np.arange(s0 + rng.uniform(0, 30), s1, rng.uniform(28, 36)):
            _street_light(ctx, rng, s, side * curb_d, z)
        if rng.uniform() < 0.6:
            for s in np.arange(s0 + rng.uniform(2, 10), s1 - 2, rng.uniform(8, 13)):
                if crossing is None or not (crossing[0] - 3 < s < crossing[1] + 3):
                    _tree(ctx, rng, ctx.road.point(s, side * (lay.road_half + 1.3)), z, kind=0,
                          scale=rng.uniform(0.8, 1.2))
        for _ in range(int(rng.integers(0, 3))):
            _sign(ctx, rng, rng.uniform(s0, s1), side * (lay.road_half + 0.45), z)
        for _ in range(int(rng.integers(1, 5))):
            near_wall = rng.uniform() < 0.5
            d = lay.lot_start - rng.uniform(0.4, 0.8) if near_wall else lay.road_half + rng.uniform(0.4, 0.9)
            _clutter(ctx, rng, rng.uniform(s0, s1), side * d, z)
        if crossing is not None:
            _traffic_light(ctx, rng, crossing[0] - 2.5 if side < 0 else crossing[1] + 2.5, side * (lay.road_half + 0.5), z)
        if lay.parking_d:
            parts = [(s0, s1)] if crossing is None else [(s0, crossing[0] - 4), (crossing[1] + 4, s1)]
            for a, b in parts:
                _parked_row(ctx, rng, a, b, side * lay.parking_d, rng.uniform(0.5, 0.95))
    if rng.uniform() < 0.5:
        _traffic(ctx, rng, s0, s1, 1)


def _traffic_light(ctx: _Ctx, rng: np.random.Generator, s: float, d: float, z: float) -> None:
    B = ctx.B
    R, t = ctx.road.pose(s, d, z)
    pole = B.new_object(_pick(rng, _POLES, 0.05))
    B.add(cylinder(0.08, 0.07, 3.2, 8), Mat.METAL, pole, R, t)
    head = B.new_object(srgb("#222222"))
    B.add(box(0.3, 0.35, 0.95), Mat.PLASTIC, head, R, t + np.array([0, 0, 2.4]))


def _suburban_block(ctx: _Ctx, rng: np.random.Generator, s0: float, s1: float, crossings: list) -> None:
    lay = ctx.lay
    z = lay.curb_height
    for side in (-1.0, 1.0):
        s = s0
        while s < s1 - 10:
            lot = min(rng.uniform(16, 26), s1 - s)
            if lot < 12:
                break
            setback = rng.uniform(5.0, 11.0)
            front = lay.lot_start + setback
            _house(ctx, rng, s + lot / 2 + rng.uniform(-1.5, 1.5), front, side)
            edge = rng.uniform()
            if edge < 0.35:  # hedge along the lot front
                hedge = ctx.B.new_object(_pick(rng, _FOLIAGE, 0.1))
                R, t = ctx.road.pose(s + lot * 0.35, side * (lay.lot_start + 0.6), z)
                ctx.B.add(box(lot * 0.65, 0.8, rng.uniform(0.9, 1.6)), Mat.FOLIAGE, hedge, R, t,
                          tuple(rng.uniform(0, 100, 2)))
            elif edge < 0.6:  # picket fence
                fence = ctx.B.new_object(_pick(rng, ["#e8e6e0", "#8a6a48", "#a08060"], 0.05), (1.0,))
                R, t = ctx.road.pose(s + lot * 0.35, side * (lay.lot_start + 0.4), z)
                ctx.B.add(box(lot * 0.65, 0.05, rng.uniform(0.8, 1.2)), Mat.WOOD, fence, R, t)
            drive_s = s + lot * 0.85
            slab = ctx.B.new_object(srgb("#9c988f") * rng.uniform(0.85, 1.1), (5.0,))
            R, t = ctx.road.pose(drive_s, side * (lay.lot_start + setback / 2), z)
            ctx.B.add(box(3.2, setback, 0.03), Mat.CONCRETE, slab, R, t)
            if rng.uniform() < 0.55:
                R, t = ctx.road.pose(drive_s, side * (lay.lot_start + setback * 0.5), z + 0.03,
                                     yaw=side * np.pi / 2 + rng.normal(0, 0.05) + np.pi * (rng.uniform() < 0.5))
                _car(ctx, rng, R, t, kind=int(rng.choice(3, p=[0.4, 0.5, 0.1])))
            for _ in range(int(rng.integers(0, 3))):
                d = lay.lot_start + rng.uniform(1.5, setback + 8)
                if abs(d - front) > 1.0:
                    _tree(ctx, rng, ctx.road.point(rng.uniform(s, s + lot), side * d), z,
                          kind=int(rng.choice(3, p=[0.55, 0.25, 0.2])))
            if rng.uniform() < 0.3:
                _clutter(ctx, rng, s + lot * 0.8, side * (lay.lot_start + 0.5), z)
            s += lot
        # verge trees and poles
        if rng.uniform() < 0.7:
            for s in np.arange(s0 + rng.uniform(0, 12), s1, rng.uniform(10, 20)):
                _tree(ctx, rng, ctx.road.point(s, side * (lay.road_half + 1.1)), z, kind=0, scale=rng.uniform(0.9, 1.3))
        if side > 0:
            for s in np.arange(s0 + rng.uniform(0, 40), s1, 40.0):
                _utility_pole(ctx, rng, s, side * (lay.road_half + 0.8), z)
        if rng.uniform() < 0.4:
            _sign(ctx, rng, rng.uniform(s0, s1), side * (lay.road_half + 0.5), z)
    _parked_row(ctx, rng, s0, s1, lay.road_half - 1.0, rng.uniform(0.0, 0.4))
    if rng.uniform() < 0.3:
        _traffic(ctx, rng, s0, s1, 1)


def _utility_pole(ctx: _Ctx, rng: np.random.Generator, s: float, d: float, z: float) -> None:
    B = ctx.B
    R, t = ctx.road.pose(s, d, z)
    wood = B.new_object(_pick(rng, ["#5a4a3a", "#6a5a48"], 0.08), (1.0,))
    h = rng.uniform(8.5, 10.5)
    B.add(cylinder(0.15, 0.12, h, 8), Mat.WOOD, wood, R, t)
    B.add(box(0.12, 2.2, 0.12), Mat.WOOD, wood, R, t + np.array([0, 0, h - 0.7]))


def _highway_block(ctx: _Ctx, rng: np.random.Generator, s0: float, s1: float, crossings: list) -> None:
    lay = ctx.lay
    B = ctx.B
    _street_light(ctx, rng, s0 + rng.uniform(0, BLOCK_M), 0.0, 0.85, double=True)
    for side in (-1.0, 1.0):
        if rng.uniform() < 0.3:  # noise wall segment on top of the cut
            wall = B.new_object(_pick(rng, ["#a8a49c", "#8f8c86", "#9a8a78"], 0.06), (4.0,))
            d = side * (lay.road_half + 5.0)
            zb = ctx.terrain_z(d) - 0.3
            _strip(ctx, s0, s1, d, zb, d, zb + rng.uniform(3.5, 5.0), Mat.CONCRETE, wall)
        for _ in range(int(rng.integers(0, 4))):  # clumps of trees and bushes on the slopes
            d0 = side * rng.uniform(lay.road_half + 8, 60)
            sc = rng.uniform(s0, s1)
            for _ in range(int(rng.integers(2, 7))):
                dd = d0 + rng.normal(0, 4)
                if abs(dd) < lay.road_half + 6:
                    continue
                _tree(ctx, rng, ctx.road.point(sc + rng.normal(0, 6), dd), ctx.terrain_z(dd) - 0.1,
                      kind=int(rng.choice(3, p=[0.5, 0.3, 0.2])), scale=rng.uniform(0.9, 1.4))
        if rng.uniform() < 0.3:
            _sign(ctx, rng, rng.uniform(s0, s1), side * (lay.road_half + 1.2), 0.0, height=2.2, size=0.9)
        if rng.uniform() < 0.15:  # warehouses in the distance
            kind = PANELS
            _building(ctx, rng, rng.uniform(s0, s1), rng.uniform(70, 150), side, rng.uniform(30, 80),
                      rng.uniform(20, 40), rng.uniform(8, 14), kind, ctx.embankment_m, shop=False)
    if rng.uniform() < 0.12:
        _gantry(ctx, rng, s0 + rng.uniform(5, BLOCK_M - 5))
    _traffic(ctx, rng, s0, s1, int(rng.integers(0, 4)))


def _gantry(ctx: _Ctx, rng: np.random.Generator, s: float) -> None:
    """An overhead sign gantry spanning the rig's carriageway."""
    B, lay = ctx.B, ctx.lay
    steel = B.new_object(srgb("#8a8e90"))
    d_in, d_out = -0.6, -(lay.road_half + 1.2)
    for d in (d_in, d_out):
        R, t = ctx.road.pose(s, d, 0.0)
        B.add(cylinder(0.25, 0.2, 7.6, 8), Mat.METAL, steel, R, t)
    span = d_in - d_out
    R, t = ctx.road.pose(s, (d_in + d_out) / 2, 7.0)
    B.add(box(0.8, span, 0.8), Mat.METAL, steel, R, t)
    x = -0.5
    for k in range(int(rng.integers(1, 4))):
        w = rng.uniform(3.5, 5.0)
        d = d_out + 1.5 + w / 2 + k * (w + 0.5)
        if d + w / 2 > d_in:
            break
        board = B.new_object(srgb("#1e6b3a") if rng.uniform() < 0.7 else srgb("#1f4f9f"), (0.0, 2.2))
        R, t = ctx.road.pose(s, d, 5.6)
        B.add(box(0.1, w, 2.2), Mat.SIGN, board, R, t + R @ np.array([x, 0, 0]))
