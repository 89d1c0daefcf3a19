"""Camera model and pose conventions: exact round trips."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.transforms import (
    invert_transform,
    make_transform,
    matrix_from_quaternion_xyzw,
    pose_from_transform,
    poses_from_transforms,
    quaternion_xyzw_from_matrix,
    rotation_angle_between,
    transform_from_pose,
    transform_points,
)


def test_backproject_then_project_returns_the_pixels():
    cam = CameraIntrinsics(64, 48, 60.0, 61.0, 31.5, 23.5)
    depth = np.full((48, 64), 0.8, np.float32)
    depth[0, 0] = np.nan
    depth[1, 1] = 0.0
    points_cam, pixels = cam.backproject(depth)
    assert len(points_cam) == 64 * 48 - 2
    uv = cam.project(points_cam)
    np.testing.assert_allclose(uv[:, 0], pixels[:, 1], atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], pixels[:, 0], atol=1e-9)
    np.testing.assert_allclose(points_cam[:, 2], 0.8, atol=1e-6)


def test_optical_frame_axes_right_down_forward():
    cam = CameraIntrinsics(640, 480, 600.0, 600.0, 320.0, 240.0)
    uv = cam.project(np.array([[0.1, 0.0, 1.0], [0.0, 0.1, 1.0]]))
    assert uv[0, 0] > 320 and uv[0, 1] == pytest.approx(240)  # +X is image right
    assert uv[1, 1] > 240 and uv[1, 0] == pytest.approx(320)  # +Y is image down
    assert np.isnan(cam.project(np.array([[0.0, 0.0, -1.0]]))).all()


def test_invalid_intrinsics_are_rejected():
    with pytest.raises(ValueError, match="focal"):
        CameraIntrinsics(640, 480, 0.0, 600.0, 320.0, 240.0).validate()
    with pytest.raises(ValueError, match="empty"):
        CameraIntrinsics(0, 480, 600.0, 600.0, 320.0, 240.0).validate()


def test_pose_round_trip_and_quaternion_order():
    rng = np.random.default_rng(1)
    for _ in range(20):
        R = Rotation.random(random_state=rng).as_matrix()
        T = make_transform(R, rng.normal(size=3))
        position, q_xyzw = pose_from_transform(T)
        assert q_xyzw[3] >= 0
        np.testing.assert_allclose(transform_from_pose(position, q_xyzw), T, atol=1e-12)
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(quaternion_xyzw_from_matrix(Rz), [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(matrix_from_quaternion_xyzw([0, 0, np.sqrt(0.5), np.sqrt(0.5)]), Rz, atol=1e-12)


def test_invert_and_transform_points():
    rng = np.random.default_rng(2)
    T_a_b = make_transform(Rotation.random(random_state=rng).as_matrix(), [1.0, 2.0, 3.0])
    points_b = rng.normal(size=(10, 3))
    points_a = transform_points(T_a_b, points_b)
    np.testing.assert_allclose(transform_points(invert_transform(T_a_b), points_a), points_b, atol=1e-12)
    assert rotation_angle_between(np.eye(3), Rotation.from_euler("z", 0.3).as_matrix()) == pytest.approx(0.3)


def test_quaternion_fast_path_matches_scipy_on_exact_and_nearly_orthonormal_rotations():
    from scipy.spatial.transform import Rotation

    from sam3d_ros.geometry.transforms import quaternion_xyzw_from_matrix

    rotations = list(Rotation.random(200, random_state=7).as_matrix())
    rotations += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
    for R in rotations:
        expected = Rotation.from_matrix(R).as_quat()
        expected = expected if expected[3] >= 0 else -expected
        q = quaternion_xyzw_from_matrix(R)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        # w == 0 (half turns): q and -q are the same rotation
        assert np.allclose(q, expected, atol=1e-9) or (abs(q[3]) < 1e-9 and np.allclose(q, -expected, atol=1e-9))
    noisy = rotations[0] + 1e-4  # not orthonormal: scipy's nearest rotation
    assert np.allclose(np.abs(quaternion_xyzw_from_matrix(noisy)), np.abs(Rotation.from_matrix(noisy).as_quat()) * 1, atol=1e-6)


def test_poses_of_many_transforms_in_one_call_equal_them_one_by_one():
    rotations = Rotation.random(40, random_state=3).as_matrix()
    rotations[0] = Rotation.from_euler("x", np.pi).as_matrix()  # w = 0: the sign rule at its edge
    T = np.tile(np.eye(4), (40, 1, 1))
    T[:, :3, :3] = rotations
    T[:, :3, 3] = np.random.default_rng(3).normal(size=(40, 3))
    positions, quaternions = poses_from_transforms(T)
    for k in range(40):
        position, q_xyzw = pose_from_transform(T[k])
        assert np.allclose(positions[k], position)
        assert np.allclose(quaternions[k], q_xyzw, atol=1e-9) or np.allclose(quaternions[k], -q_xyzw, atol=1e-9) and abs(q_xyzw[3]) < 1e-9
        assert quaternions[k][3] >= 0
    assert poses_from_transforms(np.zeros((0, 4, 4)))[1].shape == (0, 4)
