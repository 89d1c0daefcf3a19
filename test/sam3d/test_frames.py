"""SAM 3D Objects conventions -> ROS optical frame: exact, hand-checked conversions (sam3d_ros.sam3d.frames)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.sam3d import frames as frames

RNG = np.random.default_rng(7)


def random_quaternions(n: int) -> np.ndarray:
    q = RNG.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_rotation_matrix_is_the_usual_one_of_a_wxyz_quaternion():
    for q in random_quaternions(20):
        expected = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()  # scipy wants x, y, z, w
        np.testing.assert_allclose(frames.rotation_matrix_wxyz(q), expected, atol=1e-12)
    # 90 degrees about z, real part first: x -> y.
    c = np.sqrt(0.5)
    np.testing.assert_allclose(frames.rotation_matrix_wxyz([c, 0, 0, c]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(frames.rotation_matrix_wxyz([2.0, 0, 0, 0]), np.eye(3))  # normalised first


def test_quaternion_round_trip_with_w_non_negative():
    for q in random_quaternions(20):
        back = frames.quaternion_wxyz_from_matrix(frames.rotation_matrix_wxyz(q))
        assert back[0] >= 0
        np.testing.assert_allclose(back, q if q[0] >= 0 else -q, atol=1e-12)


@pytest.mark.parametrize("bad", [[0, 0, 0, 0], [1, 0, 0], [np.nan, 0, 0, 1]])
def test_bad_quaternions_are_rejected(bad):
    with pytest.raises(ValueError):
        frames.rotation_matrix_wxyz(bad)


def test_glb_is_the_object_frame_turned_y_up():
    v_obj = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    # Object z (up) becomes glb y (up); object y becomes glb -z; x stays.
    np.testing.assert_array_equal(frames.obj_to_glb(v_obj), [[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    v = RNG.normal(size=(50, 3))
    np.testing.assert_allclose(frames.glb_to_obj(frames.obj_to_glb(v)), v, atol=1e-15)
    np.testing.assert_allclose(frames.M_OBJ_TO_GLB @ frames.M_OBJ_TO_GLB.T, np.eye(3))
    assert np.linalg.det(frames.M_OBJ_TO_GLB) == pytest.approx(1.0)


def test_pytorch3d_camera_is_x_left_y_up():
    # A point to the left of and above the optical axis in PyTorch3D is at -x (left) and -y (up) in ROS.
    np.testing.assert_array_equal(frames.p3d_to_ros([0.1, 0.2, 1.5]), [-0.1, -0.2, 1.5])
    np.testing.assert_array_equal(frames.ros_to_p3d(frames.p3d_to_ros([0.1, 0.2, 1.5])), [0.1, 0.2, 1.5])


def test_hand_computed_identity_pose():
    T = frames.T_cam_obj_from_p3d_pose([1, 0, 0, 0], [0.1, 0.2, 1.0])
    np.testing.assert_array_equal(T[:3, :3], np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(T[:3, 3], [-0.1, -0.2, 1.0])
    # The object's +x axis tip at scale 0.5: PyTorch3D (0.6, 0.2, 1.0) = 0.6 m to the left, 0.2 m up.
    np.testing.assert_allclose(T[:3, :3] @ [0.5, 0, 0] + T[:3, 3], [-0.6, -0.2, 1.0])


def test_hand_computed_quarter_turn_about_pytorch3d_y():
    c = np.sqrt(0.5)
    q = [c, 0, c, 0]  # R(q) = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]
    np.testing.assert_allclose(frames.rotation_matrix_wxyz(q), [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-15)
    # Row vectors: (1, 0, 0) @ R(q) = (0, 0, 1): the object's x axis points away from the camera.
    np.testing.assert_allclose(frames.pose_p3d_apply([[1, 0, 0]], q, [0, 0, 2], 1.0), [[0, 0, 3]], atol=1e-15)
    T = frames.T_cam_obj_from_p3d_pose(q, [0, 0, 2])
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 0, 1], atol=1e-15)
    # Object z (up in the object frame) -> row (0, 0, 1) @ R = (-1, 0, 0) in PyTorch3D = +x (right) in ROS.
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-15)


def test_transform_equals_the_model_row_vector_posing_mapped_to_ros():
    for q in random_quaternions(10):
        t_p3d, s = RNG.normal(size=3), float(RNG.uniform(0.05, 2.0))
        v_obj = RNG.uniform(-0.5, 0.5, size=(30, 3))
        p_ros = frames.p3d_to_ros(frames.pose_p3d_apply(v_obj, q, t_p3d, s))
        T_cam_obj = frames.T_cam_obj_from_p3d_pose(q, t_p3d)
        np.testing.assert_allclose((s * v_obj) @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3], p_ros, atol=1e-12)
        assert np.linalg.det(T_cam_obj[:3, :3]) == pytest.approx(1.0)  # F @ R.T is a proper rotation
        q_back, t_back = frames.p3d_pose_from_T_cam_obj(T_cam_obj)
        np.testing.assert_allclose(frames.rotation_matrix_wxyz(q_back), frames.rotation_matrix_wxyz(q), atol=1e-12)
        np.testing.assert_allclose(t_back, t_p3d, atol=1e-15)


def test_glb_vertices_become_metric_object_frame_vertices():
    v_obj = RNG.uniform(-0.5, 0.5, size=(20, 3))
    np.testing.assert_allclose(frames.mesh_vertices_obj_m(frames.obj_to_glb(v_obj), 0.25), 0.25 * v_obj, atol=1e-15)


def test_isotropic_scale():
    assert frames.isotropic_scale([[0.3, 0.3, 0.3]]) == pytest.approx(0.3)
    assert frames.isotropic_scale([0.3]) == pytest.approx(0.3)
    for bad in ([0.3, 0.4, 0.3], [-1, -1, -1], [0, 0, 0], [np.nan] * 3, [1, 1]):
        with pytest.raises(ValueError):
            frames.isotropic_scale(bad)


def test_pointmap_from_depth_back_projects_then_negates_x_and_y():
    intrinsics = CameraIntrinsics(width=6, height=4, fx=100.0, fy=200.0, cx=2.0, cy=1.0)
    depth = np.full((4, 6), 2.0, dtype=np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, 0.0, np.inf, -1.0
    pointmap = frames.pointmap_p3d_from_depth(depth, intrinsics)
    assert pointmap.shape == (4, 6, 3) and pointmap.dtype == np.float32
    np.testing.assert_array_equal(pointmap[1, 2], [0.0, 0.0, 2.0])  # principal point
    # Pixel (u=5, v=3): optical x = (5 - 2) * 2 / 100 = 0.06 (right), y = (3 - 1) * 2 / 200 = 0.02 (down).
    np.testing.assert_allclose(pointmap[3, 5], [-0.06, -0.02, 2.0], atol=1e-7)
    assert np.isnan(pointmap[0, :4]).all()  # NaN, 0, inf and negative depth: all three channels NaN
    assert np.isfinite(pointmap[1:]).all()
    # Same points as the optical-frame back-projection of the camera model, X and Y negated.
    points_cam, rc = intrinsics.backproject(depth)
    np.testing.assert_allclose(frames.p3d_to_ros(pointmap[rc[:, 0], rc[:, 1]]), points_cam, atol=1e-6)
    with pytest.raises(ValueError):
        frames.pointmap_p3d_from_depth(np.ones((3, 6), np.float32), intrinsics)
