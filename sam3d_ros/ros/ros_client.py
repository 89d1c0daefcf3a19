"""Drive a running perception node over real ROS 2 topics: publish RGB-D frames, collect what it publishes.

Used by the integration tests and the demo, so both exercise the node exactly as a camera driver and a segmenter
would: separate process, DDS, best-effort sensor QoS.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from moveit_msgs.msg import CollisionObject
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray, Detection3D, Detection3DArray
from visualization_msgs.msg import Marker, MarkerArray

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.distortion import Distortion
from sam3d_ros.ros import conversions

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
NODE_NAME = "sam3d_perception"


def start_node_process(
    namespace: str, params_file: Path | None = None, params: dict | None = None, log_path: Path | None = None,
    remappings: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start `python -m sam3d_ros.ros.perception_node` in its own process under `namespace` (inherits the DDS env),
    with `remappings` (input name -> topic) as `-r` arguments."""
    params_file = params_file or PACKAGE_ROOT / "config" / "perception.yaml"
    cmd = [sys.executable, "-m", "sam3d_ros.ros.perception_node", "--ros-args", "--params-file", str(params_file)]
    cmd += ["-r", f"__ns:={namespace}"]
    for name, topic in (remappings or {}).items():
        cmd += ["-r", f"{name}:={topic}"]
    for name, value in (params or {}).items():
        cmd += ["-p", f"{name}:={value}"]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


@contextlib.contextmanager
def running_node(
    namespace: str, params: dict | None = None, log_path: Path | None = None, remappings: dict[str, str] | None = None,
    client_options: dict | None = None, wait_s: float = 60.0,
) -> Iterator[tuple[subprocess.Popen, "PerceptionClient"]]:
    """A perception_node process (start_node_process) and a PerceptionClient for it (`client_options` as keyword
    arguments), once the node is up: RuntimeError with its log when it does not come up within `wait_s`. Both are
    ended on exit."""
    process = start_node_process(namespace, params=params, log_path=log_path, remappings=remappings)
    client = PerceptionClient(namespace, **(client_options or {}))
    try:
        if not client.wait_for_node(wait_s):
            log = log_path.read_text() if log_path is not None else "(not kept)"
            raise RuntimeError(f"node never came up; its log:\n{log}")
        yield process, client
    finally:
        client.close()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)

def rgbd_messages(
    stamp_ns: int, frame_id: str, rgb: np.ndarray, depth_m: np.ndarray | None, intrinsics: CameraIntrinsics,
    labels: np.ndarray | None = None, detections: Detection2DArray | None = None, depth_encoding: str = "32FC1",
    image_encoding: str = "rgb8", distortion: Distortion | None = None, image_transport: str = "raw",
    depth_image_transport: str = "raw",
) -> tuple[Header, Image | CompressedImage, CameraInfo, Image | CompressedImage | None, Image | None, Detection2DArray | None]:
    """(header, image, camera_info, depth, masks, detections) messages of numpy RGB-D (+ label image or detections)
    as a camera driver and a segmenter send them, stamped `stamp_ns` in `frame_id`, in the given image_transport
    transports (image: raw or compressed jpeg; depth: raw or compressedDepth); camera_info carries `distortion`."""
    header = Header(stamp=conversions.ns_to_stamp(stamp_ns), frame_id=frame_id)
    image = rgb if image_encoding == "rgb8" else rgb[..., ::-1].copy()
    depth_msg = None
    if depth_m is not None:
        if depth_encoding == "16UC1":
            depth = np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0).astype(np.uint16)
        else:
            depth = depth_m.astype(np.float32)
        if depth_image_transport == "compressedDepth":
            depth_msg = conversions.depth_to_compressed_depth_msg(depth, depth_encoding, header)
        else:
            depth_msg = conversions.array_to_image_msg(depth, depth_encoding, header)
    masks_msg = None
    if labels is not None:
        encoding = "mono8" if labels.max() < 256 else "16UC1"
        masks_msg = conversions.array_to_image_msg(labels.astype(np.uint8 if encoding == "mono8" else np.uint16), encoding, header)
    if detections is not None:
        detections.header = header
    if image_transport == "compressed":
        image_msg = conversions.rgb_to_compressed_msg(rgb, image_encoding, "jpeg", header)
    else:
        image_msg = conversions.array_to_image_msg(image, image_encoding, header)
    info = conversions.intrinsics_to_camera_info(intrinsics, header)
    if distortion is not None:
        info.distortion_model, info.d = distortion.model, list(distortion.coefficients)
    return header, image_msg, info, depth_msg, masks_msg, detections


@dataclass
class NodeOutputs:
    """Everything the node published for one image stamp (several Detection3DArrays of a stamp are merged by id)."""

    detections: dict[str, Detection3D] = field(default_factory=dict)  # detection id -> Detection3D
    detection_arrays: int = 0
    frame_id: str = ""
    transforms: dict[str, object] = field(default_factory=dict)  # child frame -> TransformStamped
    tf_received_s: float | None = None  # time.monotonic() of the first TF message of this stamp


class PerceptionClient:
    """A test/demo peer of the node: publishes its inputs, records its outputs by stamp."""

    def __init__(self, namespace: str, image_transport: str = "raw", depth_image_transport: str = "raw",
                 topics: dict[str, str] | None = None) -> None:
        """`image_transport` 'compressed' publishes the colour image as compressed_image_transport does on
        <image>/compressed; `depth_image_transport` 'compressedDepth' as compressed_depth_image_transport does on
        <depth>/compressedDepth. `topics`: input name -> topic where the node was remapped."""
        self.namespace = namespace.rstrip("/")
        self.image_transport, self.depth_image_transport = image_transport, depth_image_transport
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("sam3d_scene_client", context=self.context)
        ns = self.namespace
        topics = {kind: (topics or {}).get(kind, f"{ns}/{kind}") for kind in ("image", "depth")}
        if image_transport == "compressed":
            self.pub_image = self.node.create_publisher(CompressedImage, topics["image"] + "/compressed", qos_profile_sensor_data)
        else:
            self.pub_image = self.node.create_publisher(Image, topics["image"], qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
        if depth_image_transport == "compressedDepth":
            self.pub_depth = self.node.create_publisher(CompressedImage, topics["depth"] + "/compressedDepth", qos_profile_sensor_data)
        else:
            self.pub_depth = self.node.create_publisher(Image, topics["depth"], qos_profile_sensor_data)
        self.pub_masks = self.node.create_publisher(Image, f"{ns}/masks", qos_profile_sensor_data)
        self.pub_detections = self.node.create_publisher(Detection2DArray, f"{ns}/detections", qos_profile_sensor_data)
        self._lock = threading.RLock()  # wait_for() conditions may call the locked helpers below
        self.outputs: dict[int, NodeOutputs] = {}
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Detection3DArray, f"{ns}/{NODE_NAME}/detections", self._on_detections, reliable)
        self.markers: dict[tuple[str, int], Marker] = {}  # (namespace, id) -> marker shown now
        self.marker_arrays: list[MarkerArray] = []
        self.collision_objects: list[CollisionObject] = []
        self.collision_received_s: list[float] = []  # time.monotonic() of each entry of collision_objects
        self.diagnostics: list[DiagnosticArray] = []
        # Latched, with a queue of 100 (a viewer must take every array): the node sends the swapped objects' markers
        # alone, so a reader with a queue of 1 loses an array that the next one overwrites before it is taken (under
        # CI's load an object's last fused mesh never showed). The publisher keeps 1: a late joiner gets the last one.
        latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(MarkerArray, f"{ns}/{NODE_NAME}/markers", self._on_markers, latched)
        self.node.create_subscription(CollisionObject, f"{ns}/{NODE_NAME}/collision_objects", self._on_collision, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.grasp_arrays: dict[int, Any] = {}  # stamp ns -> sam3d_ros_msgs/ObjectGraspArray
        self.grasp_poses: dict[int, PoseArray] = {}  # stamp ns -> PoseArray
        self.node.create_subscription(PoseArray, f"{ns}/{NODE_NAME}/grasp_poses", self._on_grasp_poses, reliable)
        try:
            from sam3d_ros_msgs.msg import ObjectGraspArray
        except ImportError:  # not built: poses only
            pass
        else:
            self.node.create_subscription(ObjectGraspArray, f"{ns}/{NODE_NAME}/grasps", self._on_grasps, reliable)
        self.node.create_subscription(TFMessage, "/tf", self._on_tf, reliable)
        self._services = {
            name: self.node.create_client(Trigger, f"{ns}/{NODE_NAME}/{name}") for name in ("reconstruct", "clear", "save_scene")
        }
        self._parameter_client = self.node.create_client(SetParameters, f"{ns}/{NODE_NAME}/set_parameters")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin_thread = threading.Thread(target=self._spin, daemon=True)
        self._spin_thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down
                return

    def _entry(self, stamp) -> NodeOutputs:
        return self.outputs.setdefault(conversions.stamp_to_ns(stamp), NodeOutputs())

    def _on_detections(self, msg: Detection3DArray) -> None:
        with self._lock:
            entry = self._entry(msg.header.stamp)
            entry.detection_arrays += 1
            entry.frame_id = msg.header.frame_id
            for detection in msg.detections:
                entry.detections[detection.id] = detection

    def _on_markers(self, msg: MarkerArray) -> None:
        with self._lock:
            self.marker_arrays.append(msg)
            for marker in msg.markers:
                if marker.action == Marker.DELETEALL:
                    self.markers.clear()
                elif marker.action == Marker.DELETE:
                    self.markers.pop((marker.ns, marker.id), None)
                else:
                    self.markers[(marker.ns, marker.id)] = marker

    def _on_grasps(self, msg: Any) -> None:
        with self._lock:
            self.grasp_arrays[conversions.stamp_to_ns(msg.header.stamp)] = msg

    def _on_grasp_poses(self, msg: PoseArray) -> None:
        with self._lock:
            self.grasp_poses[conversions.stamp_to_ns(msg.header.stamp)] = msg

    def _on_collision(self, msg: CollisionObject) -> None:
        now = time.monotonic()
        with self._lock:
            self.collision_objects.append(msg)
            self.collision_received_s.append(now)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self.diagnostics.append(msg)

    def _on_tf(self, msg: TFMessage) -> None:
        now = time.monotonic()
        with self._lock:
            for transform in msg.transforms:
                entry = self._entry(transform.header.stamp)
                entry.transforms[transform.child_frame_id] = transform
                if entry.tf_received_s is None:
                    entry.tf_received_s = now

    def call_service(self, name: str, timeout_s: float = 10.0) -> tuple[bool, str]:
        """Call the node's std_srvs/Trigger service `name` (reconstruct, clear, save_scene): (success, message)."""
        client = self._services[name]
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"service {name} is not available")
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {name} did not answer within {timeout_s} s")
            time.sleep(0.01)
        response = future.result()
        return bool(response.success), str(response.message)

    def set_parameters(self, values: dict[str, Any], timeout_s: float = 10.0) -> list[tuple[bool, str]]:
        """Set the node's parameters as `ros2 param set` does (rcl_interfaces/SetParameters): (successful, reason)
        per parameter, in order."""
        client = self._parameter_client
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError("the node's set_parameters service is not available")
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"set_parameters did not answer within {timeout_s} s")
            time.sleep(0.01)
        return [(bool(r.successful), str(r.reason)) for r in future.result().results]

    def diagnostic_values(self) -> dict[str, dict[str, str]]:
        """Status name -> {key: value} of the newest /diagnostics message."""
        with self._lock:
            if not self.diagnostics:
                return {}
            latest = self.diagnostics[-1]
        return {status.name: {kv.key: kv.value for kv in status.values} for status in latest.status}

    def wait_for_node(self, timeout_s: float = 30.0) -> bool:
        """True once the node subscribes to every input and publishes its outputs."""
        deadline = time.monotonic() + timeout_s
        pubs = [self.pub_image, self.pub_info, self.pub_depth, self.pub_masks, self.pub_detections]
        while time.monotonic() < deadline:
            outputs_seen = self.node.count_publishers(f"{self.namespace}/{NODE_NAME}/detections") > 0
            if outputs_seen and all(p.get_subscription_count() > 0 for p in pubs):
                time.sleep(0.5)  # let the node's reliable publishers match our subscriptions too
                return True
            time.sleep(0.1)
        return False

    def publish(
        self, header: Header, image: Image | CompressedImage, info: CameraInfo, depth: Image | CompressedImage | None = None,
        masks: Image | None = None, detections: Detection2DArray | None = None,
    ) -> None:
        """Publish one frame's messages (depth and segmentation first, image last)."""
        for pub, msg in ((self.pub_depth, depth), (self.pub_masks, masks), (self.pub_detections, detections)):
            if msg is not None:
                pub.publish(msg)
        self.pub_info.publish(info)
        self.pub_image.publish(image)

    def publish_rgbd(
        self, stamp_ns: int, frame_id: str, rgb: np.ndarray, depth_m: np.ndarray | None, intrinsics: CameraIntrinsics,
        labels: np.ndarray | None = None, detections: Detection2DArray | None = None, depth_encoding: str = "32FC1",
        image_encoding: str = "rgb8", distortion: Distortion | None = None,
    ) -> None:
        """Publish numpy RGB-D (+ label image or detections) with the stamp and frame of a camera driver, in the
        client's transports; camera_info carries `distortion` (the images must be distorted with it)."""
        self.publish(*rgbd_messages(
            stamp_ns, frame_id, rgb, depth_m, intrinsics, labels, detections, depth_encoding, image_encoding, distortion,
            self.image_transport, self.depth_image_transport,
        ))

    def publish_rgbd_until_outputs(
        self, stamp_ns: int, frame_id: str, rgb: np.ndarray, depth_m: np.ndarray | None, intrinsics: CameraIntrinsics,
        n_objects: int, timeout_s: float = 10.0, attempts: int = 3, **kwargs: Any,
    ) -> NodeOutputs | None:
        """publish_rgbd (keyword arguments as there), again when best-effort transport lost the frame, until outputs
        for `n_objects` arrive for its stamp (wait_for_outputs, `timeout_s` each time); None after `attempts`."""
        for _ in range(attempts):
            self.publish_rgbd(stamp_ns, frame_id, rgb, depth_m, intrinsics, **kwargs)
            outputs = self.wait_for_outputs(stamp_ns, n_objects=n_objects, timeout_s=timeout_s)
            if outputs is not None:
                return outputs
        return None

    def wait_for_outputs(self, stamp_ns: int, n_objects: int = 1, timeout_s: float = 20.0) -> NodeOutputs | None:
        """Outputs for `stamp_ns` once `n_objects` detections and TF frames of that stamp arrived, else None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                out = self.outputs.get(stamp_ns)
                if out and len(out.detections) >= n_objects and len(out.transforms) >= n_objects:
                    return out
            time.sleep(0.02)
        return None

    def wait_for(self, condition, timeout_s: float = 20.0) -> bool:
        """Poll `condition()` (called with this client's lock held) until it is true or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if condition():
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Stop spinning and shut this client's ROS context down."""
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spin_thread.join(timeout=2.0)
