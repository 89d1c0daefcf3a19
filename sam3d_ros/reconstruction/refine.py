"""Metric refinement of a posed model mesh against the observed depth of its mask (numpy, scipy, open3d).

The model's pose and scale are good to a few centimetres / tens of percent (more without a metric point map).
Depth fixes them in two steps:
1. scale k + translation t with the rotation kept, `p_cam = k R v_obj + t`: a robust alternating fit (closed-form
   4-unknown least squares per step) of
   - every observed depth point of the mask to its closest camera-facing surface sample (point-to-plane, plus a
     weak point-to-point term so that one visible plane cannot drift), Cauchy-weighted;
   - the silhouette: camera-facing samples that project off the mask where nothing observed is in front of them
     are pulled sideways onto the nearest mask pixel, so a too-large model cannot slide over a smaller patch;
   steps that keep pointing the same way are extrapolated (accelerated ICP, Besl and McKay 1992);
2. rigid ICP (open3d `registration_icp`, point-to-plane, Tukey loss) of the observed points onto the scaled,
   camera-facing model surface, kept only when it does not worsen the fit and moves little; then a few more
   scale + translation steps when it moved the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.open3d_threads import single_threaded
from sam3d_ros.geometry.transforms import make_transform, rotation_angle_between


@dataclass
class RefineResult:
    """Refined pose and the factor the object-frame mesh must be scaled by (about the object origin)."""

    T_cam_obj: np.ndarray  # (4, 4) refined object frame -> optical frame
    scale_factor: float  # multiply the object-frame mesh vertices by this
    rmse_m: float  # RMS point-to-surface distance of the inlier observed points after refinement
    inlier_fraction: float  # observed points within the final trim threshold
    n_points: int  # observed points used
    iterations: int  # scale + translation iterations in all
    icp_accepted: bool  # the rigid ICP step changed the pose


def observed_points_cam(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray, erode_px: int = 1, max_points: int = 400
) -> np.ndarray:
    """`points_cam` (N, 3) of valid depth in the mask, eroded by `erode_px` (flying pixels at the silhouette)
    when at least half of the mask survives, evenly subsampled to at most `max_points`."""
    mask = np.asarray(mask, dtype=bool)
    box = mask_box(mask)
    if box is None:
        return np.zeros((0, 3))
    v0, v1, u0, u1 = box
    inner = mask[v0:v1, u0:u1]
    if erode_px > 0:
        kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
        eroded = cv2.erode(inner.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        if eroded.sum() >= 0.5 * inner.sum():
            inner = eroded
    rows, cols = np.nonzero(inner)
    z = depth_m[v0:v1, u0:u1][rows, cols].astype(np.float64)
    valid = np.isfinite(z) & (z > 0)
    rows, cols, z = rows[valid] + v0, cols[valid] + u0, z[valid]
    x, y = (cols - intrinsics.cx) * z / intrinsics.fx, (rows - intrinsics.cy) * z / intrinsics.fy
    points_cam = np.stack([x, y, z], axis=-1)
    if len(points_cam) > max_points:
        points_cam = points_cam[np.linspace(0, len(points_cam) - 1, max_points).astype(int)]
    return points_cam


def mask_box(mask: np.ndarray, pad: int = 0) -> tuple[int, int, int, int] | None:
    """(v0, v1, u0, u1) bounding the True pixels of `mask`, grown by `pad` and clipped; None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    height, width = mask.shape
    return (max(int(rows[0]) - pad, 0), min(int(rows[-1]) + 1 + pad, height),
            max(int(cols[0]) - pad, 0), min(int(cols[-1]) + 1 + pad, width))


def surface_samples(
    vertices_obj: np.ndarray, faces: np.ndarray, max_samples: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """(points (S, 3), unit normals (S, 3)) on the mesh surface in its own frame: the centroids and normals of
    (an even subset of at most `max_samples` of) its non-degenerate faces."""
    vertices_obj = np.asarray(vertices_obj, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) > max_samples:
        faces = faces[np.linspace(0, len(faces) - 1, max_samples).astype(np.int64)]
    a, b, c = (vertices_obj[faces[:, i]] for i in range(3))
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=1)
    keep = length > 1e-14
    return ((a + b + c) / 3.0)[keep], normals[keep] / length[keep, None]


class _Silhouette:
    """The object's mask around its bounding box (plus a margin): depth, membership, other objects' pixels
    (possible occluders) and the nearest mask pixel of every pixel of the window (OpenCV distance transform)."""

    def __init__(self, depth_m: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray,
                 occluders: np.ndarray | None = None, margin: float = 0.5):
        v0, v1, u0, u1 = mask_box(mask)
        height, width = mask.shape
        pad_v, pad_u = int((v1 - v0) * margin) + 8, int((u1 - u0) * margin) + 8
        self.v0, self.u0 = max(v0 - pad_v, 0), max(u0 - pad_u, 0)
        v1, u1 = min(v1 + pad_v, height), min(u1 + pad_u, width)
        self.mask = np.ascontiguousarray(mask[self.v0 : v1, self.u0 : u1])
        self.depth_m = depth_m[self.v0 : v1, self.u0 : u1]
        self.occluders = None if occluders is None else occluders[self.v0 : v1, self.u0 : u1]
        self.intrinsics = intrinsics
        outside = (~self.mask).astype(np.uint8)
        _, self.labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        self.inside_rc = np.argwhere(self.mask)  # the labels number the zero (mask) pixels in raster order from 1

    def pull(self, p_cam: np.ndarray, margin_m: float) -> tuple[np.ndarray, np.ndarray]:
        """For points (M, 3) in front of the camera: (outside, target (M, 3)). `outside` marks points that project
        off the mask where nothing observed lies in front of them; their target is the nearest mask pixel's ray
        at the point's own depth (a sideways pull onto the silhouette)."""
        intr = self.intrinsics
        z = np.maximum(p_cam[:, 2], 1e-6)
        u = np.rint(intr.fx * p_cam[:, 0] / z + intr.cx).astype(np.int64) - self.u0
        v = np.rint(intr.fy * p_cam[:, 1] / z + intr.cy).astype(np.int64) - self.v0
        h, w = self.mask.shape
        u_c, v_c = np.clip(u, 0, w - 1), np.clip(v, 0, h - 1)
        in_window = (u == u_c) & (v == v_c)
        observed_z = self.depth_m[v_c, u_c]
        with np.errstate(invalid="ignore"):
            hidden = observed_z < z - margin_m  # something is in front of it
            if self.occluders is not None:  # other objects hide it unless they are clearly behind it
                hidden |= self.occluders[v_c, u_c] & ~(observed_z > z + margin_m)
        hidden &= in_window
        outside = (p_cam[:, 2] > 1e-3) & ~(in_window & self.mask[v_c, u_c]) & ~hidden
        near = self.inside_rc[np.clip(self.labels[v_c[outside], u_c[outside]] - 1, 0, len(self.inside_rc) - 1)]
        target = np.zeros_like(p_cam)
        zo = z[outside]
        target[outside] = np.stack(
            [(near[:, 1] + self.u0 - intr.cx) / intr.fx * zo, (near[:, 0] + self.v0 - intr.cy) / intr.fy * zo, zo],
            axis=-1,
        )
        return outside, target


class _SimilarityFit:
    """Robust alternating fit of scale k and translation t with a fixed rotation R: `p_cam = k R v_obj + t`.

    Rows of the least-squares problem in [k, t]:
    - every observed point with its closest camera-facing surface sample: point-to-plane, plus weak point-to-point
      (`point_weight`) so a single visible plane cannot drift; Cauchy weights (see `weights`);
    - with the silhouette: camera-facing samples that project off the mask with nothing in front of them, pulled
      sideways onto the nearest mask pixel (`silhouette_weight`): this stops a too-large model sliding over a
      smaller observed patch.
    """

    def __init__(self, points_cam: np.ndarray, samples_obj: np.ndarray, normals_obj: np.ndarray,
                 silhouette: _Silhouette | None, *, point_weight: float, silhouette_weight: float,
                 min_threshold_m: float, occlusion_margin_m: float, probe_samples: int) -> None:
        self.points_cam = points_cam
        self.samples_obj = samples_obj
        self.normals_obj = normals_obj
        self.silhouette = silhouette
        self.point_weight = point_weight
        self.silhouette_weight = silhouette_weight if silhouette is not None else 0.0
        self.min_threshold_m = min_threshold_m
        self.occlusion_margin_m = occlusion_margin_m
        self.probe_samples = probe_samples
        self.front = np.zeros(0, np.int64)
        self._probe = self.front
        self._tree: cKDTree | None = None

    def update_visibility(self, R: np.ndarray, k: float, t: np.ndarray) -> None:
        """Keep the samples whose normal faces the camera under the current pose (back-face culling)."""
        p_cam = k * self.samples_obj @ R.T + t
        front = np.flatnonzero(np.einsum("ij,ij->i", self.normals_obj @ R.T, p_cam) < 0)
        if len(front) < 10:
            front = np.arange(len(self.samples_obj))
        if self._tree is not None and np.array_equal(front, self.front):
            return
        self.front = front
        self._tree = cKDTree(self.samples_obj[self.front])
        self._probe = self.front[:: max(1, len(self.front) // self.probe_samples)]

    def observed_pairs(self, R: np.ndarray, k: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(R v of the closest sample (N, 3), its normal R n (N, 3), distance (N,)) for every observed point."""
        dist, index = self._tree.query((self.points_cam - t) @ R / k)
        picked = self.front[index]
        return self.samples_obj[picked] @ R.T, self.normals_obj[picked] @ R.T, dist * k

    def weights(self, dist: np.ndarray) -> np.ndarray:
        """Cauchy weights 1 / (1 + (d / sigma)^2), sigma = 3 x the median distance (at least `min_threshold_m`):
        far pairs still pull a little, so a wrong start is left (hard trimming keeps it in a local minimum)."""
        sigma = max(self.min_threshold_m, 3.0 * float(np.median(dist))) if len(dist) else self.min_threshold_m
        return 1.0 / (1.0 + (dist / sigma) ** 2)

    def threshold(self, dist: np.ndarray) -> float:
        """Inlier threshold of a set of pair distances (for the score)."""
        return max(self.min_threshold_m, 2.5 * float(np.median(dist))) if len(dist) else self.min_threshold_m

    def step(self, R: np.ndarray, k: float, t: np.ndarray) -> tuple[float, np.ndarray] | None:
        """One pairing + weighted least-squares solve of [k, t]; None when too few pairs are left."""
        m_a, n_a, d_a = self.observed_pairs(R, k, t)
        w_a = self.weights(d_a)
        if w_a.sum() < 6:
            return None
        o_a = self.points_cam
        nm = np.einsum("ij,ij->i", n_a, m_a)
        rows = np.column_stack([nm, n_a])
        weighted = rows * w_a[:, None]
        AtA = weighted.T @ rows
        Atb = weighted.T @ np.einsum("ij,ij->i", n_a, o_a)
        point_sets = [(m_a, o_a, self.point_weight * w_a)]
        if self.silhouette_weight > 0:
            m_b = self.samples_obj[self._probe] @ R.T
            outside, target = self.silhouette.pull(k * m_b + t, self.occlusion_margin_m)
            if outside.any():
                m_b, o_b = m_b[outside], target[outside]
                d_b = np.linalg.norm(k * m_b + t - o_b, axis=1)
                w_b = (d_b <= max(2.5 * float(np.median(d_b)), 0.01)).astype(np.float64)
                # Each probe stands for len(front) / len(probe) samples; weigh the set like its observed share.
                w_b *= self.silhouette_weight * len(o_a) / len(self._probe)
                point_sets.append((m_b, o_b, w_b))
        for m, o, w in point_sets:
            AtA[0, 0] += w @ np.einsum("ij,ij->i", m, m)
            AtA[0, 1:] += w @ m
            AtA[1:, 1:] += np.eye(3) * w.sum()
            Atb[0] += w @ np.einsum("ij,ij->i", m, o)
            Atb[1:] += w @ o
        AtA[1:, 0] = AtA[0, 1:]
        try:
            x = np.linalg.solve(AtA, Atb)
        except np.linalg.LinAlgError:
            return None
        return (float(x[0]), x[1:]) if np.isfinite(x).all() else None

    def run(self, R: np.ndarray, k: float, t: np.ndarray, iterations: int, k_limits: tuple[float, float],
            tolerance_m: float) -> tuple[float, np.ndarray, int]:
        """Iterate pairing and solving (visibility refreshed every 4 steps); returns (k, t, steps run)."""
        extent = float(np.abs(self.samples_obj).max())
        steps = 0
        previous: np.ndarray | None = None  # last step in [k * extent, t] (metres)
        for steps in range(1, iterations + 1):
            if steps % 4 == 0:
                self.update_visibility(R, k, t)
            solved = self.step(R, k, t)
            if solved is None:
                break
            k_new, t_new = float(np.clip(solved[0], *k_limits)), solved[1]
            delta = np.concatenate([[(k_new - k) * extent], t_new - t])
            moved = float(np.abs(delta[0]) + np.linalg.norm(delta[1:]))  # motion of the farthest sample
            k, t = k_new, t_new
            if moved < tolerance_m:
                break
            # ICP creeps geometrically along the scale-depth valley; when two steps point the same way, jump
            # ahead by the rest of the geometric series (Besl and McKay's accelerated ICP), at most 4 steps.
            if previous is not None:
                ratio = float(np.linalg.norm(delta) / max(np.linalg.norm(previous), 1e-12))
                cosine = float(delta @ previous / max(np.linalg.norm(delta) * np.linalg.norm(previous), 1e-12))
                if cosine > 0.95 and 0.2 < ratio < 0.98:
                    jump = delta * min(ratio / (1.0 - ratio), 4.0)
                    k = float(np.clip(k + jump[0] / extent, *k_limits))
                    t = t + jump[1:]
                    delta = None
            previous = delta
        return k, t, steps

    def score(self, R: np.ndarray, k: float, t: np.ndarray) -> tuple[float, float]:
        """(RMS distance of the inlier observed points, inlier fraction) under a pose."""
        _, _, dist = self.observed_pairs(R, k, t)
        inliers = dist <= self.threshold(dist)
        return (float(np.sqrt(np.mean(dist[inliers] ** 2))) if inliers.any() else np.inf), float(inliers.mean())


def refine_scale_pose(
    points_cam: np.ndarray,
    vertices_obj: np.ndarray,
    faces: np.ndarray,
    T_cam_obj: np.ndarray,
    *,
    depth_m: np.ndarray | None = None,
    intrinsics: CameraIntrinsics | None = None,
    mask: np.ndarray | None = None,
    occluders: np.ndarray | None = None,
    iterations: int = 15,
    scale_limits: tuple[float, float] = (0.5, 2.0),
    point_weight: float = 0.1,
    silhouette_weight: float = 1.0,
    min_threshold_m: float = 0.004,
    occlusion_margin_m: float = 0.01,
    probe_samples: int = 250,
    tolerance_m: float = 2e-4,
    icp: bool = True,
    icp_max_distance_m: float = 0.01,
    icp_max_rotation_rad: float = 0.35,
    icp_max_translation_m: float = 0.03,
    min_points: int = 30,
) -> RefineResult:
    """Fit scale and pose of the mesh (`vertices_obj` in metres in the object frame, posed by `T_cam_obj`) to the
    observed `points_cam` of its mask. With `depth_m`, `intrinsics` and `mask` the silhouette term is used too.
    Raises ValueError with fewer than `min_points` observed points."""
    T_cam_obj = np.asarray(T_cam_obj, dtype=np.float64)
    if T_cam_obj.shape != (4, 4) or not np.isfinite(T_cam_obj).all():
        raise ValueError("T_cam_obj must be a finite 4x4 transform")
    points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    points_cam = points_cam[np.isfinite(points_cam).all(axis=1)]
    if len(points_cam) < min_points:
        raise ValueError(f"{len(points_cam)} observed depth points in the mask, at least {min_points} needed")
    samples_obj, normals_obj = surface_samples(vertices_obj, faces)
    if len(samples_obj) < 10:
        raise ValueError(f"the mesh has {len(samples_obj)} usable faces")
    silhouette = None
    if depth_m is not None and intrinsics is not None and mask is not None and np.any(mask):
        silhouette = _Silhouette(depth_m, intrinsics, np.asarray(mask, dtype=bool),
                                 None if occluders is None else np.asarray(occluders, dtype=bool))
    fit = _SimilarityFit(points_cam, samples_obj, normals_obj, silhouette, point_weight=point_weight,
                         silhouette_weight=silhouette_weight, min_threshold_m=min_threshold_m,
                         occlusion_margin_m=occlusion_margin_m, probe_samples=probe_samples)
    R, t, k = T_cam_obj[:3, :3].copy(), np.asarray(T_cam_obj[:3, 3], dtype=np.float64).copy(), 1.0
    fit.update_visibility(R, k, t)
    k, t, total = fit.run(R, k, t, iterations, scale_limits, tolerance_m)
    fit.update_visibility(R, k, t)
    icp_accepted = False
    if icp:
        before, _ = fit.score(R, k, t)
        R_new, t_new = _rigid_icp(points_cam, fit, R, k, t, icp_max_distance_m)
        if (rotation_angle_between(R, R_new) <= icp_max_rotation_rad
                and float(np.linalg.norm(t_new - t)) <= icp_max_translation_m):
            fit.update_visibility(R_new, k, t_new)
            after, _ = fit.score(R_new, k, t_new)
            if after <= before * 1.02:
                extent_m = float(np.abs(samples_obj).max()) * k
                moved = rotation_angle_between(R, R_new) * extent_m + float(np.linalg.norm(t_new - t))
                R, t, icp_accepted = R_new, t_new, True
                if moved > 5 * tolerance_m:  # the new rotation changes the pairs: a few more scale steps
                    k, t, used = fit.run(R, k, t, max(3, iterations // 4), scale_limits, tolerance_m)
                    total += used
            else:
                fit.update_visibility(R, k, t)
    rmse, inliers = fit.score(R, k, t)
    return RefineResult(make_transform(R, t), k, rmse, inliers, len(points_cam), total, icp_accepted)


def _rigid_icp(points_cam: np.ndarray, fit: _SimilarityFit, R: np.ndarray, k: float, t: np.ndarray,
               max_distance_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Rigid point-to-plane ICP (open3d) of the observed points onto the camera-facing model surface; new (R, t)."""
    front = fit.front
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(k * fit.samples_obj[front] @ R.T + t))
    target.normals = o3d.utility.Vector3dVector(fit.normals_obj[front] @ R.T)
    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_cam))
    estimation = o3d.pipelines.registration.TransformationEstimationPointToPlane(
        o3d.pipelines.registration.TukeyLoss(k=max_distance_m / 2)
    )
    with single_threaded():  # reproducible sums (see open3d_threads)
        result = o3d.pipelines.registration.registration_icp(
            source, target, max_distance_m, np.eye(4), estimation,
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=15),
        )
    T_target_source = np.asarray(result.transformation)
    # The observed points move by T onto the model, so the model moves by T^-1 onto the observed points.
    R_inv = T_target_source[:3, :3].T
    return R_inv @ R, R_inv @ (t - T_target_source[:3, 3])
