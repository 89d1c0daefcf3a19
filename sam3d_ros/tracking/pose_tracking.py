"""Frame-to-frame pose tracking of an already reconstructed object: reconstruct once, track always.

An object's mesh is sampled once into an `ObjectModel` (surface points with outward normals in the object frame).
Every camera frame, `track_pose` registers the object's observed depth points (`observed_tracking_points`) onto
that model with open3d's point-to-plane ICP, starting from the last pose (optionally moved by
`centroid_motion_prior`). The registration runs observed -> model: every observed point lies on the visible side
of the whole model, so partial views need no visibility reasoning, and the model cloud stays fixed in the object
frame. open3d's `registration_icp` takes no prebuilt KD-tree (it builds one of the target per call, ~0.2 ms for
the default 1500 samples), so the model is kept small. Coarse to fine: a wide correspondence gate on a subset of
the points first, then all of them at `max_correspondence_m`. Flying pixels, mask spill and other points far from
the surface fall outside the gate or under the Tukey loss; the fraction of observed points that end up within the
gate (`fitness`) tells a good track from a lost one. Objects resting on a known support plane can be held upright
(`support_plane_cam`), which removes tilt drift when the model is only approximate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.open3d_threads import single_threaded
from sam3d_ros.geometry.support_plane import plane_heights
from sam3d_ros.geometry.transforms import invert_transform, make_transform, rotation_angle_between, transform_points
from sam3d_ros.reconstruction.refine import observed_points_cam

_REG = o3d.pipelines.registration


@dataclass
class ObjectModel:
    """Surface samples of an object's mesh in its own frame, ready for repeated ICP (built once per mesh)."""

    points_obj: np.ndarray  # (S, 3) metres, object frame, roughly evenly spread over the surface
    normals_obj: np.ndarray  # (S, 3) unit outward normals, object frame
    cloud_obj: o3d.geometry.PointCloud  # the same points and normals: the ICP target
    tree_obj: cKDTree  # KD-tree of points_obj, for scoring a pose without open3d building one per call

    @classmethod
    def from_mesh(cls, mesh_obj: trimesh.Trimesh, n_points: int = 1500, seed: int = 0) -> "ObjectModel":
        """About `n_points` evenly spaced samples of `mesh_obj` (metres, object frame) with its face normals,
        turned outward when the mesh is closed but inside out. Raises ValueError on a mesh without area."""
        if len(mesh_obj.faces) == 0 or not mesh_obj.area > 0:
            raise ValueError("the mesh has no surface to sample")
        points_obj, faces = trimesh.sample.sample_surface_even(mesh_obj, int(n_points), seed=seed)
        normals_obj = np.asarray(mesh_obj.face_normals, dtype=np.float64)[faces]
        if mesh_obj.is_watertight and mesh_obj.volume < 0:
            normals_obj = -normals_obj
        points_obj = np.ascontiguousarray(points_obj, dtype=np.float64)
        keep = np.isfinite(points_obj).all(axis=1) & (np.abs(np.linalg.norm(normals_obj, axis=1) - 1.0) < 1e-3)
        points_obj, normals_obj = points_obj[keep], np.ascontiguousarray(normals_obj[keep])
        if len(points_obj) < 10:
            raise ValueError(f"only {len(points_obj)} usable surface samples on the mesh")
        return cls.from_samples(points_obj, normals_obj)

    @classmethod
    def from_samples(cls, points_obj: np.ndarray, normals_obj: np.ndarray) -> "ObjectModel":
        """The model of surface samples already taken (object frame): its ICP cloud and KD-tree built here."""
        points_obj = np.ascontiguousarray(points_obj, dtype=np.float64)
        normals_obj = np.ascontiguousarray(normals_obj, dtype=np.float64)
        cloud_obj = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_obj))
        cloud_obj.normals = o3d.utility.Vector3dVector(normals_obj)
        return cls(points_obj, normals_obj, cloud_obj, cKDTree(points_obj))

    def __reduce__(self):
        """Pickled as its samples (an open3d cloud cannot be): a model made in the fusion process reaches the node
        without the node sampling the mesh again."""
        return ObjectModel.from_samples, (self.points_obj, self.normals_obj)


@dataclass
class TrackResult:
    """Outcome of one `track_pose` call."""

    T_cam_obj: np.ndarray  # (4, 4) tracked pose (the initial pose when the registration did not run)
    fitness: float  # fraction of observed points with a model point within max_correspondence_m at the end
    rmse_m: float  # RMS distance of those points to their closest model point (inf when there are none)
    n_points: int  # finite observed points given
    ok: bool  # enough points, and fitness >= min_fitness
    step_m: float = 0.0  # how far the object origin moved from the initial pose
    step_rad: float = 0.0  # how far it turned from the initial pose


def observed_tracking_points(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    mask: np.ndarray,
    max_points: int = 800,
    rng: np.random.Generator | int | None = None,
    erode_px: int = 1,
    support_plane_cam: np.ndarray | None = None,
    plane_clearance_m: float = 0.006,
) -> np.ndarray:
    """`points_cam` (N <= max_points, 3) of the mask's valid depth, for tracking.

    Large masks are first sampled on a pixel grid (stride s chosen to leave about 4 x `max_points` pixels), then
    `refine.observed_points_cam` back-projects them with the mask eroded by `erode_px` grid steps (flying pixels at
    the silhouette); with `support_plane_cam` (a, b, c, d) points less than `plane_clearance_m` above the plane
    (mask spill onto the table) are dropped; the rest is subsampled evenly (`rng` None) or at random (`rng` a
    generator or a seed) to `max_points`.
    """
    mask = np.asarray(mask, dtype=bool)
    stride = max(1, int(np.sqrt(np.count_nonzero(mask) / (4.0 * max(max_points, 1)))))
    if stride > 1:  # the same pinhole camera on every stride-th pixel: u = s u', so cx' = cx / s, fx' = fx / s
        depth_m, mask = depth_m[::stride, ::stride], mask[::stride, ::stride]
        intrinsics = CameraIntrinsics(mask.shape[1], mask.shape[0], intrinsics.fx / stride, intrinsics.fy / stride,
                                      intrinsics.cx / stride, intrinsics.cy / stride)
    points_cam = observed_points_cam(depth_m, intrinsics, mask, erode_px=erode_px, max_points=mask.size)
    if support_plane_cam is not None and len(points_cam):
        above = plane_heights(np.asarray(support_plane_cam, dtype=np.float64), points_cam) > plane_clearance_m
        points_cam = points_cam[above]
    if len(points_cam) <= max_points:
        return points_cam
    if rng is None:
        return points_cam[np.linspace(0, len(points_cam) - 1, max_points).astype(np.int64)]
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return points_cam[np.sort(rng.choice(len(points_cam), size=max_points, replace=False))]


def centroid_motion_prior(
    T_cam_obj_prev: np.ndarray,
    centroid_prev_cam: np.ndarray,
    points_cam: np.ndarray,
    max_shift_m: float = 0.05,
    support_plane_cam: np.ndarray | None = None,
) -> np.ndarray:
    """`T_cam_obj_prev` moved by the shift of the observed points' centroid since the previous frame
    (`centroid_prev_cam`): a cheap initial pose for `track_pose` when objects move fast. The shift is clipped to
    `max_shift_m` and, with `support_plane_cam`, kept parallel to the plane; no points give the previous pose."""
    T_cam_obj = np.array(T_cam_obj_prev, dtype=np.float64)
    points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    points_cam = points_cam[np.isfinite(points_cam).all(axis=1)]
    if not len(points_cam):
        return T_cam_obj
    shift = points_cam.mean(axis=0) - np.asarray(centroid_prev_cam, dtype=np.float64).reshape(3)
    if support_plane_cam is not None:
        normal = np.asarray(support_plane_cam, dtype=np.float64)[:3]
        normal = normal / np.linalg.norm(normal)
        shift -= normal * (shift @ normal)
    length = float(np.linalg.norm(shift))
    if length > max_shift_m:
        shift *= max_shift_m / length
    T_cam_obj[:3, 3] += shift
    return T_cam_obj


def track_pose(
    model: ObjectModel,
    points_cam: np.ndarray,
    T_cam_obj_init: np.ndarray,
    max_correspondence_m: float = 0.01,
    *,
    support_plane_cam: np.ndarray | None = None,
    coarse_factor: float = 3.0,
    coarse_points: int = 250,
    coarse_iterations: int = 10,
    fine_iterations: int = 10,
    min_points: int = 30,
    min_fitness: float = 0.7,
) -> TrackResult:
    """Pose of `model` that fits the observed `points_cam` (its visible side), starting from `T_cam_obj_init`.

    Point-to-plane ICP (open3d, Tukey loss as wide as the gate) of the observed points onto the model surface,
    coarse to fine: every n-th point (at most about `coarse_points`) with a gate of `coarse_factor` x
    `max_correspondence_m`, then all of them at `max_correspondence_m`. With `support_plane_cam` (a, b, c, d) the
    object is taken to rest on that plane (the initial pose must already stand on it): the registered motion is
    reduced to a slide along the plane and a turn about its normal (`upright_motion`), so it cannot tip over, and
    that pose is scored again (about 0.3 ms more). Fewer than `min_points` finite points give `ok=False` and the
    initial pose; a fitness below `min_fitness` gives `ok=False` with the registered pose (for the caller to judge).
    The ICP runs on one thread: the same points and start give the same pose, bit for bit (`open3d_threads`).
    """
    T_cam_obj_init = np.asarray(T_cam_obj_init, dtype=np.float64)
    if T_cam_obj_init.shape != (4, 4) or not np.isfinite(T_cam_obj_init).all():
        raise ValueError("T_cam_obj_init must be a finite 4x4 transform")
    points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    points_cam = points_cam[np.isfinite(points_cam).all(axis=1)]
    n_points = len(points_cam)
    if n_points < max(min_points, 6):
        return TrackResult(T_cam_obj_init.copy(), 0.0, float("inf"), n_points, False)

    stages = []
    if coarse_iterations > 0 and coarse_factor > 1.0:
        stride = max(1, n_points // max(coarse_points, 1))
        stages.append((points_cam[::stride], coarse_factor * max_correspondence_m, coarse_iterations))
    stages.append((points_cam, max_correspondence_m, max(fine_iterations, 1)))
    # The observed points (camera frame) move onto the fixed model cloud (object frame): ICP estimates T_obj_cam.
    T_obj_cam = invert_transform(T_cam_obj_init)
    with single_threaded():  # ICP's sums, reduced on several threads, differ in the last bits from run to run
        for stage_points, gate_m, iterations in stages:
            source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(stage_points))
            estimation = _REG.TransformationEstimationPointToPlane(_REG.TukeyLoss(k=gate_m))
            criteria = _REG.ICPConvergenceCriteria(relative_fitness=1e-4, relative_rmse=1e-4, max_iteration=iterations)
            result = _REG.registration_icp(source, model.cloud_obj, gate_m, T_obj_cam, estimation, criteria)
            T_obj_cam = np.asarray(result.transformation)
    T_cam_obj = invert_transform(T_obj_cam)
    if support_plane_cam is None:  # open3d scored the final pose
        fitness, rmse_m = float(result.fitness), float(result.inlier_rmse)
    else:  # keep it upright on the plane, then score that pose
        T_cam_obj = upright_motion(T_cam_obj_init, T_cam_obj, support_plane_cam)
        fitness, rmse_m = pose_fit(model, points_cam, T_cam_obj, max_correspondence_m)
    rmse_m = rmse_m if fitness > 0 else float("inf")
    return TrackResult(
        T_cam_obj=T_cam_obj,
        fitness=fitness,
        rmse_m=rmse_m,
        n_points=n_points,
        ok=bool(fitness >= min_fitness and np.isfinite(T_cam_obj).all()),
        step_m=float(np.linalg.norm(T_cam_obj[:3, 3] - T_cam_obj_init[:3, 3])),
        step_rad=rotation_angle_between(T_cam_obj_init[:3, :3], T_cam_obj[:3, :3]),
    )


def pose_fit(model: ObjectModel, points_cam: np.ndarray, T_cam_obj: np.ndarray,
             max_correspondence_m: float = 0.01) -> tuple[float, float]:
    """How well `model` at `T_cam_obj` fits the observed `points_cam` (N, 3): the fraction of the points within
    `max_correspondence_m` of its surface samples (fitness) and their RMS distance (inf without any)."""
    points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    if len(points_cam) == 0:
        return 0.0, float("inf")
    distance, _ = model.tree_obj.query(transform_points(invert_transform(T_cam_obj), points_cam),
                                       distance_upper_bound=max_correspondence_m)
    inliers = distance[np.isfinite(distance)]
    return len(inliers) / len(points_cam), float(np.sqrt(np.mean(inliers**2))) if len(inliers) else float("inf")


def upright_motion(T_cam_obj_from: np.ndarray, T_cam_obj_to: np.ndarray, plane_cam: np.ndarray) -> np.ndarray:
    """`T_cam_obj_to` with the motion from `T_cam_obj_from` reduced to what an object resting on the plane
    (a, b, c, d) can do: its origin slides parallel to the plane and it turns about the plane normal (the twist
    part of the rotation in a swing-twist split)."""
    normal = np.asarray(plane_cam, dtype=np.float64)[:3]
    normal = normal / np.linalg.norm(normal)
    R = T_cam_obj_to[:3, :3] @ T_cam_obj_from[:3, :3].T
    # Twist angle 2 atan2(v.n, w) of the quaternion (v, w) of R, written with its matrix entries (times 4w).
    axial = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    angle = 2.0 * np.arctan2(axial @ normal, 1.0 + np.trace(R))
    K = np.array([[0.0, -normal[2], normal[1]], [normal[2], 0.0, -normal[0]], [-normal[1], normal[0], 0.0]])
    R_twist = np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * (K @ K)
    origin_from = T_cam_obj_from[:3, 3]
    shift = T_cam_obj_to[:3, 3] - origin_from
    return make_transform(R_twist @ T_cam_obj_from[:3, :3], origin_from + shift - normal * (shift @ normal))
