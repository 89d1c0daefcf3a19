"""moveit_msgs (CollisionObject, PlanningScene) and the packages they reference, as the node publishes them: field
names, types and constants as upstream (moveit/moveit_msgs ros2 branch, object_recognition_msgs, octomap_msgs), the
type hashes a real MoveIt 2 graph announces, and a real DDS round trip in one process.

On a machine without ROS these packages are generated from interfaces/ by scripts/setup.sh; on a robot they come from
the distribution. Either way a mismatch here would mean MoveIt ignores (or cannot match) what the node publishes."""
import importlib
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import rclpy
from geometry_msgs.msg import Point, Pose
from moveit_msgs.msg import (
    AttachedCollisionObject,
    CollisionObject,
    PlanningScene,
    PlanningSceneWorld,
    RobotState,
)
from object_recognition_msgs.msg import ObjectType
from octomap_msgs.msg import OctomapWithPose
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from shape_msgs.msg import Mesh, MeshTriangle, SolidPrimitive

# RIHS01 type hashes of upstream builds (moveit_msgs 2.x ros2 branch, as referenced by the generated code of packages
# built against it on Jazzy). Field names, types, order and constants of a type and of every type it references feed
# the hash; comments do not. None of these types (nor std_msgs/geometry_msgs/shape_msgs/... below them) changed
# between Jazzy and Kilted, so both distributions announce the same hashes: each run checks the set of the
# distribution under test (scripts/test.sh --distro jazzy|kilted). Humble has no type hashes.
_MOVEIT_2_TYPE_HASHES = {
    "moveit_msgs/msg/CollisionObject": "74b0acd6d56be032bf4f764b2c2633f50588b5fb2bd71e97206c59052747cf7e",
    "moveit_msgs/msg/PlanningScene": "0f58540ad5eab4b9ea827d53b763c793d8cabd202b3b301fcee25afa4ce1bd80",
    "moveit_msgs/msg/PlanningSceneWorld": "e08e6a4a81ca6b6a6953ac758dadc2c949555093efea6a9a22d9accf62c2c099",
    "moveit_msgs/msg/RobotState": "7c516dc15713e545cb2836c5ca745fbdcfcc10de4855a41c83e6b4bf1afc3f83",
    "moveit_msgs/msg/AttachedCollisionObject": "7fdfe7951a33a857f20fc42c9ed410a38d06dd0c209ac774ecea746dc487dc41",
    "moveit_msgs/msg/AllowedCollisionMatrix": "ac0159eec0d99f73158c7349c9d1c01b3dc7f749d75a2ea22e74a2a1091a9b05",
    "moveit_msgs/msg/AllowedCollisionEntry": "eeb7cc3f1bfdb8c778aa7454ae90037c2749dab3ca0abdfe3dad2ae8723977db",
    "moveit_msgs/msg/LinkPadding": "864762d9e19f758b0385427f75691374cae830495727c96405f2bad0eb20c766",
    "moveit_msgs/msg/LinkScale": "4666a0685f26365ccf4c9bfed0b14c654604fa0564be65c221d8d54fdc7a0f83",
    "moveit_msgs/msg/ObjectColor": "4f937f7b22942a9c4a6409c20255aaad1b5d9a003ae3c0edb779698be443c127",
    "object_recognition_msgs/msg/ObjectType": "5eb3ee3976403366d7c50d7dbee8bec96b3bced1e752674a7194a35841632134",
    "octomap_msgs/msg/Octomap": "9891a19a05b70ec20aa8f45db3f8300b9ab80afff32c61c549d25087da9625b0",
    "octomap_msgs/msg/OctomapWithPose": "e65f8760aa96a2acef86b6d206175cfc78420082b6159dd3fa6ebf93f5f81979",
}
UPSTREAM_TYPE_HASHES = {"jazzy": _MOVEIT_2_TYPE_HASHES, "kilted": _MOVEIT_2_TYPE_HASHES}


@pytest.fixture(scope="module")
def upstream_hashes(ros_distro):
    """The upstream type hashes of the distribution under test."""
    if ros_distro == "humble":
        pytest.skip("Humble has no type descriptions (and no hashes on the wire)")
    assert ros_distro in UPSTREAM_TYPE_HASHES, f"no upstream type hashes recorded for {ros_distro}"
    return UPSTREAM_TYPE_HASHES[ros_distro]


def make_collision_object(object_id: str = "mug_0") -> CollisionObject:
    """What the node sends for one reconstructed object: a mesh in the object frame, the object pose in the camera
    (or world) frame, operation ADD."""
    co = CollisionObject()
    co.header.frame_id = "world"
    co.header.stamp.sec, co.header.stamp.nanosec = 1234, 5678
    co.id = object_id
    co.type = ObjectType(key="ycb/025_mug", db='{"type":"sam3d_ros"}')
    co.pose = Pose()
    co.pose.position.x, co.pose.position.y, co.pose.position.z = 0.4, -0.1, 0.75
    co.pose.orientation.z, co.pose.orientation.w = 0.38268343236508984, 0.9238795325112867
    mesh = Mesh()
    mesh.vertices = [Point(x=0.0, y=0.0, z=0.0), Point(x=0.05, y=0.0, z=0.0), Point(x=0.0, y=0.05, z=0.0),
                     Point(x=0.0, y=0.0, z=0.1)]
    mesh.triangles = [MeshTriangle(vertex_indices=idx) for idx in ([0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2])]
    co.meshes = [mesh]
    co.mesh_poses = [Pose()]  # identity: the mesh is expressed in the object frame given by co.pose
    co.subframe_names = ["grasp"]
    co.subframe_poses = [Pose(position=Point(z=0.05))]
    co.operation = CollisionObject.ADD
    return co


def make_scene_diff(*objects: CollisionObject) -> PlanningScene:
    """A /planning_scene diff that adds/updates world objects and leaves everything else of the scene untouched."""
    scene = PlanningScene()
    scene.is_diff = True
    scene.robot_state.is_diff = True  # MoveIt otherwise treats the (empty) robot state as a full state
    scene.world.collision_objects = list(objects)
    return scene


# ---------------------------------------------------------------------------------------------- definitions


def test_collision_object_fields_and_constants_match_upstream():
    assert list(CollisionObject.get_fields_and_field_types().items()) == [
        ("header", "std_msgs/Header"),
        ("pose", "geometry_msgs/Pose"),
        ("id", "string"),
        ("type", "object_recognition_msgs/ObjectType"),
        ("primitives", "sequence<shape_msgs/SolidPrimitive>"),
        ("primitive_poses", "sequence<geometry_msgs/Pose>"),
        ("meshes", "sequence<shape_msgs/Mesh>"),
        ("mesh_poses", "sequence<geometry_msgs/Pose>"),
        ("planes", "sequence<shape_msgs/Plane>"),
        ("plane_poses", "sequence<geometry_msgs/Pose>"),
        ("subframe_names", "sequence<string>"),
        ("subframe_poses", "sequence<geometry_msgs/Pose>"),
        ("operation", "octet"),
    ]
    # `byte` constants are one-byte `bytes` in ROS 2 Python, not ints: assign CollisionObject.ADD, never 0.
    assert (CollisionObject.ADD, CollisionObject.REMOVE, CollisionObject.APPEND, CollisionObject.MOVE) == (
        b"\x00", b"\x01", b"\x02", b"\x03")
    assert CollisionObject().operation == CollisionObject.ADD
    assert list(ObjectType.get_fields_and_field_types()) == ["key", "db"]


def test_int_operation_is_rejected_where_fields_are_checked():
    """Humble checks field types always, Jazzy/Kilted with ROS_PYTHON_CHECK_FIELDS=1: an int operation breaks there."""
    co = CollisionObject(check_fields=True)
    with pytest.raises(AssertionError):
        co.operation = 0
    co.operation = CollisionObject.REMOVE
    assert co.operation == b"\x01"


def test_planning_scene_and_referenced_messages_match_upstream():
    assert list(PlanningScene.get_fields_and_field_types().items()) == [
        ("name", "string"),
        ("robot_state", "moveit_msgs/RobotState"),
        ("robot_model_name", "string"),
        ("fixed_frame_transforms", "sequence<geometry_msgs/TransformStamped>"),
        ("allowed_collision_matrix", "moveit_msgs/AllowedCollisionMatrix"),
        ("link_padding", "sequence<moveit_msgs/LinkPadding>"),
        ("link_scale", "sequence<moveit_msgs/LinkScale>"),
        ("object_colors", "sequence<moveit_msgs/ObjectColor>"),
        ("world", "moveit_msgs/PlanningSceneWorld"),
        ("is_diff", "boolean"),
    ]
    assert list(PlanningSceneWorld.get_fields_and_field_types().items()) == [
        ("collision_objects", "sequence<moveit_msgs/CollisionObject>"),
        ("octomap", "octomap_msgs/OctomapWithPose"),
    ]
    assert list(RobotState.get_fields_and_field_types().items()) == [
        ("joint_state", "sensor_msgs/JointState"),
        ("multi_dof_joint_state", "sensor_msgs/MultiDOFJointState"),
        ("attached_collision_objects", "sequence<moveit_msgs/AttachedCollisionObject>"),
        ("is_diff", "boolean"),
    ]
    assert list(AttachedCollisionObject.get_fields_and_field_types().items()) == [
        ("link_name", "string"),
        ("object", "moveit_msgs/CollisionObject"),
        ("touch_links", "sequence<string>"),
        ("detach_posture", "trajectory_msgs/JointTrajectory"),
        ("weight", "double"),
    ]
    assert list(OctomapWithPose.get_fields_and_field_types()) == ["header", "origin", "octomap"]


def _share_directory(package: str) -> Path:
    """<prefix>/share/<package> of the prefix the package's Python module was imported from (the venv here, the
    ROS install or workspace on a robot); AMENT_PREFIX_PATH is not needed (the venv does not set it)."""
    module = importlib.import_module(package)
    for prefix in Path(module.__file__).resolve().parents:
        if (prefix / "share" / package / "package.xml").is_file():
            return prefix / "share" / package
    raise AssertionError(f"no share/{package} above {module.__file__}")


def _installed_type_hash(type_name: str) -> str:
    package, _, name = type_name.split("/")
    description = _share_directory(package) / "msg" / f"{name}.json"
    if not description.is_file():  # Humble has no type descriptions (and no hashes on the wire)
        pytest.skip(f"{description} does not exist (ROS 2 before Iron)")
    hashes = {entry["type_name"]: entry["hash_string"] for entry in json.loads(description.read_text())["type_hashes"]}
    return hashes[type_name]


@pytest.mark.parametrize("type_name", sorted(_MOVEIT_2_TYPE_HASHES))
def test_type_hash_matches_upstream(type_name, upstream_hashes):
    assert _installed_type_hash(type_name) == "RIHS01_" + upstream_hashes[type_name]


def test_messages_build_as_the_node_sends_them():
    co = make_collision_object()
    assert co.operation == CollisionObject.ADD and co.id == "mug_0"
    assert len(co.meshes) == len(co.mesh_poses) == 1 and len(co.subframe_names) == len(co.subframe_poses) == 1
    assert [list(t.vertex_indices) for t in co.meshes[0].triangles][0] == [0, 2, 1]
    scene = make_scene_diff(co)
    assert scene.is_diff and scene.robot_state.is_diff
    assert scene.world.collision_objects[0] == co
    assert not scene.world.octomap.octomap.data  # no octomap in a diff of objects


# ---------------------------------------------------------------------------------------------- DDS round trip


class _OneProcessGraph:
    """A Context of its own with one publishing and one subscribing node; the subscriber spins in a thread."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:8]
        self.context = Context()
        rclpy.init(context=self.context)
        self.pub_node = rclpy.create_node(f"iface_test_pub_{self.suffix}", context=self.context)
        self.sub_node = rclpy.create_node(f"iface_test_sub_{self.suffix}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.sub_node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except Exception:  # noqa: BLE001 - the context is shutting down
                return

    def round_trip(self, msg_type, msg, topic: str, timeout_s: float = 10.0):
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        received, arrived = [], threading.Event()

        def on_message(m):
            received.append(m)
            arrived.set()

        self.sub_node.create_subscription(msg_type, topic, on_message, qos)
        publisher = self.pub_node.create_publisher(msg_type, topic, qos)
        deadline = time.monotonic() + timeout_s
        while publisher.get_subscription_count() < 1:
            assert time.monotonic() < deadline, f"no subscriber matched {topic}"
            time.sleep(0.01)
        publisher.publish(msg)
        assert arrived.wait(max(0.1, deadline - time.monotonic())), f"nothing arrived on {topic}"
        endpoints = self.pub_node.get_publishers_info_by_topic(publisher.topic_name)
        return received[0], endpoints

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.pub_node.destroy_node()
        self.sub_node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


@pytest.fixture
def graph():
    g = _OneProcessGraph()
    try:
        yield g
    finally:
        g.close()


def _announced_hash(endpoints, ros_distro: str) -> str | None:
    """The type hash the publisher announces on the wire (Iron and later); None where rclpy has no hashes."""
    assert len(endpoints) == 1
    type_hash = getattr(endpoints[0], "topic_type_hash", None)
    assert (type_hash is None) is (ros_distro == "humble"), f"{ros_distro}: topic_type_hash {type_hash!r}"
    return None if type_hash is None else str(type_hash)


def _expected_hash(type_name: str, ros_distro: str) -> str | None:
    """The upstream hash of `type_name` that the distribution under test announces (None: Humble announces none)."""
    return None if ros_distro == "humble" else "RIHS01_" + UPSTREAM_TYPE_HASHES[ros_distro][type_name]


def test_collision_object_round_trip_over_dds(graph, ros_distro):
    sent = make_collision_object()
    got, endpoints = graph.round_trip(CollisionObject, sent, f"/sam3d_iface_test_{graph.suffix}/collision_objects")
    assert got == sent
    assert got.operation == CollisionObject.ADD
    assert [(p.x, p.y, p.z) for p in got.meshes[0].vertices] == [(p.x, p.y, p.z) for p in sent.meshes[0].vertices]
    assert endpoints[0].topic_type == "moveit_msgs/msg/CollisionObject"
    assert _announced_hash(endpoints, ros_distro) == _expected_hash("moveit_msgs/msg/CollisionObject", ros_distro)


def test_planning_scene_diff_round_trip_over_dds(graph, ros_distro):
    sent = make_scene_diff(make_collision_object("mug_0"), make_collision_object("bowl_1"))
    got, endpoints = graph.round_trip(PlanningScene, sent, f"/sam3d_iface_test_{graph.suffix}/planning_scene")
    assert got == sent
    assert got.is_diff and [o.id for o in got.world.collision_objects] == ["mug_0", "bowl_1"]
    assert all(o.operation == CollisionObject.ADD for o in got.world.collision_objects)
    assert endpoints[0].topic_type == "moveit_msgs/msg/PlanningScene"
    assert _announced_hash(endpoints, ros_distro) == _expected_hash("moveit_msgs/msg/PlanningScene", ros_distro)
