"""Rigid transforms and the conversions between pose conventions (the one place they live)."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation
from trimesh import transformations as trimesh_transformations

_I3 = np.eye(3)


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation and a translation."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=float).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    R = T[:3, :3]
    return make_transform(R.T, -R.T @ T[:3, 3])


def transform_points(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Points (N, 3) in frame b expressed in frame a."""
    points_b = np.asarray(points_b, dtype=float).reshape(-1, 3)
    return points_b @ T_a_b[:3, :3].T + T_a_b[:3, 3]


def quaternion_xyzw_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), ROS order, with w >= 0.

    A rotation matrix that is orthonormal to 1e-9 takes trimesh's closed form (about 7 us: poses are converted
    several times per object and frame; scipy's `Rotation.from_matrix` costs about 200 us); anything else goes
    through scipy, which finds the nearest rotation."""
    R = np.asarray(R, dtype=float)
    if R.shape == (3, 3) and np.abs(R.T @ R - _I3).max() < 1e-9 and np.linalg.det(R) > 0:
        T = np.eye(4)
        T[:3, :3] = R
        q_wxyz = trimesh_transformations.quaternion_from_matrix(T, isprecise=True)
        q = np.array([q_wxyz[1], q_wxyz[2], q_wxyz[3], q_wxyz[0]])
        q /= np.linalg.norm(q)
    else:
        q = Rotation.from_matrix(R).as_quat()
    return q if q[3] >= 0 else -q


def matrix_from_quaternion_xyzw(q_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w); it is normalised first."""
    return Rotation.from_quat(np.asarray(q_xyzw, dtype=float)).as_matrix()


def pose_from_transform(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion xyzw (4,)) of a 4x4 transform."""
    return T[:3, 3].copy(), quaternion_xyzw_from_matrix(T[:3, :3])


def poses_from_transforms(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions (N, 3), quaternions xyzw (N, 4), each with w >= 0) of (N, 4, 4) transforms in one scipy call (about
    60 us for 50 transforms, where `pose_from_transform` one by one costs about 7 us each)."""
    T = np.asarray(T, dtype=float).reshape(-1, 4, 4)
    if len(T) == 0:
        return np.zeros((0, 3)), np.zeros((0, 4))
    q = Rotation.from_matrix(T[:, :3, :3]).as_quat()
    q[q[:, 3] < 0] *= -1
    return T[:, :3, 3].copy(), q


def transform_from_pose(position: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """4x4 transform from a position and a quaternion (x, y, z, w)."""
    return make_transform(matrix_from_quaternion_xyzw(q_xyzw), position)


def rotation_angle_between(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle in radians of the rotation taking R_a to R_b."""
    cos = (np.trace(R_a.T @ R_b) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))
