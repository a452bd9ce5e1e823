"""Low-poly mesh primitives with texture coordinates, and the builder that merges them.

Every primitive is a :class:`Part` in its own local frame [m] (z up, base at
z = 0 unless stated). Each vertex carries a shading normal and a texture
attribute ``uvw``: ``u, v`` are surface coordinates in metres (so textures
have real-world scale) and ``w`` is an auxiliary value the texture code
reads, usually the half-width of the face along ``u`` (so window grids and
pillars can stay clear of face edges). ``u`` is centred on the face, ``v``
starts at the part's base.

The merged scene is one triangle soup: per-triangle material and object ids
index the appearance tables, so a ray hit's ``primitive_id`` is all the
texture code needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np


class Part(NamedTuple):
    """A mesh in a local frame: vertices (n, 3) [m], uvw (n, 3), normals (n, 3), faces (m, 3)."""

    verts: np.ndarray
    uvw: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def rot_z(yaw: float) -> np.ndarray:
    """Rotation about +z by ``yaw`` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# Corner k of a box has bits (x, y, z) = (k & 1, k >> 1 & 1, k >> 2 & 1).
# Per face: four corners in cyclic order, the axis u runs along, the axis v runs along.
_BOX_CORNERS = np.array([[0, 2, 6, 4], [1, 3, 7, 5], [0, 1, 5, 4], [2, 3, 7, 6], [0, 1, 3, 2], [4, 5, 7, 6]])
_BOX_U = np.array([1, 1, 0, 0, 0, 0])  # -x, +x: u along y; -y, +y, -z, +z: u along x
_BOX_V = np.array([2, 2, 2, 2, 1, 1])  # vertical faces: v along z; horizontal: v along y
_BOX_BITS = np.stack([np.arange(8) & 1, (np.arange(8) >> 1) & 1, (np.arange(8) >> 2) & 1], 1).astype(np.float64)
_QUAD = np.array([[0, 1, 2], [0, 2, 3]])


def box(sx: float, sy: float, sz: float, top_scale: tuple[float, float] = (1.0, 1.0),
        top_shift_x: float = 0.0, bottom: bool = False) -> Part:
    """A box (or frustum, with ``top_scale``) centred on x, y with its base at z = 0.

    ``uvw`` per face: vertical faces get ``u`` along the face's horizontal axis
    (centred), ``v`` = z, ``w`` = the face's half-width at that vertex's height;
    horizontal faces get ``u, v`` = local x, y and ``w`` = half the x extent.
    The bottom face is left out unless ``bottom`` (it rests on the ground).
    """
    bits = _BOX_BITS
    top = bits[:, 2:3]
    half = np.array([sx / 2, sy / 2])
    scale = 1.0 + top * (np.asarray(top_scale) - 1.0)            # (8, 2)
    corners = np.empty((8, 3))
    corners[:, :2] = (bits[:, :2] * 2 - 1) * half * scale
    corners[:, 0] += top[:, 0] * top_shift_x
    corners[:, 2] = bits[:, 2] * sz
    faces = np.arange(6) if bottom else np.array([0, 1, 2, 3, 5])
    idx = _BOX_CORNERS[faces]                                      # (F, 4)
    c = corners[idx]                                               # (F, 4, 3)
    e1, e2 = c[:, 1] - c[:, 0], c[:, 3] - c[:, 0]
    n = np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1], e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                  e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], 1)
    outward = np.einsum("ij,ij->i", n, c.mean(1) - [0.0, 0.0, sz / 2])
    n *= (np.sign(outward) / np.maximum(np.linalg.norm(n, axis=1), 1e-12))[:, None]
    ua, va = _BOX_U[faces], _BOX_V[faces]
    rows = np.arange(len(faces))[:, None]
    u = c[rows, np.arange(4), ua[:, None]] - np.where(ua[:, None] == 0, top_shift_x * bits[idx, 2], 0.0)
    v = c[rows, np.arange(4), va[:, None]]
    w = np.where(va[:, None] == 2, half[ua][:, None] * scale[idx, ua[:, None]], sx / 2)
    uvw = np.stack([u, v, w], -1).reshape(-1, 3)
    tris = (_QUAD[None] + 4 * rows[:, :, None]).reshape(-1, 3)
    return Part(c.reshape(-1, 3), uvw, np.repeat(n, 4, 0), tris)


@lru_cache(maxsize=None)
def _ring(sides: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Angles, cos, sin of a ring with its seam vertex doubled; side-wall and cap triangle indices."""
    a = np.linspace(-np.pi, np.pi, sides + 1)
    i = np.arange(sides)
    m = sides + 1
    side = np.concatenate([np.stack([i, i + 1, m + i + 1], 1), np.stack([i, m + i + 1, m + i], 1)])
    cap = np.stack([np.zeros(sides, int), 1 + i, 1 + (i + 1) % sides], 1)
    return a, np.cos(a), np.sin(a), side, cap


def cylinder(r_bottom: float, r_top: float, height: float, sides: int = 8,
             caps: str = "top") -> Part:
    """A cylinder or cone frustum about +z, base at z = 0, with smooth side normals.

    Sides: ``u`` = arc length around the axis [m] (centred), ``v`` = z,
    ``w`` = half the circumference. Caps (``"top"``, ``"both"`` or ``"none"``):
    ``u, v`` = local x, y and ``w`` = the cap radius, so ``hypot(u, v) / w`` is
    the normalised radius (wheel rims, round signs).
    """
    a, ca, sa, side_faces, cap_faces = _ring(sides)
    m = sides + 1
    want = [(height, r_top, 1.0)] if caps in ("top", "both") and r_top > 0 else []
    if caps == "both" and r_bottom > 0:
        want.append((0.0, r_bottom, -1.0))
    n_verts = 2 * m + len(want) * m
    verts = np.empty((n_verts, 3))
    uvw = np.empty((n_verts, 3))
    normals = np.empty((n_verts, 3))
    r_mid = (r_bottom + r_top) / 2
    slope = (r_bottom - r_top) / height
    inv = 1.0 / np.sqrt(1.0 + slope * slope)
    for k, (r, z) in enumerate(((r_bottom, 0.0), (r_top, height))):
        sl = slice(k * m, (k + 1) * m)
        verts[sl, 0], verts[sl, 1], verts[sl, 2] = r * ca, r * sa, z
        uvw[sl, 0], uvw[sl, 1], uvw[sl, 2] = a * r_mid, z, np.pi * r_mid
        normals[sl, 0], normals[sl, 1], normals[sl, 2] = ca * inv, sa * inv, slope * inv
    faces = [side_faces]
    for k, (z, r, sign) in enumerate(want):
        base = 2 * m + k * m
        sl = slice(base, base + m)
        verts[base] = (0.0, 0.0, z)
        verts[base + 1:base + m, 0], verts[base + 1:base + m, 1], verts[base + 1:base + m, 2] = r * ca[:-1], r * sa[:-1], z
        uvw[sl, 0], uvw[sl, 1], uvw[sl, 2] = verts[sl, 0], verts[sl, 1], r
        normals[sl] = (0.0, 0.0, sign)
        faces.append(cap_faces + base)
    return Part(verts, uvw, normals, np.concatenate(faces) if len(faces) > 1 else side_faces)


def _icosphere() -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere subdivided once: 42 vertices, 80 faces."""
    p = (1 + 5 ** 0.5) / 2
    v = [[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p],
         [0, -1, -p], [0, 1, -p], [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [np.array(x, float) for x in v]
    mid: dict[tuple[int, int], int] = {}

    def midpoint(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in mid:
            mid[key] = len(verts)
            verts.append((verts[a] + verts[b]) / 2)
        return mid[key]

    faces = []
    for a, b, c in f:
        ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
        faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
    return _unit(np.array(verts)), np.array(faces)


_ICO_VERTS, _ICO_FACES = _icosphere()


def blob(radii: tuple[float, float, float], rng: np.random.Generator, bump: float = 0.2) -> Part:
    """A lumpy ellipsoid (foliage, bushes, hills) centred at the origin.

    ``uvw``: a planar map of the local position sheared by height, so noise
    textures look continuous over the blob; ``w`` = 0.
    """
    r = np.asarray(radii, float)
    scale = 1.0 + bump * rng.uniform(-1.0, 1.0, len(_ICO_VERTS))
    verts = _ICO_VERTS * r * scale[:, None]
    normals = _unit(_ICO_VERTS / r)
    uvw = np.stack([verts[:, 0] + 0.6 * verts[:, 2], verts[:, 1] - 0.4 * verts[:, 2], np.zeros(len(verts))], 1)
    return Part(verts, uvw, normals, _ICO_FACES.copy())


def gable_roof(sx: float, sy: float, rise: float, overhang: float = 0.3) -> tuple[Part, Part]:
    """A pitched roof over an ``sx`` x ``sy`` footprint, ridge along x, base at z = 0.

    Returns ``(slopes, gables)``: the two sloped planes (``u`` along the ridge,
    ``v`` up the slope) and the two triangular end walls (``u`` = y, ``v`` = z).
    """
    hx, hy = sx / 2 + overhang, sy / 2 + overhang
    drop = rise * overhang / (sy / 2)  # the eaves overhang continues the slope downwards
    slopes_v, slopes_uv, slopes_n, slopes_f = [], [], [], []
    slope_len = float(np.hypot(hy, rise + drop))
    for k, side in enumerate((-1.0, 1.0)):
        v = np.array([[-hx, side * hy, -drop], [hx, side * hy, -drop], [hx, 0.0, rise], [-hx, 0.0, rise]])
        n = _unit(np.array([0.0, side * (rise + drop), hy]))
        slopes_v.append(v)
        slopes_uv.append(np.array([[-hx, 0, hx], [hx, 0, hx], [hx, slope_len, hx], [-hx, slope_len, hx]]))
        slopes_n.append(np.repeat(n[None], 4, 0))
        slopes_f.append(np.array([[0, 1, 2], [0, 2, 3]]) + 4 * k)
    slopes = Part(np.concatenate(slopes_v), np.concatenate(slopes_uv), np.concatenate(slopes_n), np.concatenate(slopes_f))
    g_v, g_uv, g_n, g_f = [], [], [], []
    for k, side in enumerate((-1.0, 1.0)):
        x = side * sx / 2
        v = np.array([[x, -sy / 2, 0.0], [x, sy / 2, 0.0], [x, 0.0, rise]])
        g_v.append(v)
        g_uv.append(np.stack([v[:, 1], v[:, 2], np.full(3, sy / 2)], 1))
        g_n.append(np.tile([side, 0.0, 0.0], (3, 1)))
        g_f.append(np.array([[0, 1, 2]]) + 3 * k)
    gables = Part(np.concatenate(g_v), np.concatenate(g_uv), np.concatenate(g_n), np.concatenate(g_f))
    return slopes, gables


@dataclass
class MeshArrays:
    """The merged scene mesh and its per-triangle / per-object appearance tables.

    Positions are world coordinates [m] (float32, as Embree takes them).
    ``obj_color`` is a linear-RGB base albedo per object; ``obj_param`` holds
    up to ``N_PARAMS`` material-specific numbers per object (see the texture code).
    """

    verts: np.ndarray        # (V, 3) float32
    uvw: np.ndarray          # (V, 3) float32
    normals: np.ndarray      # (V, 3) float32
    faces: np.ndarray        # (T, 3) uint32
    tri_material: np.ndarray  # (T,) uint8
    tri_object: np.ndarray   # (T,) int32
    obj_color: np.ndarray    # (M, 3) float32
    obj_param: np.ndarray    # (M, N_PARAMS) float32


N_PARAMS = 8


class MeshBuilder:
    """Accumulates parts placed in the world into one triangle soup."""

    def __init__(self) -> None:
        self._verts: list[np.ndarray] = []
        self._uvw: list[np.ndarray] = []
        self._normals: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self._mats: list[np.ndarray] = []
        self._objs: list[np.ndarray] = []
        self._colors: list[np.ndarray] = []
        self._params: list[np.ndarray] = []
        self._n_verts = 0

    def new_object(self, color: np.ndarray | tuple[float, float, float], params: tuple[float, ...] = ()) -> int:
        """Register an object (base albedo in linear RGB, material parameters); returns its id."""
        p = np.zeros(N_PARAMS, np.float32)
        p[: len(params)] = params
        self._colors.append(np.asarray(color, np.float32))
        self._params.append(p)
        return len(self._colors) - 1

    def add(self, part: Part, material: int, obj: int, R: np.ndarray | None = None,
            t: np.ndarray | None = None, uv_offset: tuple[float, float] = (0.0, 0.0)) -> None:
        """Place ``part`` in the world at ``p_world = R @ p_local + t`` and append it."""
        R = np.eye(3) if R is None else R
        t = np.zeros(3) if t is None else np.asarray(t, float)
        uvw = part.uvw.copy()
        uvw[:, 0] += uv_offset[0]
        uvw[:, 1] += uv_offset[1]
        self._verts.append(part.verts @ R.T + t)
        self._normals.append(part.normals @ R.T)
        self._uvw.append(uvw)
        self._faces.append(part.faces + self._n_verts)
        self._mats.append(np.full(len(part.faces), material, np.uint8))
        self._objs.append(np.full(len(part.faces), obj, np.int32))
        self._n_verts += len(part.verts)

    def add_many(self, part: Part, material: int, obj: int, R: np.ndarray, t: np.ndarray) -> None:
        """Place copies of ``part`` at poses ``R`` (k, 3, 3), ``t`` (k, 3) in one go (posts, rails)."""
        k, n = len(t), len(part.verts)
        verts = np.einsum("kij,vj->kvi", R, part.verts) + t[:, None, :]
        normals = np.einsum("kij,vj->kvi", R, part.normals)
        faces = part.faces[None] + (self._n_verts + n * np.arange(k))[:, None, None]
        self._verts.append(verts.reshape(-1, 3))
        self._normals.append(normals.reshape(-1, 3))
        self._uvw.append(np.tile(part.uvw, (k, 1)))
        self._faces.append(faces.reshape(-1, 3))
        self._mats.append(np.full(k * len(part.faces), material, np.uint8))
        self._objs.append(np.full(k * len(part.faces), obj, np.int32))
        self._n_verts += k * n

    def build(self) -> MeshArrays:
        return MeshArrays(
            verts=np.concatenate(self._verts).astype(np.float32),
            uvw=np.concatenate(self._uvw).astype(np.float32),
            normals=np.concatenate(self._normals).astype(np.float32),
            faces=np.concatenate(self._faces).astype(np.uint32),
            tri_material=np.concatenate(self._mats),
            tri_object=np.concatenate(self._objs),
            obj_color=np.stack(self._colors).astype(np.float32),
            obj_param=np.stack(self._params).astype(np.float32),
        )
