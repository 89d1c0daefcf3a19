"""TF lookups over real rclpy (one process, own Context): a publisher node sends /tf and /tf_static, the listener
node spins in a thread and resolves a chain at a stamp. Runs the topic path everywhere and the tf2_ros path where
tf2_ros is installed."""
import threading
import time
import uuid
from typing import Iterator

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from sam3d_ros.ros import conversions
from sam3d_ros.ros.tf_listener import (
    FrameNotFoundError,
    Tf2TransformLookup,
    TopicTransformLookup,
    TransformLookupError,
    make_transform_lookup,
)
from sam3d_ros.geometry.transforms import quaternion_xyzw_from_matrix, transform_points

S = 1_000_000_000
OPTICAL = "camera_color_optical_frame"
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # REP 103


def yaw(degrees: float) -> np.ndarray:
    return Rotation.from_euler("z", degrees, degrees=True).as_matrix()


def transform_msg(parent: str, child: str, stamp_ns: int, R: np.ndarray, t) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp = conversions.ns_to_stamp(stamp_ns)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in t)
    q = quaternion_xyzw_from_matrix(R)
    rotation = msg.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = (float(v) for v in q)
    return msg


class Graph:
    """A Context with a publisher node (not spun) and a listener node spinning in a thread."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.context = Context()
        rclpy.init(context=self.context)
        self.publisher = rclpy.create_node(f"tf_test_publisher_{suffix}", context=self.context)
        self.listener = rclpy.create_node(f"tf_test_listener_{suffix}", context=self.context)
        reliable = dict(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_tf = self.publisher.create_publisher(TFMessage, "/tf", QoSProfile(**reliable))
        self.pub_static = self.publisher.create_publisher(
            TFMessage, "/tf_static", QoSProfile(durability=DurabilityPolicy.TRANSIENT_LOCAL, **reliable)
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.listener)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except Exception:  # noqa: BLE001 - the context is shutting down
                return

    def wait_for_tf_subscriber(self, timeout_s: float = 5.0) -> None:
        """/tf is volatile: publish only once the listener's subscription matched."""
        deadline = time.monotonic() + timeout_s
        while self.pub_tf.get_subscription_count() < 1:
            assert time.monotonic() < deadline, "the listener never subscribed to /tf"
            time.sleep(0.01)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.publisher.destroy_node()
        self.listener.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


@pytest.fixture(params=["topic", "tf2_ros"])
def make_lookup(request):
    """Each lookup class; the tf2_ros one is skipped (before any graph is built) where tf2_ros is missing."""
    if request.param == "topic":
        return TopicTransformLookup
    pytest.importorskip("tf2_ros", reason="tf2_ros is not installed (the topic path is tested instead)")
    return Tf2TransformLookup


@pytest.fixture
def graph() -> Iterator[Graph]:
    g = Graph()
    try:
        yield g
    finally:
        g.close()


def publish_rig(graph: Graph) -> None:
    """base_link -> camera_link -> optical on /tf_static, published before the listener exists (transient local
    must still deliver them)."""
    graph.pub_static.publish(TFMessage(transforms=[
        transform_msg("base_link", "camera_link", 0, np.eye(3), [0.1, 0.0, 0.5]),
        transform_msg("camera_link", OPTICAL, 0, R_LINK_OPTICAL, [0.0, 0.0, 0.0]),
    ]))


def publish_world(graph: Graph) -> None:
    """world -> base_link on /tf at 100 s (origin, yaw 0) and 102 s ((2, 0, 0), yaw 90), once /tf is matched."""
    graph.wait_for_tf_subscriber()
    graph.pub_tf.publish(TFMessage(transforms=[transform_msg("world", "base_link", 100 * S, yaw(0), [0, 0, 0])]))
    graph.pub_tf.publish(TFMessage(transforms=[transform_msg("world", "base_link", 102 * S, yaw(90), [2, 0, 0])]))


def test_make_transform_lookup_picks_the_path_by_tf2_ros(graph):
    lookup = make_transform_lookup(graph.listener)
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert isinstance(lookup, TopicTransformLookup)
    else:
        assert not isinstance(lookup, TopicTransformLookup)


def test_resolves_a_chain_at_a_stamp(make_lookup, graph):
    publish_rig(graph)
    lookup = make_lookup(graph.listener)  # created after the statics were published
    publish_world(graph)
    T_world_optical = lookup.lookup("world", OPTICAL, 101 * S, timeout_s=5.0)
    # at 101 s base_link is at (1, 0, 0) yawed 45 deg; the camera 1 m ahead point is 1.1 m ahead of base_link
    c = np.cos(np.pi / 4)
    np.testing.assert_allclose(transform_points(T_world_optical, [[0, 0, 1]]), [[1 + 1.1 * c, 1.1 * c, 0.5]], atol=1e-9)
    T_optical_world = lookup.lookup(OPTICAL, "world", 101 * S)
    np.testing.assert_allclose(T_optical_world @ T_world_optical, np.eye(4), atol=1e-9)
    # time 0: the newest data (102 s), base_link at (2, 0, 0) yawed 90 deg
    np.testing.assert_allclose(transform_points(lookup.lookup("world", OPTICAL, 0), [[0, 0, 1]]),
                               [[2.0, 1.1, 0.5]], atol=1e-9)


def test_missing_frame_raises_one_line_error(make_lookup, graph):
    publish_rig(graph)
    lookup = make_lookup(graph.listener)
    publish_world(graph)
    lookup.lookup("world", OPTICAL, 101 * S, timeout_s=5.0)  # the graph is there ...
    start = time.monotonic()
    with pytest.raises(TransformLookupError) as error:  # ... but not this frame
        lookup.lookup("world", "gripper_link", 101 * S, timeout_s=0.2)
    assert time.monotonic() - start >= 0.15  # it waited for the timeout
    assert isinstance(error.value, FrameNotFoundError) and isinstance(error.value, LookupError)
    message = str(error.value)
    assert "gripper_link" in message and "\n" not in message


def test_extrapolation_is_an_error(make_lookup, graph):
    publish_rig(graph)
    lookup = make_lookup(graph.listener)
    publish_world(graph)
    lookup.lookup("world", OPTICAL, 101 * S, timeout_s=5.0)
    with pytest.raises(TransformLookupError) as error:
        lookup.lookup("world", OPTICAL, 103 * S)
    assert "\n" not in str(error.value)


def test_lookup_waits_for_data_that_arrives_within_the_timeout(make_lookup, graph):
    publish_rig(graph)
    lookup = make_lookup(graph.listener)
    publish_world(graph)
    lookup.lookup("world", OPTICAL, 102 * S, timeout_s=5.0)
    later = threading.Timer(0.2, lambda: graph.pub_tf.publish(
        TFMessage(transforms=[transform_msg("world", "base_link", 104 * S, yaw(90), [4, 0, 0])])))
    later.start()
    try:
        start = time.monotonic()
        T_world_base = lookup.lookup("world", "base_link", 103 * S, timeout_s=5.0)
        assert time.monotonic() - start < 4.0
    finally:
        later.join()
    np.testing.assert_allclose(T_world_base[:3, 3], [3.0, 0.0, 0.0], atol=1e-9)


def test_a_clock_change_clears_dynamic_transforms_but_keeps_static_ones(make_lookup, graph):
    publish_rig(graph)
    lookup = make_lookup(graph.listener)
    publish_world(graph)
    lookup.lookup("world", OPTICAL, 101 * S, timeout_s=5.0)
    lookup.lookup("base_link", OPTICAL, 0, timeout_s=5.0)
    graph.listener.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])  # ROS time activated
    with pytest.raises(TransformLookupError):
        lookup.lookup("world", OPTICAL, 101 * S)
    T_base_optical = lookup.lookup("base_link", OPTICAL, 0)
    np.testing.assert_allclose(transform_points(T_base_optical, [[0, 0, 1]]), [[1.1, 0.0, 0.5]], atol=1e-9)


def test_tf_of_a_new_timeline_is_used_after_the_stamps_jumped_back_without_the_clock(make_lookup, graph):
    """A bag looping on wall time: the node's clock does not jump, the stamps do (62 s back, beyond the 10 s cache)."""
    publish_rig(graph)
    lookup = make_lookup(graph.listener)
    publish_world(graph)
    lookup.lookup("world", OPTICAL, 101 * S, timeout_s=5.0)
    lookup.time_jumped_back(40 * S)  # what the node calls when its input stamps jump back
    graph.pub_tf.publish(TFMessage(transforms=[transform_msg("world", "base_link", 40 * S, yaw(0), [5, 0, 0])]))
    graph.pub_tf.publish(TFMessage(transforms=[transform_msg("world", "base_link", 42 * S, yaw(0), [7, 0, 0])]))
    T_world_base = lookup.lookup("world", "base_link", 41 * S, timeout_s=5.0)
    np.testing.assert_allclose(T_world_base[:3, 3], [6.0, 0.0, 0.0], atol=1e-9)
    with pytest.raises(TransformLookupError):
        lookup.lookup("world", "base_link", 101 * S)  # the old timeline is gone
    np.testing.assert_allclose(lookup.lookup("base_link", OPTICAL, 0)[:3, 3], [0.1, 0.0, 0.5], atol=1e-9)  # static


def test_the_topic_lookup_notices_tf_stamps_that_jump_back_by_itself(graph):
    lookup = TopicTransformLookup(graph.listener)
    publish_world(graph)
    lookup.lookup("world", "base_link", 101 * S, timeout_s=5.0)
    for stamp_s, x in ((40, 5), (42, 7)):  # the first alone could be a late sample; the second confirms the jump
        sample = transform_msg("world", "base_link", stamp_s * S, yaw(0), [x, 0, 0])
        graph.pub_tf.publish(TFMessage(transforms=[sample]))
    T_world_base = lookup.lookup("world", "base_link", 41 * S, timeout_s=5.0)
    np.testing.assert_allclose(T_world_base[:3, 3], [6.0, 0.0, 0.0], atol=1e-9)
    assert lookup.buffer.time_jumps == 1


def test_invalid_transforms_are_skipped_with_the_rest_of_the_message_kept(graph):
    lookup = TopicTransformLookup(graph.listener)
    graph.wait_for_tf_subscriber()
    bad = transform_msg("world", "broken", 100 * S, np.eye(3), [0, 0, 0])
    bad.transform.rotation.w = 0.0  # zero quaternion
    graph.pub_tf.publish(TFMessage(transforms=[bad, transform_msg("world", "good", 100 * S, np.eye(3), [1, 0, 0])]))
    np.testing.assert_allclose(lookup.lookup("world", "good", 100 * S, timeout_s=5.0)[:3, 3], [1.0, 0, 0])
    with pytest.raises(FrameNotFoundError, match="unknown frame 'broken'"):
        lookup.lookup("world", "broken", 100 * S)
