"""ROS 2 node: a thin shell mapping camera, depth and mask/detection messages to the pipeline and back."""
from __future__ import annotations

import sys
import threading
from pathlib import Path
import time
from typing import Any

import rclpy
import rclpy.executors
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from sam3d_ros import conversions
from sam3d_ros.backends import create_backend
from sam3d_ros.backends.sam3d import PARAMETERS as SAM3D_PARAMETERS
from sam3d_ros.backends.sam3d import options_from_parameters
from sam3d_ros.box_segmenter import create_box_segmenter
from sam3d_ros.pipeline import PerceptionPipeline
from sam3d_ros.segmentation import labels_to_prompts
from sam3d_ros.sync import SEGMENTATION_MODES, FrameAssembler, FrameSet
from sam3d_ros.tf_publisher import make_transform_broadcaster
from sam3d_ros.types import InputError, RGBDFrame

#: name -> (default, description). Every parameter is declared from this table and documented in config/perception.yaml.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "backend": ("depth", "Reconstruction backend: 'depth' (built-in geometric RGB-D, CPU) or 'sam3d' (SAM 3D Objects worker)."),
    "box_segmentation": ("auto", "Masks from detection boxes: 'auto' (SAM with a checkpoint, else U^2-Net-p if installed, else depth), 'sam', 'u2netp' or 'depth'."),
    "sam_checkpoint": ("", "Segment Anything checkpoint file, relative to models_dir or absolute ('' = none)."),
    "sam_device": ("cpu", "Torch device for Segment Anything ('cpu', 'cuda')."),
    "models_dir": ("", "Folder of model files ('' = the package's models/ folder)."),
    "frame_prefix": ("sam3d_object_", "TF child frame of an object: <frame_prefix><object id>."),
    "segmentation_input": ("auto", "Which segmentation to use: 'auto' (masks when a frame has them, else detections), 'masks' or 'detections'."),
    "sync_slop_s": (0.05, "Largest stamp difference (s) between the image and its depth or camera_info."),
    "segmentation_slop_s": (0.0, "Largest stamp difference (s) between the image and its masks or detections; 0 = exact (segmenters copy the image header)."),
    "sync_queue_size": (10, "Messages kept per input while waiting for the others."),
    "depth_timeout_s": (1.0, "After this long (s) without any depth message, frames are handled without depth."),
    "input_qos_reliability": ("best_effort", "QoS reliability of the inputs: 'best_effort' (sensor data, camera drivers) or 'reliable'."),
    "input_qos_depth": (5, "QoS history depth of the inputs."),
    "min_mask_pixels": (50, "Masks with fewer pixels are skipped with a warning."),
    "publish_tf": (True, "Broadcast one TF frame per object on /tf."),
    "marker_max_triangles": (20000, "Largest number of mesh triangles per TRIANGLE_LIST marker (strided subset above)."),
    "marker_labels": (True, "Also publish a text marker with each object's id and label."),
    "warning_period_s": (5.0, "The same warning is logged at most once per this period."),
    **SAM3D_PARAMETERS,
}


def default_models_dir() -> Path:
    """The installed share/sam3d_ros/models (colcon) or the source tree's models/ folder."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("sam3d_ros")) / "models"
    except (ImportError, LookupError, OSError):  # no ament index here (pip install): the source tree
        return Path(__file__).resolve().parent.parent / "models"


class PerceptionNode(Node):
    """Subscribes to image, camera_info, depth, masks and detections; publishes ~/detections, ~/markers and /tf."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sam3d_perception", **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.params = p
        if p["segmentation_input"] not in SEGMENTATION_MODES:
            raise ValueError(f"segmentation_input must be one of {SEGMENTATION_MODES}, got '{p['segmentation_input']}'")
        box_segmenter, segmenter_line = create_box_segmenter(
            p["models_dir"] or default_models_dir(), p["sam_checkpoint"], p["box_segmentation"], p["sam_device"]
        )
        self.get_logger().info(segmenter_line)
        backend_options: dict[str, Any] = {}
        fallback = None
        if p["backend"] == "sam3d":
            backend_options = options_from_parameters(p)
            fallback = create_backend("depth")  # a dead or slow worker: the object still gets a result
        self.pipeline = PerceptionPipeline(
            create_backend(p["backend"], **backend_options), min_mask_pixels=int(p["min_mask_pixels"]),
            box_segmenter=box_segmenter, fallback=fallback,
        )
        self.assembler = FrameAssembler(
            float(p["sync_slop_s"]), int(p["sync_queue_size"]), float(p["depth_timeout_s"]), p["segmentation_input"],
            float(p["segmentation_slop_s"]),
        )
        self._assembler_lock = threading.Lock()
        self._last_warning: dict[str, float] = {}
        self._marker_ids: dict[str, int] = {}
        self._shown_marker_ids: set[int] = set()
        self.frames_in = 0
        self.frames_out = 0

        reliability = ReliabilityPolicy.RELIABLE if p["input_qos_reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p["input_qos_depth"]), reliability=reliability)
        self.create_subscription(Image, "image", lambda m: self._on_input("image", m), qos)
        self.create_subscription(CameraInfo, "camera_info", lambda m: self._on_input("camera_info", m), qos)
        self.create_subscription(Image, "depth", lambda m: self._on_input("depth", m), qos)
        self.create_subscription(Image, "masks", lambda m: self._on_input("masks", m), qos)
        self.create_subscription(Detection2DArray, "detections", lambda m: self._on_input("detections", m), qos)

        self.detections_pub = self.create_publisher(Detection3DArray, "~/detections", 10)
        self.markers_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.tf_broadcaster = make_transform_broadcaster(self) if p["publish_tf"] else None

        # Reconstruction runs off the executor: callbacks only buffer; the newest complete frame replaces a waiting one.
        self._pending: FrameSet | None = None
        self._pending_cv = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._work_loop, name="sam3d_reconstruction", daemon=True)
        self._worker.start()
        self.create_timer(2.0, self._check_inputs)
        self.get_logger().info(
            f"sam3d_perception ready: backend={p['backend']}, segmentation={p['segmentation_input']}, "
            f"input QoS={p['input_qos_reliability']}"
        )

    # -- input ---------------------------------------------------------------------------------------------------
    def _on_input(self, kind: str, msg: Any) -> None:
        if kind == "image":
            self.frames_in += 1
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        with self._assembler_lock:
            frames = self.assembler.add(kind, stamp_ns, msg, time.monotonic())
        if frames:
            with self._pending_cv:
                self._pending = frames[-1]
                self._pending_cv.notify()

    def _check_inputs(self) -> None:
        """Say what is missing when images arrive but frames cannot be completed."""
        last = self.assembler.last_arrival_s
        if last["image"] is None:
            return
        if last["camera_info"] is None:
            self.warn("no_camera_info", "images arrive but no camera_info has been received: frames are skipped")
        if last["masks"] is None and last["detections"] is None:
            self.warn("no_segmentation", "images arrive but no masks or detections have been received: nothing to reconstruct")

    def warn(self, key: str, text: str) -> None:
        """Log `text` at most once per warning_period_s for each kind of problem `key`."""
        now = time.monotonic()
        if now - self._last_warning.get(key, -1e9) >= float(self.params["warning_period_s"]):
            self._last_warning[key] = now
            self.get_logger().warning(text)

    # -- processing ----------------------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while True:
            with self._pending_cv:
                while self._pending is None and not self._stop:
                    self._pending_cv.wait()
                if self._stop:
                    return
                frame_set, self._pending = self._pending, None
            try:
                self.process(frame_set)
            except Exception as exc:  # the node keeps running whatever one frame holds
                self.warn(f"unexpected:{type(exc).__name__}", f"frame skipped: unexpected {type(exc).__name__}: {exc}")

    def process(self, frame_set: FrameSet) -> None:
        """Convert one matched frame, run the pipeline, publish the results."""
        header = frame_set.image.header
        try:
            frame, prompts = self._to_core(frame_set)
            if frame.depth_m is None and self.pipeline.backend.needs_depth:
                self.warn(
                    "no_depth",
                    f"no depth image: the '{self.pipeline.backend.name}' backend cannot reconstruct metrically without "
                    "registered depth; nothing is published until depth arrives",
                )
                return
            result = self.pipeline.process(frame, prompts)
        except InputError as exc:
            self.warn(f"input:{str(exc)[:40]}", f"frame skipped: {exc}")
            return
        for error in result.errors:
            self.warn(f"object:{error[:40]}", error)
        if any(not obj.metric_scale for obj in result.objects):
            self.warn("not_metric", "no registered depth: poses and sizes are up to an unknown scale (not metric)")
        self.publish(header, result.objects)
        self.frames_out += 1

    def _to_core(self, frame_set: FrameSet) -> tuple[RGBDFrame, list]:
        rgb = conversions.image_msg_to_rgb(frame_set.image)
        intrinsics = conversions.camera_info_to_intrinsics(frame_set.camera_info)
        depth_m = conversions.depth_msg_to_metres(frame_set.depth) if frame_set.depth is not None else None
        frame = RGBDFrame(rgb, depth_m, intrinsics, frame_set.image.header.frame_id, frame_set.stamp_ns)
        frame.validate()
        height, width = rgb.shape[:2]
        if frame_set.masks is not None:
            labels = conversions.mask_msg_to_labels(frame_set.masks)
            if labels.shape != (height, width):
                raise InputError(f"mask image is {labels.shape[1]}x{labels.shape[0]} but the colour image is {width}x{height}")
            prompts = labels_to_prompts(labels)
            if not prompts:
                raise InputError("mask image has no object pixel (all background)")
        else:
            prompts = conversions.detections2d_to_prompts(frame_set.detections, width, height)
        return frame, prompts

    def publish(self, header: Header, objects: list) -> None:
        """Detection3DArray, markers (deleting those of objects no longer seen) and TF, all stamped like the image."""
        self.detections_pub.publish(conversions.make_detection3d_array(header, objects))
        markers = conversions.make_marker_array(
            header, objects, self._marker_ids, text=bool(self.params["marker_labels"]),
            max_triangles=int(self.params["marker_max_triangles"]),
        )
        shown = {self._marker_ids[o.object_id] for o in objects}
        gone = sorted(self._shown_marker_ids - shown)
        if gone:
            markers.markers.extend(conversions.make_delete_markers(header, gone).markers)
        self._shown_marker_ids = shown
        self.markers_pub.publish(markers)
        if self.tf_broadcaster is not None and objects:
            self.tf_broadcaster.sendTransform(conversions.make_transforms(header, objects, self.params["frame_prefix"]))

    def destroy_node(self) -> None:
        with self._pending_cv:
            self._stop = True
            self._pending_cv.notify()
        self._worker.join(timeout=5.0)
        close = getattr(self.pipeline.backend, "close", None)
        if close is not None:
            close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run sam3d_ros perception_node`."""
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = PerceptionNode()
    except (ValueError, InputError) as exc:
        print(f"perception_node: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
