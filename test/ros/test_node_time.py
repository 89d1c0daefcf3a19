"""The node and time, in its own process over real DDS: depth that arrives after the image and its masks (slow
cameras, start-up), masks whose stamps never match the image (a segmenter that re-stamps), and time that jumps back
(a bag played with --loop, with and without use_sim_time and /clock)."""
import itertools
import time

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from moveit_msgs.msg import CollisionObject
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from sam3d_ros.geometry.transforms import make_transform, quaternion_xyzw_from_matrix
from sam3d_ros.ros.conversions import array_to_image_msg, frame_name, intrinsics_to_camera_info, ns_to_stamp
from sam3d_ros.ros.ros_client import running_node
from sam3d_ros.tools.synthetic import random_tabletop_scene

FRAME_ID = "camera_color_optical_frame"
NAMES = ["003_cracker_box", "004_sugar_box", "005_tomato_soup_can"]
_stamps = itertools.count(1)
# world -> camera: 1 m up, looking down at 45 degrees (any rigid transform will do).
T_WORLD_CAM = make_transform(
    np.array([[0.0, -0.7071068, 0.7071068], [-1.0, 0.0, 0.0], [0.0, -0.7071068, -0.7071068]]), [0.4, 0.1, 1.0]
)


def _stamp_ns() -> int:
    return 1_760_000_000_000_000_000 + next(_stamps) * 200_000_000


def _messages(scene, stamp_ns, labels=None, masks_stamp_ns=None):
    """(image, camera_info, depth, masks) of a scene, stamped like a camera driver; masks optionally re-stamped."""
    header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=FRAME_ID)
    labels = scene.labels if labels is None else labels
    masks_header = header if masks_stamp_ns is None else Header(stamp=ns_to_stamp(masks_stamp_ns), frame_id=FRAME_ID)
    return (
        array_to_image_msg(scene.rgb, "rgb8", header), intrinsics_to_camera_info(scene.intrinsics, header),
        array_to_image_msg(scene.depth_m.astype(np.float32), "32FC1", header),
        array_to_image_msg(labels.astype(np.uint8), "mono8", masks_header),
    )


@pytest.fixture(scope="module")
def scene():
    return random_tabletop_scene(31, n_objects=2, distance_range=(0.5, 0.9), names=NAMES)


@pytest.fixture(scope="module")
def fresh_node(tmp_path_factory):
    """A node just started (its first frames are the start-up case), default parameters."""
    namespace = "/it_time"
    log_path = tmp_path_factory.mktemp("node") / "node.log"
    with running_node(namespace, log_path=log_path) as (process, client):
        yield process, client, log_path


def test_depth_arriving_after_the_image_and_masks_is_waited_for_at_start_up_and_at_a_slow_rate(fresh_node, scene):
    """A camera whose depth comes 0.3 s after the image and its masks, a frame every 1.5 s (longer than
    depth_timeout_s: 1 s since the last depth message): every frame is published, the first after start-up too."""
    process, client, log_path = fresh_node
    n = len(scene.objects)
    published = []
    while published.count(True) < 3 and len(published) < 5:  # a frame lost by best-effort transport: one more
        started = time.monotonic()
        stamp = _stamp_ns()
        image, info, depth, masks = _messages(scene, stamp)
        client.pub_info.publish(info)
        client.pub_masks.publish(masks)
        client.pub_image.publish(image)
        time.sleep(0.3)
        client.pub_depth.publish(depth)
        published.append(client.wait_for_outputs(stamp, n_objects=n, timeout_s=15.0 if not published else 5.0) is not None)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    log = log_path.read_text()
    # The first frame after start-up, and every frame but at most one lost in transport.
    assert published[0] and published.count(True) == 3 and len(published) <= 4, \
        f"frames published: {published}; node log:\n{log}"
    assert "no depth image" not in log, log
    assert process.poll() is None


def test_masks_whose_stamps_never_match_the_image_are_reported_once(fresh_node, scene):
    """A segmenter that stamps its masks 80 ms after the image: no frame can be matched (segmentation_slop_s 0);
    the node says so, with the difference and the parameter that accepts it, instead of staying silent."""
    process, client, log_path = fresh_node
    stamps = []
    for _ in range(6):
        stamp = _stamp_ns()
        image, info, depth, masks = _messages(scene, stamp, masks_stamp_ns=stamp + 80_000_000)
        client.publish(image.header, image, info, depth)
        time.sleep(0.05)
        client.pub_masks.publish(masks)
        stamps.append(stamp)
        time.sleep(0.15)
    assert client.wait_for(lambda: "segmentation_slop_s" in log_path.read_text(), 5.0), log_path.read_text()
    lines = [line for line in log_path.read_text().splitlines() if "segmentation_slop_s" in line]
    assert len(lines) == 1, lines  # once per warning_period_s (5 s)
    assert "masks stamps match no image stamp" in lines[0] and "+80.0 ms" in lines[0], lines[0]
    assert not any(client.outputs.get(stamp) for stamp in stamps)
    assert process.poll() is None


# -- time that jumps back


def _transform_msg(parent: str, child: str, T_parent_child: np.ndarray, stamp_ns: int) -> TransformStamped:
    tf = TransformStamped()
    tf.header.frame_id, tf.child_frame_id, tf.header.stamp = parent, child, ns_to_stamp(stamp_ns)
    t, q = T_parent_child[:3, 3], quaternion_xyzw_from_matrix(T_parent_child[:3, :3])
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in t)
    tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w = (float(v) for v in q)
    return tf


@pytest.mark.parametrize("use_sim_time", [False, True], ids=["wall_time", "sim_time"])
def test_after_time_jumps_back_the_node_keeps_its_objects_and_publishes_within_a_second(tmp_path, scene, use_sim_time):
    """A bag looping 60 s back: camera stamps, TF (world -> camera, on /tf at every stamp) and, with use_sim_time,
    /clock. Object 1 stays in view, object 2 leaves the view at the jump. The node logs the jump, publishes object 1
    in `world` again within 1 s of frames (10 Hz), keeps its id and mesh (no REMOVE), and removes object 2 once it
    has been unseen for lost_timeout_s (0.5 s) counted across the jump."""
    namespace = f"/it_jump_{'sim' if use_sim_time else 'wall'}"
    log_path = tmp_path / "node.log"
    # It counts collision ADDs to tell a kept mesh from a new reconstruction: fused meshes would add ADDs (fusion off).
    params = {"target_frame": "world", "target_frame_timeout_s": 0.3, "lost_timeout_s": 0.5, "use_sim_time": use_sim_time,
              "fusion": False}
    with running_node(namespace, params=params, log_path=log_path) as (process, client):
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        tf_pub = client.node.create_publisher(TFMessage, "/tf", reliable)
        clock_pub = client.node.create_publisher(Clock, "/clock", reliable)
        labels_without_2 = np.where(scene.labels == 2, 0, scene.labels)

        def send(stamp, labels, timeout_s):
            """Clock, TF and the frame at `stamp` (again if best-effort lost some) until object 1 comes back in world."""
            for _ in range(3):
                if use_sim_time:
                    clock_pub.publish(Clock(clock=ns_to_stamp(stamp)))
                    time.sleep(0.05)  # the node's clock (and its TF buffer's jump callback) first
                tf_pub.publish(TFMessage(transforms=[_transform_msg("world", FRAME_ID, T_WORLD_CAM, stamp)]))
                client.publish_rgbd(stamp, FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics, labels=labels)
                if client.wait_for(lambda: stamp in client.outputs and client.outputs[stamp].frame_id == "world"
                                   and "1" in client.outputs[stamp].detections, timeout_s):
                    return True
            return False

        client.wait_for(lambda: tf_pub.get_subscription_count() > 0 and clock_pub.get_subscription_count() > 0, 5.0)
        start_ns = 1_770_000_000_000_000_000
        for k in range(8):  # 10 Hz before the jump, both objects
            assert send(start_ns + k * 100_000_000, scene.labels, 20.0 if k == 0 else 5.0), \
                f"frame {k} before the jump: no output; node log:\n{log_path.read_text()}"
        assert client.wait_for(lambda: {"1", "2"} <= {c.id for c in client.collision_objects}, 5.0)
        loop_ns = start_ns - 60_000_000_000
        after = [send(loop_ns + k * 100_000_000, labels_without_2, 1.0) for k in range(12)]
        log = log_path.read_text()
        assert True in after and after.index(True) < 10, f"frames published after the jump: {after}; log:\n{log}"
        assert all(after[after.index(True):]), f"frames published after the jump: {after}; log:\n{log}"
        with client._lock:
            operations = [(c.id, c.operation) for c in client.collision_objects]
        assert ("1", CollisionObject.REMOVE) not in operations, f"object 1 was dropped: {operations}"
        assert operations.count(("1", CollisionObject.ADD)) == 1, f"object 1 was reconstructed again: {operations}"
        assert client.wait_for(lambda: ("2", CollisionObject.REMOVE) in
                               [(c.id, c.operation) for c in client.collision_objects], 5.0), \
            f"object 2, out of view since the jump, was never removed: {operations}"
        gone = frame_name("sam3d_object_", "2")
        last = loop_ns + 11 * 100_000_000
        assert gone not in client.outputs[last].transforms, "object 2's TF outlived lost_timeout_s"
        log = log_path.read_text()
        assert "time jumped back 60.7" in log, log  # newest image 0.7 s after start_ns, the loop 60 s before it
        assert process.poll() is None
