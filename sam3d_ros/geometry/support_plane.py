"""Support plane (table) estimation from the depth pixels that belong to no object."""
from __future__ import annotations

import numpy as np
import open3d as o3d

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.open3d_threads import single_threaded


def orient_plane_toward_camera(plane: np.ndarray) -> np.ndarray:
    """Plane (a, b, c, d) with a unit normal and d > 0, so that the camera origin lies on the positive side."""
    plane = np.asarray(plane, dtype=float)
    plane = plane / np.linalg.norm(plane[:3])
    return plane if plane[3] > 0 else -plane


def estimate_support_plane(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    exclude_mask: np.ndarray | None = None,
    stride: int = 4,
    distance_threshold_m: float = 0.008,
    min_inlier_fraction: float = 0.15,
    seed: int = 0,
) -> np.ndarray | None:
    """Dominant plane under the objects as (a, b, c, d) in the optical frame (unit normal toward the camera), or None.

    Only pixels outside `exclude_mask` (the objects) on a `stride` grid are used. The plane must hold at least
    `min_inlier_fraction` of them and must not face image-down (a ceiling or the underside of a shelf), otherwise
    None is returned and callers fall back to the camera's own vertical. The RANSAC runs seeded on one thread, so the
    same depth always gives the same plane (`open3d_threads`).
    """
    sample = np.zeros(depth_m.shape, dtype=bool)
    sample[::stride, ::stride] = True
    if exclude_mask is not None:
        sample &= ~exclude_mask
    points_cam, _ = intrinsics.backproject(depth_m, sample)
    if len(points_cam) < 100:
        return None
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_cam))
    with single_threaded():
        o3d.utility.random.seed(seed)
        plane, inliers = cloud.segment_plane(distance_threshold_m, 3, 300)
    if len(inliers) < min_inlier_fraction * len(points_cam):
        return None
    plane = orient_plane_toward_camera(np.asarray(plane))
    # Oriented toward the camera, a support surface's normal never points image-down (+Y).
    if plane[1] > 0.3:
        return None
    return plane


def plane_heights(plane: np.ndarray, points_cam: np.ndarray) -> np.ndarray:
    """Signed distance of each point above the plane (positive on the camera side)."""
    return points_cam @ plane[:3] + plane[3]
