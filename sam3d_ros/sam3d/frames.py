"""Frame conventions of SAM 3D Objects and their exact conversion to the ROS optical frame (pure numpy).

What the model returns (see models/README.md, "SAM 3D Objects"):
- object frame: the shape in the unit cube [-0.5, 0.5]^3, Z up; the `glb` mesh is the same shape turned Y up with
  row vectors `v_glb = v_obj @ M_OBJ_TO_GLB`;
- pose in the PyTorch3D camera frame (+X left, +Y up, +Z forward): quaternion `rotation` (w, x, y, z), `translation`
  t and isotropic `scale` s, applied with row vectors `p_p3d = s * v_obj @ R(q) + t`, i.e. in column form
  `p_p3d = s * R(q).T @ v_obj + t`;
- ROS optical frame (REP 103: +X right, +Y down, +Z forward): `p_ros = F_ROS_FROM_P3D @ p_p3d`, F = diag(-1, -1, 1).

Hence the object-to-optical transform is rotation `F @ R(q).T`, translation `F @ t`, and the metric mesh in the
object frame is `s * v_obj`. Everything here is float64 and exact up to rounding; the tests check it both ways.
"""
from __future__ import annotations

import numpy as np

from sam3d_ros.geometry.camera import CameraIntrinsics

# The quaternion helpers of `geometry.transforms` (scipy, trimesh) are imported where they are used: this module is
# imported on the worker side too, in SAM 3D's environment, where only numpy, pyzmq and msgpack are required.

#: Z-up object frame -> Y-up glb frame, row vectors: v_glb = v_obj @ M_OBJ_TO_GLB (undo with @ M_OBJ_TO_GLB.T).
M_OBJ_TO_GLB = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: PyTorch3D camera (+X left, +Y up) -> ROS optical frame (+X right, +Y down): p_ros = F_ROS_FROM_P3D @ p_p3d.
F_ROS_FROM_P3D = np.diag([-1.0, -1.0, 1.0])

for _array in (M_OBJ_TO_GLB, F_ROS_FROM_P3D):
    _array.flags.writeable = False


def rotation_matrix_wxyz(q_wxyz: np.ndarray) -> np.ndarray:
    """The usual 3x3 rotation matrix R(q) of a quaternion (w, x, y, z); q is normalised first."""
    q = np.asarray(q_wxyz, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.isfinite(q).all():
        raise ValueError(f"quaternion must be 4 finite numbers (w, x, y, z), got {q_wxyz!r}")
    norm = float(np.linalg.norm(q))
    if norm < 1e-9:
        raise ValueError("quaternion has zero norm")
    w, x, y, z = q / norm
    from sam3d_ros.geometry.transforms import matrix_from_quaternion_xyzw

    return matrix_from_quaternion_xyzw(np.array([x, y, z, w]))


def quaternion_wxyz_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation matrix (inverse of `rotation_matrix_wxyz`)."""
    from sam3d_ros.geometry.transforms import quaternion_xyzw_from_matrix

    x, y, z, w = quaternion_xyzw_from_matrix(np.asarray(R, dtype=np.float64).reshape(3, 3))  # ROS order, w >= 0
    return np.array([w, x, y, z])


def glb_to_obj(v_glb: np.ndarray) -> np.ndarray:
    """Vertices (N, 3) of the Y-up glb mesh in the Z-up object frame."""
    return np.asarray(v_glb, dtype=np.float64).reshape(-1, 3) @ M_OBJ_TO_GLB.T


def obj_to_glb(v_obj: np.ndarray) -> np.ndarray:
    """Vertices (N, 3) of the Z-up object frame turned Y up, as the model writes its glb."""
    return np.asarray(v_obj, dtype=np.float64).reshape(-1, 3) @ M_OBJ_TO_GLB


def p3d_to_ros(points_p3d: np.ndarray) -> np.ndarray:
    """Points (..., 3) from the PyTorch3D camera frame to the ROS optical frame (negate X and Y)."""
    return np.asarray(points_p3d, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])


def ros_to_p3d(points_cam: np.ndarray) -> np.ndarray:
    """Points (..., 3) from the ROS optical frame to the PyTorch3D camera frame (its own inverse)."""
    return p3d_to_ros(points_cam)


def pose_p3d_apply(v_obj: np.ndarray, q_wxyz: np.ndarray, t_p3d: np.ndarray, scale: float) -> np.ndarray:
    """The model's own posing, literally: row vectors `p_p3d = s * v_obj @ R(q) + t` (N, 3)."""
    v_obj = np.asarray(v_obj, dtype=np.float64).reshape(-1, 3)
    return float(scale) * v_obj @ rotation_matrix_wxyz(q_wxyz) + np.asarray(t_p3d, dtype=np.float64).reshape(3)


def isotropic_scale(scale: np.ndarray, tolerance: float = 1e-3) -> float:
    """The one value of the model's `scale` (3 equal values, or 1); ValueError when not isotropic or not > 0."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    if s.size not in (1, 3) or not np.isfinite(s).all():
        raise ValueError(f"scale must be 1 or 3 finite numbers, got {s.size}")
    value = float(s.mean())
    if value <= 0:
        raise ValueError(f"scale {value:g} is not positive")
    if np.abs(s - value).max() > tolerance * value:
        raise ValueError(f"scale {s.tolist()} is not isotropic")
    return value


def T_cam_obj_from_p3d_pose(q_wxyz: np.ndarray, t_p3d: np.ndarray) -> np.ndarray:
    """4x4 object frame -> ROS optical frame of the model's pose: rotation F @ R(q).T, translation F @ t.

    The scale is not in it: apply it to the mesh (`s * v_obj`), which then lives in metres in the object frame.
    """
    t_p3d = np.asarray(t_p3d, dtype=np.float64).reshape(-1)
    if t_p3d.shape != (3,) or not np.isfinite(t_p3d).all():
        raise ValueError("translation must be 3 finite numbers")
    T_cam_obj = np.eye(4)
    T_cam_obj[:3, :3] = F_ROS_FROM_P3D @ rotation_matrix_wxyz(q_wxyz).T
    T_cam_obj[:3, 3] = F_ROS_FROM_P3D @ t_p3d
    return T_cam_obj


def p3d_pose_from_T_cam_obj(T_cam_obj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q_wxyz (4,), t_p3d (3,)) that the model would return for `T_cam_obj` (inverse of the above)."""
    T_cam_obj = np.asarray(T_cam_obj, dtype=np.float64).reshape(4, 4)
    R_q = (F_ROS_FROM_P3D @ T_cam_obj[:3, :3]).T  # F @ R(q).T = R_cam_obj  =>  R(q) = (F @ R_cam_obj).T
    return quaternion_wxyz_from_matrix(R_q), F_ROS_FROM_P3D @ T_cam_obj[:3, 3]


def mesh_vertices_obj_m(v_glb: np.ndarray, scale: float) -> np.ndarray:
    """Metric vertices (N, 3) in the Z-up object frame from the Y-up unit-cube glb vertices: s * (v_glb @ M.T)."""
    return float(scale) * glb_to_obj(v_glb)


def pointmap_p3d_from_depth(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """H x W x 3 float32 point map in the PyTorch3D camera convention from a registered depth image.

    Back-projects every pixel in the optical frame (x = (u - cx) z / fx, y = (v - cy) z / fy) and negates X and Y;
    pixels with no valid depth (NaN, inf, <= 0) are NaN in all three channels.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth is {depth_m.shape[1::-1]} but the camera is {intrinsics.width}x{intrinsics.height}")
    z = np.array(depth_m, dtype=np.float32)  # a copy
    with np.errstate(invalid="ignore"):
        z[~((z > 0) & (z < np.inf))] = np.nan  # NaN fails both tests too
    return np.multiply(_rays_p3d(intrinsics), z[..., None])


_RAY_CACHE: dict[CameraIntrinsics, np.ndarray] = {}


def _rays_p3d(intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W, 3) float32 rays (-x, -y, 1) with (x, y, 1) the optical-frame ray of each pixel (cached)."""
    rays = _RAY_CACHE.get(intrinsics)
    if rays is None:
        rays = (intrinsics.pixel_rays() * np.array([-1.0, -1.0, 1.0])).astype(np.float32)
        rays.flags.writeable = False
        if len(_RAY_CACHE) > 8:
            _RAY_CACHE.clear()
        _RAY_CACHE[intrinsics] = rays
    return rays
