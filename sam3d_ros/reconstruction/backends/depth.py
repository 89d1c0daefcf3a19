"""Built-in geometric RGB-D backend: whole-object mesh and pose from masked depth, no model weights.

Steps: back-project the mask's valid depth; drop points on the support plane (mask spill), statistical outliers and
everything but the largest Euclidean cluster (background and flying pixels); average each point with its nearest
neighbours (depth noise); give the mask's outer rim pixels that lost their depth (edge dropout, removed flying
pixels) a point on the nearest kept point's tangent plane, so extents reach the silhouette; flag points at edges that
a nearer object covers (`SceneContext.others_mask`) or the image border cuts (the object may go on outside the
frame): the superquadric is not held inside the visible footprint across them. Then complete the unseen side:
candidate shapes, simplest first,
- the cylinder or box of the footprint fit (circle fitted to the side-surface points; rectangle aligned with the
  visible faces), where its own test passes (`_pick_primitive`),
- a solid of revolution about the plane's normal (`revolution.py`: bowls, cans, cups, fruit, balls, a mug's body),
- the upright superquadric (`superquadric.py`), where its fit passes (rounded boxes, tins),
- a solid of revolution with a handle or a spout: seen points well outside the body, joined to it as their convex
  hull (a mug or a pitcher seen with its handle; two parts, so after the superquadric),
- the visible points mirrored through a vertical axis (silhouette tangent points and visible depth extent), lofted
  slice by slice (bottles),
- the visible height map extruded down to the bottom (`heightmap_solid.py`: tools, plates, toys, what is seen from
  above),
each ray-cast into the camera and scored by how well it explains the depth image (`depth_explanation.py`: silhouette
IoU with the mask, free space the camera saw through); the simplest within `explanation_margin` of the best is kept
and its score is the object's confidence. An object whose lowest seen point is above the plane gets candidates
standing on the plane and on its own lowest point.
Every mesh is watertight, in metres in the object frame, with vertex colours of the nearest observed pixel.

Sizes: every metre tolerance below (clearances, cluster radius, fit tolerances, slice and edge lengths, the largest
cylinder) is the value for a tabletop object up to `REFERENCE_SIZE_M`; a larger object scales them all by its size
(the robust diagonal of its observed points over `REFERENCE_SIZE_M`), so a 2 m motorcycle is treated as a 20 cm
box is. Smaller objects keep them: below that size the sensor's noise, not the object, sets them.

Object frame convention (the same object gets the same frame from frame to frame):
- origin at the centre of the object's oriented bounding box;
- z up: the support plane's normal when the object rests on a plane, else the camera's image-up direction;
- x along the longer horizontal side of the footprint (a cylinder: the camera's right), y = z cross x, so sizes
  are (longest horizontal, other horizontal, height);
- sign rule: x points into the camera's right half (x . image-right >= 0), which fixes y.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree

from sam3d_ros.geometry.depth_explanation import explain_depth
from sam3d_ros.geometry.heightmap_solid import heightmap_solid
from sam3d_ros.geometry.revolution import fit_revolution
from sam3d_ros.geometry.footprint import FootprintFit, fit_footprint, mirror_centre
from sam3d_ros.geometry.sliced_solid import sliced_solid
from sam3d_ros.geometry.superquadric import MIN_EXPONENT, Superquadric, fit_superquadric, superquadric_mesh, surface_distance
from sam3d_ros.geometry.support_plane import plane_heights
from sam3d_ros.geometry.transforms import invert_transform, make_transform, transform_points
from sam3d_ros.geometry.types import ObjectReconstruction, RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.base import ReconstructionBackend, ReconstructionError


# Exponents (vertical, horizontal) that make a superquadric a cylinder or a box, for comparable residuals.
_CYLINDER = np.array([MIN_EXPONENT, 1.0])
_BOX = np.array([MIN_EXPONENT, MIN_EXPONENT])
REFERENCE_SIZE_M = 0.3  # the tolerances are tuned for objects up to this size (all of YCB); larger ones scale them


@dataclass(frozen=True)
class _Scale:
    """The size factor of one object (>= 1) and the tolerances it scales."""

    factor: float
    table_clearance_m: float
    rest_on_plane_tolerance_m: float
    box_tolerance_m: float
    superquadric_tolerance_m: float
    occluder_margin_m: float
    cluster_eps_m: float


class DepthBackend(ReconstructionBackend):
    """Geometric reconstruction from registered depth (CPU, numpy + open3d)."""

    name = "depth"
    needs_depth = True

    def __init__(
        self,
        min_points: int = 30,
        erode_px: int = 0,
        max_points: int = 1500,
        outlier_neighbours: int = 16,
        outlier_std_ratio: float = 2.0,
        cluster_eps_m: float = 0.015,
        table_clearance_m: float = 0.006,
        rest_on_plane_tolerance_m: float = 0.03,
        box_tolerance_m: float = 0.004,
        smoothing_neighbours: int = 12,
        cluster_points: int = 800,
        rim_px: int = 2,
        superquadric_points: int = 100,
        superquadric_tolerance_m: float = 0.0025,
        occluder_margin_m: float = 0.01,
        explanation_margin: float = 0.15,
        attachment_fraction: float = 0.03,
        min_part_fraction: float = 0.02,
    ) -> None:
        self.min_points = min_points
        self.erode_px = erode_px
        self.max_points = max_points
        self.outlier_neighbours = outlier_neighbours
        self.outlier_std_ratio = outlier_std_ratio
        self.cluster_eps_m = cluster_eps_m
        self.table_clearance_m = table_clearance_m
        self.rest_on_plane_tolerance_m = rest_on_plane_tolerance_m
        self.box_tolerance_m = box_tolerance_m
        self.smoothing_neighbours = smoothing_neighbours
        self.cluster_points = cluster_points
        self.rim_px = rim_px
        self.superquadric_points = superquadric_points
        self.superquadric_tolerance_m = superquadric_tolerance_m
        self.occluder_margin_m = occluder_margin_m
        self.explanation_margin = explanation_margin
        self.attachment_fraction = attachment_fraction
        self.min_part_fraction = min_part_fraction

    def reconstruct(
        self, frame: RGBDFrame, mask: np.ndarray, scene: SceneContext, object_id: str = "", label: str = "", score: float = 1.0
    ) -> ObjectReconstruction:
        if frame.depth_m is None:
            raise ReconstructionError("the depth backend needs a registered depth image")
        points_cam, colors, pixels = self._observed_points(frame, mask)
        scale = self._scale(points_cam)
        plane = scene.support_plane_cam
        if plane is not None:
            heights = plane_heights(plane, points_cam)
            keep = heights > scale.table_clearance_m  # mask spill onto the table
            if keep.sum() >= self.min_points:
                points_cam, colors, pixels = points_cam[keep], colors[keep], pixels[keep]
        kept = self._remove_outliers(points_cam, scale, frame.intrinsics.fx)
        points_cam, colors, pixels = points_cam[kept], colors[kept], pixels[kept]
        points_cam = self._smooth(points_cam)
        normals_cam = self._normals(points_cam)
        up_cam = plane[:3] if plane is not None else np.array([0.0, -1.0, 0.0])  # the support normal, or image-up
        points_cam, colors, normals_cam, pixels = self._fill_silhouette(frame, mask, pixels, points_cam, colors, normals_cam,
                                                                        up_cam)
        occluded = self._occluded_edge(frame, scene.others_mask, pixels, points_cam, scale)
        candidates, explanations = [], []
        for up_cam, plane_d in self._verticals(plane, points_cam, scale):
            for candidate in self._candidates(frame, points_cam, normals_cam, occluded, up_cam, plane_d, scale):
                candidates.append(candidate)
                explanations.append(explain_depth(candidate[3], candidate[1], frame.intrinsics, frame.depth_m, mask,
                                                  scale.occluder_margin_m))
                if explanations[-1].score >= 1.0 - self.explanation_margin:
                    break  # no later (less simple) candidate can beat it by more than the margin
            else:
                continue
            break
        best = max(e.score for e in explanations)
        pick = next(i for i, e in enumerate(explanations) if e.score >= best - self.explanation_margin)
        (model, T_cam_obj, size_obj, mesh_obj), explanation = candidates[pick], explanations[pick]
        mesh_obj = self._coloured(mesh_obj, transform_points(invert_transform(T_cam_obj), points_cam), colors)
        return ObjectReconstruction(
            object_id=object_id,
            label=label,
            score=score,
            T_cam_obj=T_cam_obj,
            size_obj=size_obj,
            mesh_obj=mesh_obj,
            mask=mask,
            metric_scale=True,
            backend=self.name,
            info={"observed_points": int(len(points_cam)), "on_support_plane": plane is not None, "shape": model,
                  "silhouette_iou": explanation.silhouette_iou, "free_space_violation": explanation.free_space_violation},
            confidence=explanation.score,
        )

    def _candidates(
        self, frame: RGBDFrame, points_cam: np.ndarray, normals_cam: np.ndarray, occluded: np.ndarray,
        up_cam: np.ndarray, plane_d: float, scale: _Scale,
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray, trimesh.Trimesh]]:
        """(shape, T_cam_obj, size_obj, mesh_obj) of each candidate standing on the plane (up_cam, plane_d), simplest
        first, built only when asked for."""
        basis = _PlaneBasis.facing(points_cam, up_cam, plane_d)
        points_ab = basis.to_ab(points_cam)
        side = np.abs(normals_cam @ up_cam) < 0.6
        fit = fit_footprint(points_ab, points_ab[side], scale=scale.factor)
        heights = points_cam @ up_cam + plane_d
        height = float(np.percentile(heights, 99.5))
        points_abh = np.column_stack([points_ab, heights])
        # The visible part reaches only as far back as the camera saw: the centre is never before the mirror rule's.
        back_centre_ab = fit.centre_ab.copy()
        back_centre_ab[0] = max(back_centre_ab[0], mirror_centre(points_ab)[0])
        model, primitive_sq = self._pick_primitive(fit, back_centre_ab, points_ab, points_abh, height, occluded, scale)
        # Candidate shapes, simplest first: the cylinder or box (when one passed its fit), the solid of revolution
        # about the plane's normal, the superquadric (when it passed its fit), the visible surface mirrored
        # through a vertical axis and lofted (bottles, mugs), and the visible height map extruded down to the bottom
        # (what lies flat or is seen from above: tools, plates, toys). Each is scored by how well it explains the
        # depth image (silhouette, and free space the camera saw through); the simplest within
        # `explanation_margin` of the best is kept.
        if primitive_sq is not None and model != "superquadric":
            yield (model, *self._primitive(model, primitive_sq, basis, height, scale))
        revolved = self._revolution(basis, points_ab, heights, height, scale)
        # A body of revolution with a handle (or spout) is two parts: less simple than one superquadric.
        if revolved is not None and revolved[0] == "revolution":
            yield revolved
        if primitive_sq is not None and model == "superquadric":
            yield (model, *self._primitive(model, primitive_sq, basis, height, scale))
        if revolved is not None and revolved[0] != "revolution":
            yield revolved
        cell_m = max(2.0 * float(np.median(points_cam[:, 2])) / frame.intrinsics.fx, 0.002 * scale.factor)
        for mirrored in (True, False):
            hull = self._hull(points_cam, basis, back_centre_ab, heights, up_cam, scale, mirrored, cell_m)
            yield ("mirrored hull" if mirrored else "extruded hull", *hull)

    def _primitive(
        self, model: str, sq: Superquadric, basis: "_PlaneBasis", height: float, scale: _Scale,
    ) -> tuple[np.ndarray, np.ndarray, trimesh.Trimesh]:
        """(T_cam_obj, size_obj, mesh_obj) of the picked cylinder, box or superquadric standing on the bottom."""
        long_first = sq.semi_axes[0] >= sq.semi_axes[1]
        yaw = sq.yaw + (0.0 if long_first else np.pi / 2)
        T_cam_obj, size_obj = self._primitive_frame(basis, sq.centre[:2], np.array([np.cos(yaw), np.sin(yaw)]), height)
        size_obj[:2] = 2 * np.sort(sq.semi_axes[:2])[::-1]
        if model == "cylinder":
            primitive = trimesh.creation.cylinder(radius=size_obj[0] / 2, height=height, sections=48)
        elif model == "box":
            primitive = trimesh.creation.box(extents=size_obj)
        else:
            primitive = superquadric_mesh(size_obj / 2, sq.exponents)
        if model != "superquadric":  # its parametric rings are already dense enough to carry colours
            primitive = _subdivided(primitive, max_edge_m=0.015 * scale.factor)
        return T_cam_obj, size_obj, primitive

    def _revolution(
        self, basis: "_PlaneBasis", points_ab: np.ndarray, heights: np.ndarray, height: float, scale: _Scale,
    ) -> tuple[str, np.ndarray, np.ndarray, trimesh.Trimesh] | None:
        """(shape, T_cam_obj, size_obj, mesh_obj) of the solid of revolution about the plane's normal fitted to the
        visible points, or None where no axis lies behind them (seen from outside, a surface of revolution curves
        away). Seen points beyond the body (`fit_revolution`'s attached ones, at least `attachment_fraction` of
        all) are a handle or a spout: their convex hull, down to their feet on the body, joins the body's mesh
        ("revolution with handle"), and the box takes it in."""
        try:
            rev = fit_revolution(np.column_stack([points_ab, heights]), (0.0, height), 0.01 * scale.factor)
        except ValueError:
            return None
        radius = float(rev.ring_r.max())
        lateral = float(np.ptp(points_ab[:, 1]))
        if not (rev.centre_xy[0] > np.median(points_ab[:, 0]) and 0 < radius <= lateral):
            return None
        mesh = rev.mesh()
        mesh.vertices[:, 2] -= height / 2  # the object frame's origin is the box centre
        attached = rev.attached & (heights > 0)
        if attached.sum() < max(3, self.attachment_fraction * len(points_ab)):
            T_cam_obj, size_obj = self._primitive_frame(basis, rev.centre_xy, np.array([0.0, 1.0]), height)
            size_obj[:2] = 2 * radius
            return "revolution", T_cam_obj, size_obj, mesh
        # A handle or spout: the convex hull of its points and their feet on the body, joined to the body's mesh;
        # x points from the axis to it, the box (and the origin) takes it in.
        offset_ab = points_ab[attached] - rev.centre_xy
        direction_ab = offset_ab.mean(axis=0) / max(float(np.linalg.norm(offset_ab.mean(axis=0))), 1e-12)
        T_cam_obj, size_obj = self._primitive_frame(basis, rev.centre_xy, direction_ab, height)
        attached_cam = basis.from_ab(points_ab[attached], heights[attached])
        outward = offset_ab / np.maximum(np.linalg.norm(offset_ab, axis=1, keepdims=True), 1e-12)
        feet_ab = rev.centre_xy + outward * 0.9 * rev.radius_at(heights[attached])[:, None]
        feet_cam = basis.from_ab(feet_ab, heights[attached])
        handle_obj = transform_points(invert_transform(T_cam_obj), np.vstack([attached_cam, feet_cam]))
        try:
            handle = trimesh.convex.convex_hull(handle_obj)
        except Exception:  # noqa: BLE001 - degenerate (flat) handle points: the body alone
            handle = None
        if handle is None or not handle.is_watertight:
            size_obj[:2] = 2 * radius
            return "revolution", T_cam_obj, size_obj, mesh
        T_cam_obj, size_obj, joined = self._boxed(T_cam_obj, trimesh.util.concatenate([mesh, handle]))
        turn = np.eye(4)  # about z: the axes' conventions, applied to the frame and the mesh once
        if size_obj[0] < size_obj[1]:  # x along the longer side: a quarter turn
            turn = make_transform(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.zeros(3))
            size_obj = size_obj[[1, 0, 2]]
        if (T_cam_obj @ turn)[0, 0] < 0:  # x points into the camera's right half: a half turn more
            turn = turn @ make_transform(np.diag([-1.0, -1.0, 1.0]), np.zeros(3))
        if not np.array_equal(turn, np.eye(4)):
            T_cam_obj = T_cam_obj @ turn
            joined = trimesh.Trimesh(transform_points(invert_transform(turn), joined.vertices), joined.faces, process=False)
        return "revolution with handle", T_cam_obj, size_obj, joined

    def _hull(
        self, points_cam: np.ndarray, basis: "_PlaneBasis", centre_ab: np.ndarray, heights: np.ndarray,
        up_cam: np.ndarray, scale: _Scale, mirrored: bool, cell_m: float,
    ) -> tuple[np.ndarray, np.ndarray, trimesh.Trimesh]:
        """(T_cam_obj, size_obj, mesh_obj) of the visible points and their projections to the bottom: mirrored
        and lofted slice by slice, or (not `mirrored`) their height map extruded down to the bottom."""
        completed_cam = self._complete(points_cam, basis, centre_ab, heights, mirrored)
        T_cam_obj, size_obj = self._object_frame(completed_cam, up_cam)
        completed_obj = transform_points(invert_transform(T_cam_obj), completed_cam)
        try:
            if mirrored:
                solid = sliced_solid(completed_obj, (-size_obj[2] / 2, size_obj[2] / 2), slice_m=0.01 * scale.factor)
            else:
                solid = heightmap_solid(completed_obj, -size_obj[2] / 2, cell_m)
        except ValueError as exc:
            raise ReconstructionError(f"object points give no cross-section: {exc}") from exc
        return self._boxed(T_cam_obj, solid)

    @staticmethod
    def _boxed(T_cam_obj: np.ndarray, mesh_obj: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, trimesh.Trimesh]:
        """(T_cam_obj, size_obj, mesh_obj) with the origin moved to the centre of the mesh's own box (along the same
        axes) and the sizes its extents: the box says what the mesh is, not what the points it came from spanned."""
        low, high = mesh_obj.vertices.min(axis=0), mesh_obj.vertices.max(axis=0)
        shift = (low + high) / 2
        mesh_obj = trimesh.Trimesh(mesh_obj.vertices - shift, mesh_obj.faces, process=False)
        T_cam_obj = T_cam_obj.copy()
        T_cam_obj[:3, 3] += T_cam_obj[:3, :3] @ shift
        return T_cam_obj, high - low, mesh_obj

    def _pick_primitive(
        self, fit: FootprintFit, back_centre_ab: np.ndarray, points_ab: np.ndarray, points_abh: np.ndarray,
        height: float, occluded: np.ndarray, scale: _Scale,
    ) -> tuple[str, Superquadric | None]:
        """The primitive with the smallest residual (mean radial distance of the visible points, plane coordinates
        and height) between the footprint's cylinder or box and a superquadric fitted from `back_centre_ab`, each only
        where its own test passes; ("mirrored hull", None) when none does."""
        sample = points_abh[:: max(1, len(points_abh) // self.superquadric_points)]
        z_semi = np.array([height / 2])
        footprint: tuple[str, Superquadric] | None = None
        if fit.model == "circle":
            centre = np.r_[fit.centre_ab, z_semi]
            footprint = ("cylinder", Superquadric(centre, 0.0, np.r_[fit.radius_m, fit.radius_m, z_semi], _CYLINDER))
        elif fit.model == "rectangle" and fit.residual_m <= max(scale.box_tolerance_m, 0.08 * fit.extents_m[1]):
            yaw = float(np.arctan2(fit.axis_ab[1], fit.axis_ab[0]))
            semi = np.r_[fit.extents_m / 2, z_semi]
            footprint = ("box", Superquadric(np.r_[fit.centre_ab, z_semi], yaw, semi, _BOX))
        footprint_residual = np.inf
        if footprint is not None:
            footprint_residual = float(np.mean(np.abs(surface_distance(footprint[1], sample))))
            # A cylinder or box within the superquadric's own tolerance wins: the simpler primitive.
            if footprint_residual <= scale.superquadric_tolerance_m:
                return footprint
        if fit.axis_ab is not None:
            yaw = float(np.arctan2(fit.axis_ab[1], fit.axis_ab[0]))
        else:
            _, _, vt = np.linalg.svd(points_ab - points_ab.mean(axis=0), full_matrices=False)
            yaw = float(np.arctan2(vt[0, 1], vt[0, 0]))
        start = Superquadric(np.r_[back_centre_ab, z_semi], yaw, np.ones(3), np.array([0.5, 0.5]))
        local = start.to_local(sample)
        start = Superquadric(start.centre, yaw, np.r_[np.abs(local[:, :2]).max(axis=0), z_semi], start.exponents)
        try:
            # Seen from above, the visible footprint is the whole footprint: the superquadric stays inside it, except
            # across hull edges that end at an occluded silhouette (the object goes on behind the occluder).
            corners = cv2.convexHull(points_ab.astype(np.float32), returnPoints=False).reshape(-1)
            open_edges = occluded[corners] | occluded[np.roll(corners, -1)]
            bounds = {"z_range": (0.0, height), "within_xy": points_ab[corners], "open_edges": open_edges,
                      "robust_scale_m": 0.002 * scale.factor}
            # A few steps first: a shape no convex superquadric follows (a bottle's neck, a handle) is still far
            # off after them, and the rest of the fit is spent only on shapes that can pass.
            sq, residual = fit_superquadric(sample, start, max_evaluations=8, **bounds)
            if residual <= 2.0 * scale.superquadric_tolerance_m:
                sq, residual = fit_superquadric(sample, sq, **bounds)  # residual: the same measure on `sample`
                if residual <= scale.superquadric_tolerance_m and residual < footprint_residual:
                    return "superquadric", sq
        except ValueError:
            pass
        return footprint if footprint is not None else ("mirrored hull", None)

    # -- steps -------------------------------------------------------------------------------------------------
    def _observed_points(self, frame: RGBDFrame, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid depth points of the mask (eroded away from flying pixels when the mask is big enough), their colours
        and their (row, col) pixels."""
        inner = mask
        if self.erode_px > 0:
            kernel = np.ones((2 * self.erode_px + 1, 2 * self.erode_px + 1), np.uint8)
            eroded = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
            if eroded.sum() >= 0.5 * mask.sum():
                inner = eroded
        points_cam, pixels = frame.intrinsics.backproject(frame.depth_m, inner)
        if len(points_cam) < self.min_points:
            raise ReconstructionError(
                f"mask has {len(points_cam)} pixels with valid depth, at least {self.min_points} needed"
            )
        if len(points_cam) > self.max_points:
            pick = np.linspace(0, len(points_cam) - 1, self.max_points).astype(int)
            points_cam, pixels = points_cam[pick], pixels[pick]
        colors = frame.rgb[pixels[:, 0], pixels[:, 1]]
        return points_cam, colors, pixels

    def _scale(self, points_cam: np.ndarray) -> _Scale:
        """The object's size factor: the diagonal of its observed points' 2-98 % box over REFERENCE_SIZE_M, at least 1."""
        low, high = np.percentile(points_cam, [2, 98], axis=0)
        factor = max(1.0, float(np.linalg.norm(high - low)) / REFERENCE_SIZE_M)
        return _Scale(
            factor, self.table_clearance_m * factor, self.rest_on_plane_tolerance_m * factor,
            self.box_tolerance_m * factor, self.superquadric_tolerance_m * factor, self.occluder_margin_m * factor,
            self.cluster_eps_m * factor,
        )

    def _remove_outliers(self, points_cam: np.ndarray, scale: _Scale, focal_px: float) -> np.ndarray:
        """Indices of the points kept: statistical outliers out, then the Euclidean clusters that are not behind the
        largest one (drops background pixels inside the mask, keeps an object's parts that its visible surface
        does not join: a thin handle's far end, a clamp's jaw, a toy's wing, a pull string)."""
        index = np.arange(len(points_cam))
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_cam))
        _, kept = cloud.remove_statistical_outlier(self.outlier_neighbours, self.outlier_std_ratio)
        kept = np.asarray(kept, dtype=int)
        if len(kept) >= self.min_points:
            points_cam, index = points_cam[kept], index[kept]
        # Cluster radius grows with distance (neighbouring pixels are z / f apart) and with the object's size.
        # DBSCAN runs on an even subset (its cost grows fast with density); every point within eps of the largest
        # cluster is kept.
        eps = max(scale.cluster_eps_m, 4.0 * float(np.median(points_cam[:, 2])) / focal_px)
        subset = points_cam[:: max(1, len(points_cam) // self.cluster_points)]
        labels = np.asarray(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(subset)).cluster_dbscan(eps, 4))
        if labels.max() >= 0:
            counts = np.bincount(labels[labels >= 0])
            main = labels == counts.argmax()
            # Background the mask spilled onto lies behind the object; a part of the object does not lie farther
            # behind its largest part than the whole mask spans across the view (a handle or a pull string that
            # recedes from the camera, seen over a gap in the visible surface). A cluster of at least
            # `min_part_fraction` of the points whose median range is within that is a part.
            ranges = np.linalg.norm(subset, axis=1)
            across = float(np.linalg.norm(np.ptp(np.percentile(subset[:, :2], [2, 98], axis=0), axis=0)))
            far = float(np.percentile(ranges[main], 98)) + max(eps, across)
            parts = [label for label in range(len(counts))
                     if counts[label] >= max(4, self.min_part_fraction * len(subset))
                     and float(np.median(ranges[labels == label])) <= far]
            largest = subset[np.isin(labels, parts) | main]
            distance, _ = cKDTree(largest).query(points_cam, distance_upper_bound=eps)
            keep = np.isfinite(distance)
            if keep.sum() >= self.min_points:
                points_cam, index = points_cam[keep], index[keep]
        if len(points_cam) < self.min_points:
            raise ReconstructionError(f"only {len(points_cam)} consistent depth points left in the mask")
        return index

    def _verticals(self, plane: np.ndarray | None, points_cam: np.ndarray, scale: _Scale) -> list[tuple[np.ndarray, float]]:
        """(up vector, offset d with n.p + d = height above the bottom) of each bottom the object may stand on: the
        support plane when it rests on it; when its lowest seen point is higher, the plane first (its lower part
        hidden, e.g. a tall box seen from above) and its own lowest point second (stacked, held); without a plane,
        its own lowest point below the camera's image-up."""
        if plane is None:
            up_cam = np.array([0.0, -1.0, 0.0])
            return [(up_cam, -float(np.percentile(points_cam @ up_cam, 1)))]
        up_cam, plane_d = plane[:3], float(plane[3])
        lowest = float(np.percentile(points_cam @ up_cam + plane_d, 1))
        if lowest <= scale.rest_on_plane_tolerance_m:
            return [(up_cam, plane_d)]
        return [(up_cam, plane_d), (up_cam, -float(np.percentile(points_cam @ up_cam, 1)))]

    def _complete(
        self, points_cam: np.ndarray, basis: "_PlaneBasis", centre_ab: np.ndarray, heights: np.ndarray,
        mirrored: bool = True,
    ) -> np.ndarray:
        """Visible points plus (`mirrored`) their mirror through the vertical axis at `centre_ab`, plus all of them
        projected to the bottom."""
        sides_cam, sides_heights = points_cam, heights
        if mirrored:
            mirrored_cam = basis.from_ab(2 * centre_ab - basis.to_ab(points_cam), heights)
            sides_cam = np.vstack([points_cam, mirrored_cam])
            sides_heights = np.concatenate([heights, heights])
        return np.vstack([sides_cam, sides_cam - np.outer(sides_heights, basis.up_cam)])

    def _primitive_frame(
        self, basis: "_PlaneBasis", centre_ab: np.ndarray, axis_ab: np.ndarray, height: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """T_cam_obj of a primitive standing on the bottom plane (z up, x along `axis_ab` with the sign rule)."""
        x_cam = axis_ab[0] * basis.along_view + axis_ab[1] * basis.lateral
        if x_cam[0] < 0:  # x points into the camera's right half
            x_cam = -x_cam
        centre_cam = basis.from_ab(centre_ab[None, :], np.array([height / 2]))[0]
        R_cam_obj = np.stack([x_cam, np.cross(basis.up_cam, x_cam), basis.up_cam], axis=-1)
        return make_transform(R_cam_obj, centre_cam), np.array([0.0, 0.0, height])

    @staticmethod
    def _coloured(mesh_obj: trimesh.Trimesh, points_obj: np.ndarray, colors: np.ndarray) -> trimesh.Trimesh:
        """The mesh with RGBA vertex colours of the nearest observed point."""
        _, nearest = cKDTree(points_obj).query(mesh_obj.vertices)
        rgba = np.hstack([colors[nearest], np.full((len(nearest), 1), 255, np.uint8)])
        return trimesh.Trimesh(mesh_obj.vertices, mesh_obj.faces, vertex_colors=rgba, process=False)

    def _smooth(self, points_cam: np.ndarray) -> np.ndarray:
        """Each point replaced by the mean of its nearest neighbours: depth noise (mostly along the viewing ray)
        averages out before the hull, which would otherwise follow the outermost noisy points. (It pulls edges in by
        about a pixel; moving points along their own ray only, which would not, measured worse: it keeps the noise.)"""
        if self.smoothing_neighbours <= 1 or len(points_cam) <= self.smoothing_neighbours:
            return points_cam
        _, neighbours = cKDTree(points_cam).query(points_cam, k=self.smoothing_neighbours)
        return points_cam[neighbours].mean(axis=1)

    @staticmethod
    def _normals(points_cam: np.ndarray) -> np.ndarray:
        """Surface normals oriented toward the camera."""
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_cam))
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
        normals_cam = np.asarray(cloud.normals)
        return np.where((np.sum(normals_cam * points_cam, axis=1) > 0)[:, None], -normals_cam, normals_cam)

    def _fill_silhouette(
        self, frame: RGBDFrame, mask: np.ndarray, pixels: np.ndarray, points_cam: np.ndarray, colors: np.ndarray,
        normals_cam: np.ndarray, up_cam: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Points for the mask's outer rim pixels that have no kept depth (edge dropout, flying pixels removed as
        outliers): on their own viewing ray where it meets the tangent plane of the nearest kept point. Without them
        every silhouette edge, and so every extent, comes in by the width of the lost rim. Their normals are NaN
        (unknown): they take no part in the side-surface fits. Returns points, colours, normals and pixels, the
        rim's appended."""
        rim = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((2 * self.rim_px + 1,) * 2, np.uint8)).astype(bool)
        rim[pixels[:, 0], pixels[:, 1]] = False
        rim_pixels = np.argwhere(rim)
        if len(rim_pixels) == 0:
            return points_cam, colors, normals_cam, pixels
        # The same density as the observed points (they may be a subsample of the mask).
        stride = max(1, round(np.count_nonzero(mask) / max(len(pixels), 1)))
        rim_pixels = rim_pixels[::stride]
        distance, nearest = cKDTree(pixels).query(rim_pixels, distance_upper_bound=2.0 * self.rim_px + 1.5)
        found = np.isfinite(distance)
        rim_pixels, nearest = rim_pixels[found], nearest[found]
        K = frame.intrinsics
        rays = np.column_stack([(rim_pixels[:, 1] - K.cx) / K.fx, (rim_pixels[:, 0] - K.cy) / K.fy, np.ones(len(rim_pixels))])
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        anchor, normal = points_cam[nearest], normals_cam[nearest]
        # On the neighbour's tangent plane; where the ray grazes it (a curved side at the silhouette), at its range.
        along = np.sum(rays * normal, axis=1)
        grazing = np.abs(along) < 0.3
        distance = np.where(grazing, np.linalg.norm(anchor, axis=1), np.sum(anchor * normal, axis=1) / np.where(grazing, 1.0, along))
        filled = rays * distance[:, None]
        # The rim extends the silhouette sideways, not the top: a fill above the highest seen point (a bowl's or
        # mug's inner wall, seen from above, extended past its rim) is dropped. (Seen from above, an object's top is
        # in view; sideways a tangent plane may reach farther back: a curved side goes on curving away.)
        below_top = filled @ up_cam <= float(np.max(points_cam @ up_cam))
        rim_pixels, filled = rim_pixels[below_top], filled[below_top]
        return (
            np.vstack([points_cam, filled]),
            np.vstack([colors, frame.rgb[rim_pixels[:, 0], rim_pixels[:, 1]]]),
            np.vstack([normals_cam, np.full_like(filled, np.nan)]),
            np.vstack([pixels, rim_pixels]),
        )

    def _occluded_edge(
        self, frame: RGBDFrame, others_mask: np.ndarray | None, pixels: np.ndarray, points_cam: np.ndarray,
        scale: _Scale,
    ) -> np.ndarray:
        """Which points lie at a silhouette edge that something nearer covers: another, nearer object, or the image
        border (what lies outside the frame counts as an occluder nearer than everything). There the mask ends
        because the object is hidden, not because its surface does."""
        depth_m = frame.depth_m
        if others_mask is None:
            occluder_depth = np.full(depth_m.shape, np.inf, np.float32)
        else:
            occluder_depth = np.where(others_mask & np.isfinite(depth_m), depth_m, np.inf).astype(np.float32)
        # Nearest occluder depth within a few pixels of each pixel (a min filter over the other objects' depth and
        # the border's zero depth).
        size = 2 * self.rim_px + 3
        nearby = cv2.erode(occluder_depth, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT,
                           borderValue=0.0)[pixels[:, 0], pixels[:, 1]]
        return nearby < points_cam[:, 2] - scale.occluder_margin_m

    def _object_frame(self, completed_cam: np.ndarray, up_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T_cam_obj and the sizes along the object's x, y, z (see the module docstring)."""
        image_right = np.array([1.0, 0.0, 0.0])
        e1 = image_right - up_cam * (image_right @ up_cam)
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.array([0.0, 0.0, 1.0]) - up_cam * up_cam[2]
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(up_cam, e1)
        footprint = np.stack([completed_cam @ e1, completed_cam @ e2], axis=-1).astype(np.float32)
        rect = cv2.minAreaRect(footprint)
        (c1, c2) = rect[0]
        corners = cv2.boxPoints(rect).astype(np.float64)
        edge_a, edge_b = corners[1] - corners[0], corners[2] - corners[1]
        if np.linalg.norm(edge_a) < np.linalg.norm(edge_b):
            edge_a, edge_b = edge_b, edge_a
        length, width = float(np.linalg.norm(edge_a)), float(np.linalg.norm(edge_b))
        x_cam = (edge_a[0] * e1 + edge_a[1] * e2) / max(length, 1e-12)
        if x_cam @ image_right < 0:
            x_cam = -x_cam
        y_cam = np.cross(up_cam, x_cam)
        heights = completed_cam @ up_cam
        z_min, z_max = heights.min(), heights.max()
        centre_cam = c1 * e1 + c2 * e2 + up_cam * (z_min + z_max) / 2
        R_cam_obj = np.stack([x_cam, y_cam, up_cam], axis=-1)
        return make_transform(R_cam_obj, centre_cam), np.array([length, width, z_max - z_min])


def _subdivided(mesh: trimesh.Trimesh, max_edge_m: float = 0.015, max_iter: int = 6) -> trimesh.Trimesh:
    """Split faces until no edge is longer than `max_edge_m`, so vertex colours can vary over the surface; an object
    too large for that in `max_iter` halvings (over a metre) gets proportionally longer edges instead of an error."""
    longest_m = float(mesh.edges_unique_length.max()) if len(mesh.faces) else 0.0
    max_edge_m = max(max_edge_m, 1.01 * longest_m / 2**max_iter)
    vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=max_edge_m, max_iter=max_iter)
    return trimesh.Trimesh(vertices, faces, process=True)


class _PlaneBasis:
    """Coordinates on the bottom plane: `a` horizontal away from the camera toward the object, `b` lateral."""

    def __init__(self, up_cam: np.ndarray, plane_d: float, along_view: np.ndarray) -> None:
        self.up_cam = up_cam
        self.plane_d = plane_d
        self.camera_base = -up_cam * plane_d  # the camera origin projected onto the plane
        self.along_view = along_view
        self.lateral = np.cross(up_cam, along_view)

    @classmethod
    def facing(cls, points_cam: np.ndarray, up_cam: np.ndarray, plane_d: float) -> "_PlaneBasis":
        """Basis whose `a` axis points from the camera to the centroid of `points_cam`."""
        centroid = points_cam.mean(axis=0)
        along = centroid - up_cam * (centroid @ up_cam + plane_d) + up_cam * plane_d
        return cls(up_cam, plane_d, along / np.linalg.norm(along))

    def to_ab(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 2) plane coordinates of points (their vertical projections)."""
        rel = points_cam - self.camera_base
        return np.column_stack([rel @ self.along_view, rel @ self.lateral])

    def from_ab(self, points_ab: np.ndarray, heights: np.ndarray) -> np.ndarray:
        """Points in the optical frame at plane coordinates `points_ab` and `heights` above the plane."""
        return (
            self.camera_base
            + np.outer(points_ab[:, 0], self.along_view)
            + np.outer(points_ab[:, 1], self.lateral)
            + np.outer(heights, self.up_cam)
        )
