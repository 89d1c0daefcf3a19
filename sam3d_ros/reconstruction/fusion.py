"""Multi-view object model: a truncated signed distance field in the object's own frame, fed by every view.

An `ObjectFusion` starts from a completed single-view mesh (the depth backend's or SAM 3D's): its signed distance is
the field's prior, with a low weight (`FusionConfig.prior_weight`; one view weighs 1). Every tracked view then adds,
at the tracked `T_cam_obj`, the projective signed distance of its masked depth (KinectFusion's running weighted
average, truncated at `truncation_voxels`): voxels in front of the observed surface move toward "outside", voxels just
behind it toward "inside" (at full weight within `full_weight_behind_voxels` of the surface, less deeper: a wall
thinner than the band, seen from outside, must not become thick). Voxels that project outside the (dilated) mask onto
depth farther away are free space seen by the camera: they are carved (set toward "outside"), which removes wrong
completion; so are the voxels above mask pixels on the support plane (within `plane_clearance_m`: not the
object's surface, but a bowl's or a plate's floor lies there and the camera saw through the space above it), while
what lies within one voxel below such a pixel's height counts as the object's (a floor the completion ends at must not
be carved away), and a pixel outside the mask that sees the table carves down to one voxel below it. These plane rules
go by height above the plane, not depth along the ray, so they hold wherever the grid's layers fall. Voxels
the camera never saw keep the prior, so the zero level set is the observed surface where it was observed and the
completion elsewhere, with one exception (`fill_hidden_in_hull`): behind a seen surface only a band of voxels is
fused as inside, so a completion thinner than the object (a bottle's back guessed 2 cm too shallow) left a hollow
between the sides the views saw and the completion, open toward the side no view saw, and the mesh was a shell around
it. Voxels no view saw, that never fell beside the object's mask on something farther (a gap seen within the carving
margin), and that lie inside the convex hull of the voxels views saw as the object's are the object's in the mesh.
The hull is of what was seen, so the fill never reaches past it; what no view can see (under an overhang, between
wheels on the table) becomes solid. Because the field lives in the object frame, a moving camera and a moving object
are alike.

The grid is dense over the prior's bounding box grown by `padding_fraction`, its voxel size relative to the object
(`voxel_fraction` of the largest extent, at least `min_voxel_m`) and grown until the grid fits `voxel_budget`
voxels: memory is bounded (`bytes_used`; 13 bytes per voxel). A completion can be too small (the first view saw
half of the object, the rest hidden or outside the image): when an accepted view's surface reaches beyond the grid,
the grid grows to hold it (its 1st-99th percentile per axis, plus the truncation band), at most `max_growth_fraction`
of the prior's largest extent beyond the first grid on each side; new voxels start as "outside" at the prior's
weight (they lie beyond the padding, so beyond the truncation band of the prior), the field is resampled
(trilinearly) when the budget makes the voxels coarser. The mesh is the zero level set (scikit-image's
marching cubes) of the field padded with "outside", so it is closed; its largest component is kept (watertight), with
every other piece that views observed and that holds `min_part_voxels` voxels' volume (a part the voxels cannot link
to the rest, as a handle on a thin string; specks and cut-off completion are dropped), and
coloured from the observations (running average per voxel), or from the prior mesh where nothing was observed.

Robustness: a view is skipped when the tracker's fit was poor (`min_fitness`, `max_rmse_m`), when too few of its
points agree with the current field (a wrong pose: `min_agreement`), or when most of the object is hidden
(`max_occlusion`); a partly hidden view weighs less. Depth outliers (pixels far from their 3x3 median: flying
pixels) and the mask's rim are not integrated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import open3d as o3d
import trimesh
from scipy.ndimage import binary_dilation, binary_fill_holes, map_coordinates
from scipy.spatial import ConvexHull, QhullError, cKDTree
from skimage.measure import marching_cubes

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.grasps import OBSERVED_ATTRIBUTE
from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.geometry.transforms import invert_transform, transform_points

BYTES_PER_VOXEL = 13  # tsdf float32, weight float32, colour 3 x uint8, colour-observed flag, off-silhouette flag


@dataclass
class FusionConfig:
    """How a fused object model is sized and which views it takes."""

    voxel_fraction: float = 1.0 / 96.0  # voxel size as a fraction of the prior's largest extent ...
    min_voxel_m: float = 0.002  # ... but never finer than this
    voxel_budget: int = 500_000  # most voxels of one object's grid (memory: 13 bytes each); the node's
    # fusion_voxel_budget default, so eval-fusion measures the grid the node builds
    padding_fraction: float = 0.35  # grid = prior's box grown by this fraction of its largest extent on each side
    truncation_voxels: float = 4.0  # signed distances are truncated at this many voxels
    full_weight_behind_voxels: float = 1.0  # behind the observed surface a view's weight falls linearly from here
    # to 0 at the truncation (a thin wall seen from one side is not made thick); >= truncation_voxels: no drop-off
    prior_weight: float = 0.3  # weight of the completion per voxel (one full view weighs 1)
    carve_weight: float = 1.0  # weight of free space seen outside the mask, relative to the view's
    plane_clearance_m: float = 0.006  # mask pixels less than this above the support plane are not object surface
    max_weight: float = 30.0  # running weights saturate here, so later views still count
    min_fitness: float = 0.6  # tracker fitness below which a view is skipped
    max_rmse_m: float = 0.008  # tracker residual above which a view is skipped
    min_agreement: float = 0.6  # fraction of the view's points near the observed surface below which it is skipped
    max_occlusion: float = 0.7  # fraction of the expected silhouette hidden above which a view is skipped
    outlier_jump_m: float = 0.01  # pixels further than this from their 3x3 median depth are not integrated
    mask_erode_px: int = 2  # the mask's rim (flying pixels, mixed depth) is not integrated as surface
    carve_margin_px: int = 3  # free space is carved only this far outside the mask (pose and mask error)
    max_triangles: int = 5000  # the fused mesh is decimated (quadric) above this many triangles (0 = never)
    max_growth_fraction: float = 1.0  # the grid grows for surface seen beyond it by at most this x the prior's extent
    fill_hidden_in_hull: bool = True  # in the mesh, voxels no view saw (nor saw past beside the mask) inside the
    # convex hull of what views saw of the object are the object's (a completion thinner than the object left a hollow)
    min_part_voxels: float = 64.0  # a piece apart from the largest is kept when views saw it and it holds this many
    # voxels' volume (4 x 4 x 4: a truncation band's cube); 0 keeps the largest piece only

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        for name in ("voxel_fraction", "min_voxel_m", "truncation_voxels", "prior_weight", "max_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"fusion {name} must be > 0, got {getattr(self, name)}")
        if self.voxel_budget < 1000:
            raise ValueError(f"fusion voxel_budget must be >= 1000 voxels, got {self.voxel_budget}")
        if self.padding_fraction < 0 or self.carve_weight < 0 or self.mask_erode_px < 0 or self.carve_margin_px < 0:
            raise ValueError("fusion padding_fraction, carve_weight, mask_erode_px and carve_margin_px must be >= 0")
        if not self.full_weight_behind_voxels >= 0:
            raise ValueError(f"fusion full_weight_behind_voxels must be >= 0, got {self.full_weight_behind_voxels}")
        if not self.max_growth_fraction >= 0:
            raise ValueError(f"fusion max_growth_fraction must be >= 0, got {self.max_growth_fraction}")
        if not self.min_part_voxels >= 0:
            raise ValueError(f"fusion min_part_voxels must be >= 0, got {self.min_part_voxels}")


@dataclass
class ViewResult:
    """What one `integrate` call did."""

    accepted: bool
    reason: str  # why it was skipped, or "" when integrated
    weight: float = 0.0  # the weight it was integrated with
    agreement: float = float("nan")  # fraction of its points on observed voxels that lie near the surface there
    occlusion: float = float("nan")  # fraction of the expected silhouette covered by occluders
    changed_voxels: int = 0  # voxels whose inside/outside sign it flipped
    grew: bool = False  # whether the grid grew to hold surface it saw beyond it


@dataclass
class _Grid:
    origin_obj: np.ndarray  # (3,) centre of voxel (0, 0, 0) in the object frame
    voxel_m: float
    shape: tuple[int, int, int]

    def axes_obj(self) -> list[np.ndarray]:
        return [self.origin_obj[a] + self.voxel_m * np.arange(self.shape[a]) for a in range(3)]

    def centres_obj(self) -> np.ndarray:
        x, y, z = np.meshgrid(*self.axes_obj(), indexing="ij")
        return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)

    def bounds_obj(self) -> np.ndarray:
        """(2, 3) centres of the first and the last voxel."""
        return np.stack([self.origin_obj, self.origin_obj + self.voxel_m * (np.array(self.shape) - 1)])

    def index_of(self, points_obj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat index of the voxel nearest each point, and whether the point lies in the grid."""
        ijk = np.rint((points_obj - self.origin_obj) / self.voxel_m).astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < np.array(self.shape)), axis=1)
        ijk = np.clip(ijk, 0, np.array(self.shape) - 1)
        return np.ravel_multi_index(ijk.T, self.shape), inside


def _grid_for(bounds_obj: np.ndarray, config: FusionConfig) -> _Grid:
    extent = float(np.max(bounds_obj[1] - bounds_obj[0]))
    pad = config.padding_fraction * extent
    return _grid_over(bounds_obj[0] - pad, bounds_obj[1] + pad, max(config.voxel_fraction * extent, config.min_voxel_m),
                      config.voxel_budget)


def _grid_over(lo: np.ndarray, hi: np.ndarray, voxel_m: float, voxel_budget: int) -> _Grid:
    """The grid over the box lo..hi (object frame) with voxels of `voxel_m`, coarser until it fits the budget."""
    span = hi - lo
    while np.prod(np.ceil(span / voxel_m) + 1) > voxel_budget:
        voxel_m *= 1.05
    shape = tuple(int(n) for n in np.ceil(span / voxel_m) + 1)
    centre = (lo + hi) / 2
    origin = centre - voxel_m * (np.array(shape) - 1) / 2
    return _Grid(origin, voxel_m, shape)


def _vertex_rgb(mesh: trimesh.Trimesh) -> np.ndarray | None:
    colours = getattr(mesh.visual, "vertex_colors", None)
    if colours is None or len(colours) != len(mesh.vertices):
        return None
    return np.asarray(colours, dtype=np.uint8)[:, :3]


class ObjectFusion:
    """The fused model of one object, in its own frame (ROS-free; numpy in, trimesh out)."""

    def __init__(self, prior_mesh_obj: trimesh.Trimesh, config: FusionConfig | None = None) -> None:
        """Start from the completed single-view mesh `prior_mesh_obj` (metres, object frame). Raises ValueError on a
        mesh without volume or bounds."""
        self.config = config or FusionConfig()
        self.config.validate()
        if len(prior_mesh_obj.faces) == 0 or not np.isfinite(prior_mesh_obj.bounds).all():
            raise ValueError("the prior mesh has no faces or no finite bounds")
        self.grid = _grid_for(np.asarray(prior_mesh_obj.bounds, dtype=np.float64), self.config)
        growth_m = self.config.max_growth_fraction * float(np.max(prior_mesh_obj.extents))
        self._growth_limit_obj = self.grid.bounds_obj() + np.array([[-growth_m], [growth_m]])  # the grid's widest
        self.truncation_m = self.config.truncation_voxels * self.grid.voxel_m
        sdf = self._prior_sdf(prior_mesh_obj)
        self.tsdf = np.clip(sdf / self.truncation_m, -1.0, 1.0).astype(np.float32)  # normalised by the truncation
        self.weight = np.full(self.tsdf.shape, self.config.prior_weight, dtype=np.float32)
        self.colour = np.zeros((self.tsdf.size, 3), dtype=np.uint8)
        self.colour_seen = np.zeros(self.tsdf.size, dtype=bool)
        self.off_silhouette = np.zeros(self.tsdf.size, dtype=bool)  # a view saw past the voxel beside the mask
        self._prior_vertices_obj = np.asarray(prior_mesh_obj.vertices, dtype=np.float64)
        self._prior_rgb = _vertex_rgb(prior_mesh_obj)
        self.views_integrated = 0
        self.views_skipped = 0
        self.changed_voxels = 0  # sign flips since the last `mesh()` call
        self.skip_reasons: dict[str, int] = {}

    def _prior_sdf(self, prior_mesh_obj: trimesh.Trimesh) -> np.ndarray:
        """Signed distance of every voxel centre to the prior (negative inside): on every second voxel first, then
        exactly on the voxels that may lie within the truncation band (the rest only needs its sign)."""
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(np.asarray(prior_mesh_obj.vertices, dtype=np.float32)),
                            o3d.core.Tensor(np.asarray(prior_mesh_obj.faces, dtype=np.uint32)))

        def signed_distance(points_obj: np.ndarray) -> np.ndarray:
            # In chunks: open3d holds the GIL while it computes; a node's tracking thread gets it between them.
            points = points_obj.astype(np.float32)
            return np.concatenate([scene.compute_signed_distance(o3d.core.Tensor(points[i:i + 5000])).numpy()
                                   for i in range(0, len(points), 5000)] or [np.zeros(0, np.float32)])

        shape = self.grid.shape
        ax, ay, az = (axis[::2] for axis in self.grid.axes_obj())
        coarse_obj = np.stack(np.meshgrid(ax, ay, az, indexing="ij"), axis=-1).reshape(-1, 3)
        coarse = signed_distance(coarse_obj).reshape(len(ax), len(ay), len(az))
        sdf = np.repeat(np.repeat(np.repeat(coarse, 2, 0), 2, 1), 2, 2)[: shape[0], : shape[1], : shape[2]].ravel()
        near = np.flatnonzero(np.abs(sdf) < self.truncation_m + 2.0 * self.grid.voxel_m)
        ijk = np.stack(np.unravel_index(near, shape), axis=1)
        sdf[near] = signed_distance(self.grid.origin_obj + self.grid.voxel_m * ijk)
        return sdf

    # -- memory ------------------------------------------------------------------------------------------------
    @property
    def bytes_used(self) -> int:
        """Bytes held by the voxel arrays (bounded by `voxel_budget` x `BYTES_PER_VOXEL`)."""
        return int(self.tsdf.nbytes + self.weight.nbytes + self.colour.nbytes + self.colour_seen.nbytes
                   + self.off_silhouette.nbytes)

    # -- integration -------------------------------------------------------------------------------------------
    def integrate(
        self, depth_m: np.ndarray, mask: np.ndarray, intrinsics: CameraIntrinsics, T_cam_obj: np.ndarray,
        rgb: np.ndarray | None = None, weight: float = 1.0, fitness: float | None = None, rmse_m: float | None = None,
        support_plane_cam: np.ndarray | None = None, occluders_mask: np.ndarray | None = None,
    ) -> ViewResult:
        """Fuse one view: `depth_m` (H, W) metres (NaN invalid), the object's `mask` (H, W) bool, its tracked pose
        `T_cam_obj` in that camera, optional `rgb` (H, W, 3) uint8, a view `weight` and the tracker's fit.
        `support_plane_cam` (a, b, c, d; unit normal toward the camera), when the object rests on a seen plane:
        what lies below it is not the object (carved like free space), mask pixels on it are not its surface.
        `occluders_mask` (H, W) bool: pixels of other things (other objects, a hand) that may hide this one."""
        c = self.config
        if fitness is not None and fitness < c.min_fitness:
            return self._skip("poor tracking fitness", fitness=fitness)
        if rmse_m is not None and not rmse_m <= c.max_rmse_m:
            return self._skip("poor tracking residual")
        mask = np.asarray(mask, dtype=bool)
        depth = np.asarray(depth_m, dtype=np.float32)
        if depth.shape != mask.shape or depth.shape != (intrinsics.height, intrinsics.width):
            return self._skip("depth, mask and camera sizes differ")
        surface_depth, plane_height, table_height = self._surface_depth(depth, mask, intrinsics, support_plane_cam)
        if np.count_nonzero(np.isfinite(surface_depth)) < 30:
            return self._skip("fewer than 30 valid depth pixels in the mask")
        T_obj_cam = invert_transform(np.asarray(T_cam_obj, dtype=np.float64))
        surface_cam, _ = intrinsics.backproject(surface_depth)  # the view's surface points (agreement, growth)
        agreement = self._agreement(surface_cam, T_obj_cam)
        if agreement < c.min_agreement:
            return self._skip("view disagrees with the model (pose wrong?)", agreement=agreement)
        occlusion = 0.0 if occluders_mask is None else self._occlusion(
            mask, np.asarray(occluders_mask, dtype=bool), intrinsics, np.asarray(T_cam_obj, dtype=np.float64))
        if occlusion > c.max_occlusion:
            return self._skip("object mostly hidden", agreement=agreement, occlusion=occlusion)
        view_weight = float(weight) * (1.0 - occlusion)
        if fitness is not None:
            view_weight *= min(1.0, max(0.0, (fitness - c.min_fitness) / max(1e-6, 1.0 - c.min_fitness)) + 0.5)
        if not view_weight > 0:
            return self._skip("zero weight", agreement=agreement, occlusion=occlusion)
        grew = self._grow_to(surface_cam, T_obj_cam)
        changed = self._update(depth, surface_depth, plane_height, table_height, mask, rgb, intrinsics,
                               np.asarray(T_cam_obj, dtype=np.float64), view_weight, support_plane_cam)
        self.views_integrated += 1
        self.changed_voxels += changed
        return ViewResult(True, "", view_weight, agreement, occlusion, changed, grew)

    def _skip(self, reason: str, fitness: float | None = None, agreement: float = float("nan"),
              occlusion: float = float("nan")) -> ViewResult:
        self.views_skipped += 1
        self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1
        if fitness is not None:
            reason = f"{reason} ({fitness:.2f})"
        return ViewResult(False, reason, agreement=agreement, occlusion=occlusion)

    def _surface_depth(self, depth: np.ndarray, mask: np.ndarray, intrinsics: CameraIntrinsics,
                       support_plane_cam: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The mask's depth without its rim, pixels far from their 3x3 median and pixels on the support plane
        (NaN elsewhere); the height above the plane of the mask's pixels on it (NaN elsewhere): not the object's
        surface, yet the space in front of them is empty (a bowl's or a plate's floor lies within the plane clearance,
        and what is above it must be carved, not left to the completion); and the height of every valid pixel of the
        image on the plane (NaN elsewhere: where the mask is not, the table was seen and the object is not there)."""
        c = self.config
        inner = mask
        if c.mask_erode_px > 0:
            kernel = np.ones((2 * c.mask_erode_px + 1,) * 2, np.uint8)
            eroded = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
            inner = eroded if eroded.sum() >= 0.3 * mask.sum() else mask
        filled = np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        median = cv2.medianBlur(filled, 3)
        valid = np.isfinite(depth) & (depth > 0) & (np.abs(filled - median) <= c.outlier_jump_m)
        ok = inner & valid
        plane_height = table_height = np.full(depth.shape, np.nan, dtype=np.float32)
        if support_plane_cam is not None:
            plane = np.asarray(support_plane_cam, dtype=np.float64)
            height_m = ((intrinsics.pixel_rays() @ plane[:3]) * filled + plane[3]).astype(np.float32)
            on_table = valid & ~(height_m > c.plane_clearance_m)
            table_height = np.where(on_table, height_m, np.nan).astype(np.float32)
            plane_height = np.where(ok & on_table, height_m, np.nan).astype(np.float32)
            ok &= ~on_table
        return np.where(ok, depth, np.nan).astype(np.float32), plane_height, table_height

    def _agreement(self, points_cam: np.ndarray, T_obj_cam: np.ndarray) -> float:
        if len(points_cam) > 2000:
            points_cam = points_cam[np.linspace(0, len(points_cam) - 1, 2000).astype(np.int64)]
        index, inside = self.grid.index_of(transform_points(T_obj_cam, points_cam))
        # Of the points that fall on voxels earlier views observed, the fraction near the surface there (not in seen
        # free space nor deep inside). Voxels holding only the prior (never observed) and points off the grid (the
        # completion was too small) say nothing: the first view always agrees.
        observed = inside & self._observed(index)
        if np.count_nonzero(observed) < 0.1 * len(index):
            return 1.0
        return float(np.mean(np.abs(self.tsdf[index[observed]]) < 0.999))

    def _occlusion(self, mask: np.ndarray, occluders_mask: np.ndarray, intrinsics: CameraIntrinsics,
                   T_cam_obj: np.ndarray) -> float:
        """How much of the object is hidden, on a 4x coarser grid: the fraction of the current model's silhouette
        that occluders cover or, when occluders touch the object's mask, the silhouette's share that the mask lacks.
        The second does not trust the pose: a pose that slid off behind an occluder (a tracker given a sliver of the
        object) puts the silhouette beside it, yet the mask is still far smaller than the model's silhouette."""
        inside = np.flatnonzero(self.tsdf < 0)
        if len(inside) == 0:
            return 0.0
        if len(inside) > 20000:
            inside = inside[np.linspace(0, len(inside) - 1, 20000).astype(np.int64)]
        ijk = np.stack(np.unravel_index(inside, self.grid.shape), axis=1)
        points_cam = transform_points(T_cam_obj, self.grid.origin_obj + self.grid.voxel_m * ijk)
        uv = intrinsics.project(points_cam)
        ok = np.isfinite(uv).all(axis=1)
        stride = 4
        h, w = (intrinsics.height + stride - 1) // stride, (intrinsics.width + stride - 1) // stride
        cells = np.floor(uv[ok] / stride).astype(np.int64)
        cells = cells[(cells[:, 0] >= 0) & (cells[:, 0] < w) & (cells[:, 1] >= 0) & (cells[:, 1] < h)]
        expected = np.zeros((h, w), dtype=bool)
        expected[cells[:, 1], cells[:, 0]] = True
        if not expected.any():
            return 1.0
        kernel = np.ones((stride, stride), np.uint8)
        hidden = cv2.dilate(occluders_mask.astype(np.uint8), kernel)[::stride, ::stride][:h, :w].astype(bool)
        covered = float(np.count_nonzero(expected & hidden) / np.count_nonzero(expected))
        seen = cv2.dilate(mask.astype(np.uint8), kernel)[::stride, ::stride][:h, :w].astype(bool)
        if not (cv2.dilate(seen.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & hidden).any():
            return covered  # nothing next to the object could hide it: a smaller mask means a wrong model, not hiding
        return max(covered, 1.0 - min(1.0, np.count_nonzero(seen) / np.count_nonzero(expected)))

    def _grow_to(self, points_cam: np.ndarray, T_obj_cam: np.ndarray) -> bool:
        """Grow the grid (within the growth limit and the voxel budget) to hold the view's surface points
        `points_cam`, 1st-99th percentile per axis plus the truncation band; whether it grew."""
        if len(points_cam) > 4000:
            points_cam = points_cam[np.linspace(0, len(points_cam) - 1, 4000).astype(np.int64)]
        points_obj = transform_points(T_obj_cam, points_cam)
        band = self.truncation_m + 2.0 * self.grid.voxel_m
        lo_needed = np.percentile(points_obj, 1, axis=0) - band
        hi_needed = np.percentile(points_obj, 99, axis=0) + band
        lo_old, hi_old = self.grid.bounds_obj()
        lo = np.maximum(np.minimum(lo_old, lo_needed), self._growth_limit_obj[0])
        hi = np.minimum(np.maximum(hi_old, hi_needed), self._growth_limit_obj[1])
        if np.all(lo >= lo_old - 0.5 * self.grid.voxel_m) and np.all(hi <= hi_old + 0.5 * self.grid.voxel_m):
            return False
        # Whole voxels of the old grid on every side, so that an unchanged voxel size keeps every value exactly.
        steps_lo = np.ceil(np.maximum(lo_old - lo, 0.0) / self.grid.voxel_m)
        steps_hi = np.ceil(np.maximum(hi - hi_old, 0.0) / self.grid.voxel_m)
        lo, hi = lo_old - steps_lo * self.grid.voxel_m, hi_old + steps_hi * self.grid.voxel_m
        new = _Grid(lo, self.grid.voxel_m, tuple(int(n) for n in np.rint((hi - lo) / self.grid.voxel_m) + 1))
        if np.prod(new.shape) > self.config.voxel_budget:  # coarser voxels over the same box
            new = _grid_over(lo, hi, self.grid.voxel_m, self.config.voxel_budget)
        self._resample_to(new)
        return True

    def _resample_to(self, new: _Grid) -> None:
        """Carry the field over to the grid `new`: trilinear (tsdf, weight), nearest (colour); voxels outside the
        old grid start as "outside" at the prior's weight."""
        old = self.grid
        centres_obj = new.centres_obj()
        coords = ((centres_obj - old.origin_obj) / old.voxel_m).T  # (3, N) continuous indices in the old grid
        inside = np.all((coords >= -1e-6) & (coords <= (np.array(old.shape) - 1)[:, None] + 1e-6), axis=0)
        shape = old.shape
        tsdf = np.ones(len(centres_obj), dtype=np.float32)
        weight = np.full(len(centres_obj), self.config.prior_weight, dtype=np.float32)
        tsdf[inside] = map_coordinates(self.tsdf.reshape(shape), coords[:, inside], order=1, mode="nearest")
        weight[inside] = map_coordinates(self.weight.reshape(shape), coords[:, inside], order=1, mode="nearest")
        nearest, _ = old.index_of(centres_obj[inside])
        colour = np.zeros((len(centres_obj), 3), dtype=np.uint8)
        colour_seen = np.zeros(len(centres_obj), dtype=bool)
        colour[inside], colour_seen[inside] = self.colour[nearest], self.colour_seen[nearest]
        off_silhouette = np.zeros(len(centres_obj), dtype=bool)
        off_silhouette[inside] = self.off_silhouette[nearest]
        self.grid, self.tsdf, self.weight, self.colour, self.colour_seen = new, tsdf, weight, colour, colour_seen
        self.off_silhouette = off_silhouette
        self.truncation_m = self.config.truncation_voxels * new.voxel_m

    def _update(self, depth: np.ndarray, surface_depth: np.ndarray, plane_height: np.ndarray,
                table_height: np.ndarray, mask: np.ndarray, rgb: np.ndarray | None, intrinsics: CameraIntrinsics,
                T_cam_obj: np.ndarray, view_weight: float, support_plane_cam: np.ndarray | None) -> int:
        """Projective TSDF update of every voxel; the number of voxels whose sign flipped. `plane_height`: the
        height above the support plane of the mask's pixels on it, whose rays' voxels above that height are outside
        (and the voxel within one voxel below it is inside); `table_height`: the same for every pixel on the plane
        (outside the mask, the voxels down to one voxel below it are outside)."""
        c = self.config
        R, t = T_cam_obj[:3, :3], T_cam_obj[:3, 3]
        ax, ay, az = self.grid.axes_obj()
        # Voxel centres in the camera frame without building (N, 3) object-frame centres: x R0 + y R1 + z R2 + t.
        p_cam = (ax[:, None, None, None] * R[:, 0] + ay[None, :, None, None] * R[:, 1]
                 + az[None, None, :, None] * R[:, 2] + t).reshape(-1, 3)
        z = p_cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.rint(intrinsics.fx * p_cam[:, 0] / z + intrinsics.cx)
            v = np.rint(intrinsics.fy * p_cam[:, 1] / z + intrinsics.cy)
        in_image = (z > 1e-3) & (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)
        index = np.flatnonzero(in_image)
        u, v, z = u[index].astype(np.int64), v[index].astype(np.int64), z[index]
        trunc = self.truncation_m
        # Surface: voxels in front of or just behind the observed surface, inside the mask.
        d_surface = surface_depth[v, u]
        sdf = d_surface - z
        surface = np.isfinite(d_surface) & (sdf >= -trunc)
        coloured = surface.copy()  # voxels the object's own pixels colour
        # Height above the plane the object rests on, of each voxel: below the plane is not the object. Plane pixels
        # are judged by height, not depth: a floor or table is horizontal, and a band one voxel deep along a slanted
        # ray can fall between two layers of voxel centres (then the plate lost its floor, or a spilt mask's skirt
        # stayed, depending on how the grid lay).
        below = np.zeros(len(index), dtype=bool)
        if support_plane_cam is not None:
            plane = np.asarray(support_plane_cam, dtype=np.float64)
            h_vox = p_cam[index] @ plane[:3] + plane[3]
            below = h_vox < -self.grid.voxel_m
        # A plane pixel in the mask: empty above its height; the voxel within one voxel below it is the object's (a
        # floor as thin as the clearance: carved from above and left to a completion whose bottom is that floor, it
        # would vanish). Where it is the table (the mask spilt over), views with the pixel outside their mask carve it.
        if support_plane_cam is not None and np.isfinite(plane_height).any():
            h_pix = plane_height[v, u]
            on_plane = np.isfinite(h_pix)
            sdf[on_plane] = h_vox[on_plane] - h_pix[on_plane]
            surface |= on_plane & (sdf >= -self.grid.voxel_m)
        # Free space: voxels outside the (dilated) mask, not hidden by nearer depth there (silhouette carving: were
        # they the object's, the pixel would be in its mask; this also carves down to a table the object stands on),
        # and where the pixel is the table, the voxel within one voxel below it too.
        kernel = np.ones((2 * c.carve_margin_px + 1,) * 2, np.uint8)
        near_mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) if c.carve_margin_px > 0 else mask
        d_all = depth[v, u]
        outside = ~near_mask[v, u]
        not_hidden = ~(d_all <= z - self.grid.voxel_m)  # nothing nearer at the pixel (its depth beyond, or none)
        free = outside & np.isfinite(d_all) & not_hidden
        # Off the silhouette: the voxel falls beside the mask itself (not the dilated one) on nothing nearer. Too near
        # the mask to carve, yet no place for the hull's fill (a gap between a clamp's jaws seen within the margin).
        self.off_silhouette[index[~mask[v, u] & not_hidden]] = True
        if support_plane_cam is not None:
            free |= outside & (h_vox - table_height[v, u] >= -self.grid.voxel_m)  # NaN (not the table): no
            free |= below
            surface &= ~below
        observed = np.zeros(len(index), dtype=np.float32)
        observed[surface] = np.clip(sdf[surface] / trunc, -1.0, 1.0)
        observed[free] = 1.0
        w_obs = np.where(surface, view_weight, np.where(free, view_weight * c.carve_weight, 0.0)).astype(np.float32)
        full_behind = c.full_weight_behind_voxels * self.grid.voxel_m
        if full_behind < trunc:  # voxels deeper behind the surface than this are less sure to be inside
            behind = np.flatnonzero(surface & (sdf < -full_behind))
            w_obs[behind] *= np.clip((trunc + sdf[behind]) / (trunc - full_behind), 0.0, 1.0).astype(np.float32)
        take = w_obs > 0
        target, observed, w_obs = index[take], observed[take], w_obs[take]
        old = self.tsdf[target]
        w_old = self.weight[target]
        new = (old * w_old + observed * w_obs) / (w_old + w_obs)
        self.tsdf[target] = new
        self.weight[target] = np.minimum(w_old + w_obs, c.max_weight)
        if rgb is not None:
            near = (coloured & ~below)[take] & (np.abs(observed) < 0.999)
            vox = target[near]
            if len(vox):
                colour_obs = np.asarray(rgb)[v[take][near], u[take][near]].astype(np.float32)
                seen = self.colour_seen[vox]
                blend = np.where(seen, w_obs[near] / (w_old[near] + w_obs[near]), 1.0)[:, None]
                self.colour[vox] = np.rint(self.colour[vox] * (1 - blend) + colour_obs * blend).astype(np.uint8)
                self.colour_seen[vox] = True
        return int(np.count_nonzero((old < 0) != (new < 0)))

    # -- output ------------------------------------------------------------------------------------------------
    def mesh(self) -> trimesh.Trimesh:
        """The fused mesh (metres, object frame): watertight, RGBA vertex colours. Raises ValueError when the field
        holds no surface."""
        self.changed_voxels = 0
        field_ = np.pad(self.tsdf.reshape(self.grid.shape), 1, constant_values=1.0)
        inside = field_ < 0
        if not inside.any():
            raise ValueError("the fused field holds no surface")
        # Pockets of "outside" enclosed by the object are where a too thin completion stays behind observed surface:
        # the object is solid there.
        cavities = binary_fill_holes(inside) & ~inside
        field_[cavities] = -0.5
        if self.config.fill_hidden_in_hull:
            hidden = self._hidden_in_hull()
            if hidden is not None:
                field_[1:-1, 1:-1, 1:-1][hidden & (field_[1:-1, 1:-1, 1:-1] >= 0)] = -0.5
        vertices, faces, _, _ = marching_cubes(field_, level=0.0, spacing=(self.grid.voxel_m,) * 3)
        vertices_obj = vertices + self.grid.origin_obj - self.grid.voxel_m
        mesh = trimesh.Trimesh(vertices_obj, faces[:, ::-1], process=True)
        # The largest connected part and the pieces views saw that are not specks (`_parts_to_keep`), made as
        # `mesh.split` makes each part (holes repaired) but only those: the field's specks can make dozens of parts,
        # and building them all cost a fifth of this call.
        parts = trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces)), min_len=1)
        if len(parts) > 1:
            pieces = mesh.submesh(self._parts_to_keep(mesh, parts), only_watertight=False, repair=True)
            mesh = pieces[0] if len(pieces) == 1 else trimesh.util.concatenate(pieces)
        if mesh.is_watertight and mesh.volume < 0:
            # A new mesh, not `mesh.invert()`: trimesh 5.2's invert flips the faces but keeps the old face normals
            # cached (inward), which the grasp planner and the tracking model read.
            mesh = trimesh.Trimesh(mesh.vertices, np.ascontiguousarray(mesh.faces[:, ::-1]), process=False)
        if self.config.max_triangles and len(mesh.faces) > self.config.max_triangles:
            reduced = simplified_mesh(mesh, self.config.max_triangles)
            if reduced.is_watertight or not mesh.is_watertight:
                mesh = reduced
        mesh.visual.vertex_colors = self._vertex_colours(np.asarray(mesh.vertices))
        # Which of the surface views saw (1) and which is the completion's guess (0): grasps prefer seen contacts.
        observed = binary_dilation(self._observed().reshape(self.grid.shape))
        index, in_grid = self.grid.index_of(np.asarray(mesh.vertices))
        mesh.vertex_attributes[OBSERVED_ATTRIBUTE] = (observed.reshape(-1)[index] & in_grid).astype(np.float32)
        return mesh

    def _hidden_in_hull(self) -> np.ndarray | None:
        """(grid shape) bool: voxels views never observed (neither surface nor free space) that lie inside the convex
        hull of the voxels views observed as the object's (inside, near the seen surface); None when there are too
        few such voxels for a hull."""
        observed = self._observed()
        seen_inside = np.flatnonzero(observed & (self.tsdf < 0))
        if len(seen_inside) < 8:
            return None
        ijk_seen = np.stack(np.unravel_index(seen_inside, self.grid.shape), axis=1).astype(np.float64)
        try:
            hull = ConvexHull(ijk_seen)
        except QhullError:  # flat or degenerate: no volume to fill
            return None
        lo, hi = ijk_seen.min(axis=0).astype(np.int64), ijk_seen.max(axis=0).astype(np.int64) + 1
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        candidate = ~(observed | self.off_silhouette).reshape(self.grid.shape)[box]
        ijk = np.argwhere(candidate).astype(np.float64) + lo
        inside = np.ones(len(ijk), dtype=bool)
        for normal_offset in hull.equations:  # inside: a . x + b <= 0 for every facet's (a, b)
            inside &= ijk @ normal_offset[:3] + normal_offset[3] <= 1e-6
        hidden = np.zeros(self.grid.shape, dtype=bool)
        hidden[tuple(ijk[inside].astype(np.int64).T)] = True
        return hidden

    def _observed(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Whether views observed the voxels `index` (default all; surface or free space): weight above the prior's
        by half a view, more than the completion alone."""
        return self.weight[index] >= self.config.prior_weight + 0.5

    def _parts_to_keep(self, mesh: trimesh.Trimesh, parts: list[np.ndarray]) -> list[np.ndarray]:
        """The face indices of the pieces of the zero level set to keep: the largest, and every other piece that holds
        at least `min_part_voxels` voxels' volume and lies mostly on voxels views observed (surface or free space).
        A thin link the voxels cannot hold (a string, a neck, a few millimetres at 2-3 mm voxels) cuts a seen part
        off the rest: a pull toy's handle on its string was inside the field, seen by every view of the sweep, and
        dropped as "not the largest piece". Specks (noise, a voxel or two) and pieces of the completion that carving
        cut off (never observed) are still dropped."""
        largest = max(range(len(parts)), key=lambda i: len(parts[i]))
        keep = [parts[largest]]
        if self.config.min_part_voxels <= 0:
            return keep
        triangles = np.asarray(mesh.triangles, dtype=np.float64)
        signed = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])) / 6.0
        min_volume = self.config.min_part_voxels * self.grid.voxel_m ** 3
        observed = self._observed()
        for i, faces in enumerate(parts):
            if i == largest or abs(float(signed[faces].sum())) < min_volume:
                continue
            index, _ = self.grid.index_of(np.asarray(mesh.vertices)[np.unique(mesh.faces[faces])])
            if np.mean(observed[index]) >= 0.5:
                keep.append(faces)
        return keep

    def _vertex_colours(self, vertices_obj: np.ndarray) -> np.ndarray:
        index, _ = self.grid.index_of(vertices_obj)
        rgb = self.colour[index].copy()
        unseen = ~self.colour_seen[index]
        if unseen.any():
            seen_index = np.flatnonzero(self.colour_seen)
            if len(seen_index):
                seen_obj = self.grid.origin_obj + self.grid.voxel_m * np.stack(np.unravel_index(seen_index, self.grid.shape), axis=1)
                _, nearest = cKDTree(seen_obj).query(vertices_obj[unseen])
                rgb[unseen] = self.colour[seen_index[nearest]]
            elif self._prior_rgb is not None:
                _, nearest = cKDTree(self._prior_vertices_obj).query(vertices_obj[unseen])
                rgb[unseen] = self._prior_rgb[nearest]
            else:
                rgb[unseen] = 180
        return np.hstack([rgb, np.full((len(rgb), 1), 255, np.uint8)])


__all__ = ["BYTES_PER_VOXEL", "FusionConfig", "ObjectFusion", "ViewResult"]
