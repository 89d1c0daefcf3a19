"""Grasps from the node in its own process over real DDS: they arrive in the output frame (target_frame) with the
image's stamp, best first, carry object id, width, score and a moveit_msgs/Grasp, and move with the tracked object
(fixed in the object's TF frame of the same stamp while it slides across the table)."""
import itertools

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from sam3d_ros.geometry.transforms import invert_transform, make_transform, quaternion_xyzw_from_matrix, transform_from_pose
from sam3d_ros.ros.conversions import frame_name, ns_to_stamp
from sam3d_ros.ros.ros_client import running_node
from sam3d_ros.tools.synthetic import moving_object_sequence

sam3d_ros_msgs = pytest.importorskip("sam3d_ros_msgs.msg", reason="sam3d_ros_msgs not generated (scripts/setup.sh)")

FRAME_ID = "camera_color_optical_frame"
T_WORLD_CAM = make_transform(
    np.array([[0.0, -0.7071068, 0.7071068], [-1.0, 0.0, 0.0], [0.0, -0.7071068, -0.7071068]]), [0.4, 0.1, 1.0]
)
_stamps = itertools.count()


def _stamp_ns() -> int:
    return 1_760_000_000_000_000_000 + next(_stamps) * 33_333_333


def _pose_matrix(pose) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return transform_from_pose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))


def _tf_matrix(tf) -> np.ndarray:
    t, q = tf.transform.translation, tf.transform.rotation
    return transform_from_pose(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))


@pytest.fixture(scope="module")
def grasp_node(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grasps")
    namespace = "/it_grasps"
    log_path = workdir / "node.log"
    # Fusion off: a fused mesh comes with grasps planned anew (test_node_fusion.py), and this test checks that the
    # grasps of one mesh stay fixed in the object's frame as it moves.
    params = {"target_frame": "world", "target_frame_timeout_s": 0.5, "mesh_cache_dir": str(workdir / "meshes"),
              "max_grasps": 4, "fusion": False}
    with running_node(namespace, params=params, log_path=log_path) as (process, client):
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        static = client.node.create_publisher(TFMessage, "/tf_static", qos)
        tf = TransformStamped()
        tf.header.frame_id, tf.child_frame_id = "world", FRAME_ID
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in T_WORLD_CAM[:3, 3])
        q = quaternion_xyzw_from_matrix(T_WORLD_CAM[:3, :3])
        tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w = (float(v) for v in q)
        static.publish(TFMessage(transforms=[tf]))
        client._static_publisher = static
        yield client, log_path


def test_grasps_arrive_in_the_output_frame_with_the_data_stamp_and_move_with_the_object(grasp_node):
    client, log_path = grasp_node
    sequence = moving_object_sequence(["004_sugar_box"], n_frames=24, seed=3, max_step_m=0.01, max_turn_deg=2.0)
    child = frame_name("sam3d_object_", "1")
    received = []  # (stamp, ObjectGraspArray, PoseArray, T_world_obj from TF, true centre in world)
    for scene in sequence:
        stamp = _stamp_ns()
        outputs = client.publish_rgbd_until_outputs(stamp, FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics, 1,
                                                    10.0, labels=scene.labels)
        assert outputs is not None, f"no outputs for a frame; node log:\n{log_path.read_text()[-3000:]}"
        if child not in outputs.transforms:
            continue
        if not client.wait_for(lambda: stamp in client.grasp_arrays and stamp in client.grasp_poses, 5.0):
            continue  # the mesh (and its grasps) may not have arrived yet
        with client._lock:
            grasps, poses = client.grasp_arrays[stamp], client.grasp_poses[stamp]
        if grasps.grasps:
            received.append((stamp, grasps, poses, _tf_matrix(outputs.transforms[child]),
                             T_WORLD_CAM[:3, :3] @ scene.objects[0].center_cam + T_WORLD_CAM[:3, 3]))
    assert len(received) >= 8, f"grasps in only {len(received)} frames; node log:\n{log_path.read_text()[-3000:]}"
    moved = np.linalg.norm(received[-1][4] - received[0][4])
    assert moved > 0.03, f"the object moved only {moved:.3f} m: the test would not show grasps following it"
    first_in_object = None
    for stamp, grasps, poses, T_world_obj, centre_world in received:
        for message in (grasps, poses):
            assert message.header.frame_id == "world"
            assert message.header.stamp == ns_to_stamp(stamp)
        assert 1 <= len(grasps.grasps) <= 4 and len(poses.poses) == len(grasps.grasps)
        scores = [g.score for g in grasps.grasps]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        for item, pose in zip(grasps.grasps, poses.poses):
            assert item.object_id == "1" and 0.0 < item.width <= 0.08
            assert item.grasp.grasp_pose.header.frame_id == "world"
            assert item.grasp.grasp_quality == pytest.approx(item.score)
            T_world_grasp = _pose_matrix(item.grasp.grasp_pose.pose)
            np.testing.assert_allclose(T_world_grasp, _pose_matrix(pose), atol=1e-6)
            approach = item.grasp.pre_grasp_approach.direction.vector
            np.testing.assert_allclose([approach.x, approach.y, approach.z], T_world_grasp[:3, 2], atol=1e-6)
            # On the object: within its half-diagonal of the true centre.
            assert np.linalg.norm(T_world_grasp[:3, 3] - centre_world) < 0.11
        # Fixed in the object's frame of the same stamp: the grasps move with the tracked pose.
        in_object = [invert_transform(T_world_obj) @ _pose_matrix(p) for p in poses.poses]
        if first_in_object is None:
            first_in_object = in_object
        elif len(in_object) == len(first_in_object):
            for a, b in zip(in_object, first_in_object):
                np.testing.assert_allclose(a, b, atol=1e-5)
