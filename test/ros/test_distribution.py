"""What the package finds out about the ROS 2 distribution it runs on, asserted for the distribution under test
(`scripts/test.sh --distro jazzy|kilted`; a robot's Humble would take the Humble column). Each test names what the
package does with the difference; what /diagnostics reports of it is tested with the node in
test_node_integration.py (two image publishers) and test_node_statistics.py (Humble's "not counted")."""
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from importlib import metadata

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from sam3d_ros.ros import conversions, perception_node
from sam3d_ros.ros.tf_listener import TopicTransformLookup, make_transform_lookup
from sam3d_ros.ros.tf_publisher import TopicTransformBroadcaster, make_transform_broadcaster

#: distribution -> what its rclpy and generated messages offer (Humble from its sources: not testable here).
FEATURES = {
    "humble": {"message_info": False, "publisher_gid": False, "fast_fields": False, "rclpy": 3},
    "jazzy": {"message_info": True, "publisher_gid": False, "fast_fields": True, "rclpy": 7},
    "kilted": {"message_info": True, "publisher_gid": True, "fast_fields": True, "rclpy": 9},
}


@pytest.fixture(scope="module")
def features(ros_distro):
    assert ros_distro in FEATURES, f"unknown ROS 2 distribution {ros_distro!r} (the package supports {sorted(FEATURES)})"
    return FEATURES[ros_distro]


def test_the_environment_is_the_distribution_asked_for(ros_distro, features):
    """scripts/env.sh and setup.sh export ROS_DISTRO for the venv they pick: the rclpy imported is that one's."""
    print(f"ROS 2 {ros_distro}: rclpy from {rclpy.__file__}")
    if "ROS_DISTRO" in os.environ:
        assert os.environ["ROS_DISTRO"] == ros_distro
    try:
        assert int(metadata.version("ros-rclpy").split(".")[0]) == features["rclpy"]
    except metadata.PackageNotFoundError:
        pass  # a ROS install, not wheels: ROS_DISTRO is the distribution


def test_subscription_callbacks_get_message_info_where_the_distribution_passes_it(features):
    """The node subscribes with two-argument callbacks (message, MessageInfo) from Iron on, one-argument on Humble."""
    assert perception_node._MESSAGE_INFO_CALLBACKS is features["message_info"]


@pytest.fixture
def graph():
    """A Context of its own with one node spinning in a thread."""
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"distribution_test_{uuid.uuid4().hex[:8]}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin():
        while context.ok():
            try:
                executor.spin_once(timeout_sec=0.02)
            except Exception:  # noqa: BLE001 - the context is shutting down
                return

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        thread.join(timeout=2.0)


def test_message_info_names_the_publisher_from_kilted_on(graph, features):
    """Kilted's MessageInfo carries publisher_gid, Jazzy's only the sequence numbers: the node then checks the numbers
    of a topic only while it has one publisher (sequence_gaps.SequenceGapCounter.observe)."""
    if not features["message_info"]:
        pytest.skip("Humble: callbacks get no MessageInfo (checked by the test above)")
    topic = f"/distribution_test_{uuid.uuid4().hex[:8]}"
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    infos, arrived = [], threading.Event()
    graph.create_subscription(String, topic, lambda msg, info: (infos.append(info), arrived.set()), qos)
    publisher = graph.create_publisher(String, topic, qos)
    deadline = time.monotonic() + 10.0
    while publisher.get_subscription_count() < 1:
        assert time.monotonic() < deadline, f"no subscriber matched {topic}"
        time.sleep(0.01)
    publisher.publish(String(data="x"))
    assert arrived.wait(10.0), f"nothing arrived on {topic}"
    info = infos[0]
    assert info["publication_sequence_number"] == 1
    assert ("publisher_gid" in info) is features["publisher_gid"], sorted(info)


def test_collision_meshes_fill_message_slots_where_the_generated_classes_allow_it(features):
    """Generated classes with `_check_fields` (Jazzy on) let the collision meshes be built fast; else the public
    constructors (same content, see test_conversions' plain/fast comparison)."""
    assert conversions._POINT_FAST is features["fast_fields"]
    assert conversions._MESH_TRIANGLE_FAST is features["fast_fields"]


def test_tf_goes_over_the_topic_where_tf2_ros_is_missing(graph):
    """tf2_ros has no wheel for any distribution: here TF is published and looked up on /tf itself; where tf2_ros is
    installed (a robot's distribution), tf2_ros' classes are used."""
    has_tf2_ros = importlib.util.find_spec("tf2_ros") is not None
    try:
        metadata.version("ros-rclpy")
        assert not has_tf2_ros, "tf2_ros has no wheel: where did it come from?"
    except metadata.PackageNotFoundError:
        pass  # a ROS install: tf2_ros may be there
    broadcaster = make_transform_broadcaster(graph)
    lookup = make_transform_lookup(graph)
    assert isinstance(broadcaster, TopicTransformBroadcaster) is not has_tf2_ros
    assert isinstance(lookup, TopicTransformLookup) is not has_tf2_ros


_SUBSCRIBER = textwrap.dedent("""
    import sys, time, rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("distribution_test_images")
    got = set()
    node.create_subscription(Image, sys.argv[1], lambda m: got.add(m.header.stamp.sec), qos_profile_sensor_data)
    print("ready", flush=True)
    end = time.monotonic() + 30.0
    while time.monotonic() < end and len(got) < int(sys.argv[2]):
        rclpy.spin_once(node, timeout_sec=0.1)
    print(len(got), flush=True)
""")


def test_camera_images_cross_processes_with_the_profile_this_fast_dds_reads(graph, ros_distro, fastdds_profile_env):
    """Best-effort 640x480 images between processes are mostly lost without the shared-memory profile (11 of 30 on
    Jazzy); Fast DDS 3 (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE, Fast DDS 2 (Jazzy, Humble) only
    FASTRTPS_DEFAULT_PROFILES_FILE: env.sh and conftest set the one of the distribution under test."""
    assert fastdds_profile_env == ("FASTDDS_DEFAULT_PROFILES_FILE" if ros_distro == "kilted" else "FASTRTPS_DEFAULT_PROFILES_FILE")
    assert os.environ.get(fastdds_profile_env, "").endswith("fastdds_loopback_shm.xml"), f"{fastdds_profile_env} is not set"
    topic, count = f"/distribution_test_images_{uuid.uuid4().hex[:8]}", 20
    subscriber = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, topic, str(count)], stdout=subprocess.PIPE, text=True)
    try:
        assert subscriber.stdout.readline().strip() == "ready"
        publisher = graph.create_publisher(Image, topic, qos_profile_sensor_data)
        deadline = time.monotonic() + 20.0
        while publisher.get_subscription_count() < 1:
            assert time.monotonic() < deadline, "the subscriber process never matched"
            time.sleep(0.02)
        time.sleep(0.5)
        image = Image(width=640, height=480, encoding="rgb8", step=640 * 3, data=bytes(640 * 480 * 3))
        for sec in range(count):
            image.header.stamp.sec = sec
            publisher.publish(image)
            time.sleep(0.1)
        received = int(subscriber.communicate(timeout=40.0)[0].strip() or 0)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    assert received >= count * 3 // 4, f"{received} of {count} camera-size best-effort images crossed processes"
