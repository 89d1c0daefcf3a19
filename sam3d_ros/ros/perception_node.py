"""ROS 2 node: a thin shell mapping camera, depth and mask/detection messages to the pipeline and back."""
from __future__ import annotations

import faulthandler
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
import rclpy
import rclpy.executors
import rclpy.subscription
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from moveit_msgs.msg import CollisionObject, PlanningScene
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from sam3d_ros.geometry.depth_range import DEFAULT_DEPTH_RANGE_M, check_depth_range, depth_range
from sam3d_ros.geometry.distortion import Undistorter
from sam3d_ros.geometry.grasps import GraspPlanner
from sam3d_ros.geometry.gripper import GRIPPER_KEYS, GripperParams
from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.geometry.transforms import rotation_angle_between
from sam3d_ros.geometry.types import InputError, ObjectReconstruction, RGBDFrame
from sam3d_ros.reconstruction.backends.factory import BACKENDS, create_backend
from sam3d_ros.reconstruction.backends.sam3d import PARAMETERS as SAM3D_PARAMETERS
from sam3d_ros.reconstruction.backends.sam3d import options_from_parameters
from sam3d_ros.reconstruction.box_segmenter import METHODS as BOX_SEGMENTATION_METHODS
from sam3d_ros.reconstruction.box_segmenter import DepthBoxSegmenter, create_box_segmenter
from sam3d_ros.reconstruction.files import write_results
from sam3d_ros.reconstruction.fusion import FusionConfig
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline, PipelineResult, plan_grasps, support_plane_around
from sam3d_ros.reconstruction.segmentation import best_scored_prompts, boxes_in_image, largest_label_prompts
from sam3d_ros.ros import conversions
from sam3d_ros.ros.marker_updates import MarkerUpdates
from sam3d_ros.ros.node_statistics import NodeStatistics
from sam3d_ros.ros.sync import SEGMENTATION_MODES, FrameAssembler, FrameSet
from sam3d_ros.ros.tf_listener import TransformLookupError, make_transform_lookup
from sam3d_ros.ros.tf_publisher import make_transform_broadcaster
from sam3d_ros.tracking.fused_models import FUSION_PRIORITIES, FusionFrame, FusionProcess, FusionView
from sam3d_ros.tracking.pose_tracking import ObjectModel
from sam3d_ros.tracking.mesh_cache import MeshCache, check_mesh_formats
from sam3d_ros.tracking.scheduler import Job, ReconstructionScheduler
from sam3d_ros.tracking.tracker import ObjectTracker, ReconstructionRequest, Track, TrackerConfig

# rclpy passes MessageInfo (publisher id and sequence number) to two-argument callbacks from Iron on; Humble does not.
_MESSAGE_INFO_CALLBACKS = hasattr(rclpy.subscription.Subscription, "CallbackType")

MARKER_MESH_MODES = ("triangle_list", "mesh_resource")
#: image_transport transports of the colour and depth inputs: (message type, topic suffix) as image_transport's
#: plugins publish them next to the raw topic (<image>/compressed, <depth>/compressedDepth).
IMAGE_TRANSPORTS = {"raw": (Image, ""), "compressed": (CompressedImage, "/compressed")}
DEPTH_TRANSPORTS = {**IMAGE_TRANSPORTS, "compressedDepth": (CompressedImage, "/compressedDepth")}
#: depth encoding -> (hint when the median is too far, hint when it is too near) for check_depth_range (REP 118 units).
_DEPTH_UNIT_HINTS = {
    "32fc1": ("32FC1 depth must be metres; is it millimetres?", "32FC1 depth must be metres; is it in another unit, or normalised?"),
    "16uc1": ("16UC1 depth must be millimetres; is it in finer units (e.g. 5000 per metre)?",
              "16UC1 depth must be millimetres; is it metres, or a label image?"),
    "mono16": ("mono16 depth must be millimetres; is it in finer units (e.g. 5000 per metre)?",
               "mono16 depth must be millimetres; is it metres, or a label image?"),
}
_NUMBERS = re.compile(r"\d[\d.e+-]*")

#: name -> (default, description). Every parameter is declared from this table and documented in config/perception.yaml.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "backend": ("depth", "Reconstruction backend: 'depth' (built-in geometric RGB-D, CPU) or 'sam3d' (SAM 3D Objects worker)."),
    "box_segmentation": ("auto", "Masks from detection boxes: 'auto' (SAM with a checkpoint, else U^2-Net-p if installed, else depth), 'sam', 'u2netp' or 'depth'."),
    "sam_checkpoint": ("", "Segment Anything checkpoint file, relative to models_dir or absolute ('' = none)."),
    "sam_device": ("cpu", "Torch device for Segment Anything ('cpu', 'cuda')."),
    "models_dir": ("", "Folder of model files ('' = the package's models/ folder)."),
    "frame_prefix": ("sam3d_object_", "TF child frame of an object: <frame_prefix><object id>."),
    "target_frame": ("", "Frame of the outputs (e.g. base_link, world) via TF at the image stamp; '' = the camera's optical frame."),
    "target_frame_timeout_s": (0.05, "Longest wait (s) for the target_frame transform at an image stamp."),
    "target_frame_hold_s": (0.5, "When the target_frame transform of an image stamp is missing, the last one found is used if it is at most this old (s); older, the frame is dropped with a warning (outputs never change frame)."),
    "segmentation_input": ("auto", "Which segmentation to use: 'auto' (masks when a frame has them, else detections), 'masks' or 'detections'."),
    "image_transport": ("raw", "Transport of the colour image (image_transport's names): 'raw' (sensor_msgs/Image on image) or 'compressed' (sensor_msgs/CompressedImage, jpeg/png, on <image>/compressed)."),
    "depth_image_transport": ("raw", "Transport of the depth image: 'raw' (Image on depth), 'compressedDepth' (compressed_depth_image_transport's png on <depth>/compressedDepth) or 'compressed' (16-bit png on <depth>/compressed)."),
    "undistort": (True, "Undistort images, depth, masks and boxes with camera_info's distortion (plumb_bob, rational_polynomial, equidistant) onto the same K; false: the images are already rectified (image_rect) and D is ignored."),
    "sync_slop_s": (0.05, "Largest stamp difference (s) between the image and its depth or camera_info."),
    "segmentation_slop_s": (0.0, "Largest stamp difference (s) between the image and its masks or detections; 0 = exact (segmenters copy the image header)."),
    "sync_queue_size": (10, "Messages kept per input while waiting for the others."),
    "depth_timeout_s": (1.0, "A frame waits for the depth of its stamp; it goes without depth only when none has arrived for this long (s) nor since the image before it (at start-up: none this long after the first image)."),
    "input_qos_reliability": ("best_effort", "QoS reliability of the inputs: 'best_effort' (sensor data, camera drivers) or 'reliable' (any case)."),
    "input_qos_depth": (5, "QoS history depth of the inputs."),
    "min_mask_pixels": (50, "Masks with fewer pixels are skipped with a warning."),
    "depth_range_m": (list(DEFAULT_DEPTH_RANGE_M), "Working range [min, max] (m) of the depth camera: a frame whose median depth lies outside is refused with a warning naming the likely unit error (32FC1 must be metres, 16UC1 millimetres)."),
    "max_objects": (32, "Most objects taken from one frame: the largest masks or best-scored detections; a warning says how many were dropped (0 = no limit)."),
    "max_reconstructions_per_frame": (8, "Most objects one frame sends to reconstruction (best-scored, then largest first); the others follow from the next frames, so the first get their mesh and TF sooner."),
    "association": ("auto", "Object identity across frames: 'auto' (detection ids when the detector sets them, else mask overlap and 3D distance), 'input_id' (trust every input id, label values included) or 'overlap'."),
    "max_association_distance_m": (0.10, "Observed centres further apart (m) than this are not the same object unless their masks overlap."),
    "lost_timeout_s": (2.0, "An object unseen for this long (s, image time) is removed: TF stops, marker deleted, REMOVE to the planning scene."),
    "reconstruct_interval_s": (0.0, "Reconstruct every object again after this long (s); 0 = only when new, asked (~/reconstruct) or when the fit degrades."),
    "min_fitness": (0.5, "Tracking fit is degraded when fewer than this fraction of the observed depth points lie on the mesh."),
    "max_rmse_m": (0.008, "Tracking fit is degraded when the ICP residual exceeds this (m)."),
    "degraded_frames": (5, "Consecutive degraded fits before the object is reconstructed again."),
    "tracking_points": (600, "Depth points per object and frame used to track the pose (ICP)."),
    "reconstruction_queue_size": (1, "Reconstruction requests waiting behind the running one; a newer request replaces the oldest waiting one."),
    "fusion": (True, "Fuse every tracked view of an object into a multi-view model in the object's frame (off the tracking thread); its mesh replaces the single-view one at most once per fusion_min_interval_s, when it changed (markers, collision ADD and mesh files sent again)."),
    "fusion_voxel_budget": (FusionConfig.voxel_budget, "Most voxels of one object's fused model (13 bytes each): bounds its memory."),
    "fusion_min_interval_s": (1.0, "Shortest time (s) between two fused meshes of one object."),
    "fusion_cpu_priority": ("idle", "CPU priority of the fusion process: 'idle' (Linux SCHED_IDLE: it runs only on a core no other process wants, so tracking keeps its latency; with no free core fusion waits and fused meshes come later, from fewer views) or 'low' (nice 10: fusion keeps about a tenth of a busy core, and tracking's p95 latency rises)."),
    "fusion_max_rate_hz": (5.0, "Most tracked frames per second handed to fusion (0 = every one it can take): a 30 Hz camera's consecutive views add little, and each costs the node a copy into the fusion process and the fusion process a core."),
    "publish_tf": (True, "Broadcast one TF frame per object on /tf."),
    "publish_collision_objects": (True, "Publish moveit_msgs/CollisionObject (ADD/MOVE/REMOVE) on ~/collision_objects."),
    "apply_planning_scene": (False, "Also publish the collision objects as PlanningScene diffs on planning_scene_topic (MoveIt's move_group applies them)."),
    "planning_scene_topic": ("/planning_scene", "Topic of the PlanningScene diffs when apply_planning_scene is true."),
    "collision_min_motion_m": (0.005, "A collision object is MOVEd when it moved more than this (m) or 2 degrees since the last update."),
    "collision_max_triangles": (5000, "Largest number of triangles of a collision mesh (quadric decimation above; 0 = no limit)."),
    "marker_mesh": ("triangle_list", "Mesh markers: 'triangle_list' (vertices in the message) or 'mesh_resource' (file:// URI of the cached mesh file)."),
    "marker_max_triangles": (2000, "Largest number of mesh triangles per TRIANGLE_LIST marker (a quadric-decimated copy of a larger mesh)."),
    "marker_labels": (True, "Also publish a text marker with each object's id and label."),
    "marker_objects_per_send": (1, "Most objects whose swapped (fused) mesh markers go in one ~/markers array (one per tracked frame at most); the others follow with the next frames, so many swaps at once never stall one frame. A reconstruction's new meshes go at once."),
    "marker_snapshot_period_s": (60.0, "A new or swapped mesh sends that object's markers alone (live viewers merge them by ns/id); the whole latched MarkerArray, for viewers that join later, is sent again when a subscriber has joined since, else at most once per this period (s) after such partial arrays."),
    "mesh_cache_dir": ("", "Folder of the mesh files (<id>_v<version>.<ext>); '' = <temp dir>/sam3d_ros_meshes/<node name>."),
    "mesh_formats": ("glb,ply", "Mesh file formats written on each reconstruction, comma-separated: glb, ply, stl, obj ('' = none)."),
    "scene_dir": ("", "Folder where ~/save_scene writes scene_<stamp>/ (objects.json + meshes); '' = ~/.ros/sam3d_ros/scenes."),
    "publish_grasps": (True, "Plan parallel-jaw grasps for each new mesh (reconstruction thread; fused meshes: fusion process) and publish them every tracked frame on ~/grasps (sam3d_ros_msgs/ObjectGraspArray), ~/grasp_poses (PoseArray) and ~/grasp_markers, best first."),
    "max_grasps": (5, "Grasps kept per object, best first."),
    "gripper_joint_names": (["panda_finger_joint1", "panda_finger_joint2"], "Finger joints of the moveit_msgs/Grasp postures (each at half the jaw opening)."),
    **{f"gripper_{key}": (float(getattr(GripperParams(), key)), f"Gripper: {text} (default: Franka Hand).")
       for key, text in GRIPPER_KEYS.items()},
    "diagnostics_period_s": (1.0, "Period (s) of the status on /diagnostics."),
    "warning_period_s": (5.0, "The same warning is logged at most once per this period."),
    **SAM3D_PARAMETERS,
}


#: Parameters that take effect when set while the node runs (`ros2 param set`, rqt). Every other parameter is
#: declared read-only: it shapes what the node built at start-up (backend, subscriptions, queues, files), and a set is
#: refused with that reason.
RUNTIME_PARAMETERS = frozenset({
    "target_frame", "target_frame_timeout_s", "target_frame_hold_s", "segmentation_input", "sync_slop_s",
    "segmentation_slop_s", "depth_timeout_s", "min_mask_pixels", "association", "max_association_distance_m",
    "lost_timeout_s", "reconstruct_interval_s", "min_fitness", "max_rmse_m", "degraded_frames", "tracking_points",
    "publish_tf", "publish_collision_objects", "apply_planning_scene", "collision_min_motion_m",
    "collision_max_triangles", "fusion_max_rate_hz", "marker_max_triangles", "marker_labels", "marker_objects_per_send", "marker_snapshot_period_s", "scene_dir", "warning_period_s",
    "depth_range_m", "max_objects", "max_reconstructions_per_frame", "undistort",
})
INPUT_QOS_RELIABILITY = ("best_effort", "reliable")
_TRACKER_PARAMETERS = ("association", "max_association_distance_m", "lost_timeout_s", "reconstruct_interval_s",
                       "min_fitness", "max_rmse_m", "degraded_frames", "tracking_points")


def tracker_config(params: dict[str, Any]) -> TrackerConfig:
    """The tracker's settings from the node's parameters."""
    return TrackerConfig(**{name: params[name] for name in _TRACKER_PARAMETERS})


def validate_parameters(params: dict[str, Any]) -> None:
    """Raise ValueError, one line naming the parameter, for a value the node cannot work with (start-up and sets)."""
    choices = {
        "backend": tuple(BACKENDS), "box_segmentation": BOX_SEGMENTATION_METHODS,
        "segmentation_input": SEGMENTATION_MODES, "marker_mesh": MARKER_MESH_MODES, "fusion_cpu_priority": FUSION_PRIORITIES,
        "image_transport": tuple(IMAGE_TRANSPORTS), "depth_image_transport": tuple(DEPTH_TRANSPORTS),
    }
    for name, allowed in choices.items():
        if params[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got '{params[name]}'")
    if str(params["input_qos_reliability"]).lower() not in INPUT_QOS_RELIABILITY:
        raise ValueError(f"input_qos_reliability must be one of {', '.join(INPUT_QOS_RELIABILITY)}, "
                         f"got '{params['input_qos_reliability']}'")
    tracker_config(params).validate()
    at_least = {"target_frame_timeout_s": 0.0, "target_frame_hold_s": 0.0, "sync_slop_s": 0.0, "segmentation_slop_s": 0.0,
                "depth_timeout_s": 0.0, "collision_min_motion_m": 0.0, "warning_period_s": 0.0, "min_mask_pixels": 1,
                "sync_queue_size": 1, "input_qos_depth": 1, "reconstruction_queue_size": 0, "marker_max_triangles": 1,
                "fusion_voxel_budget": 1000, "fusion_min_interval_s": 0.0, "fusion_max_rate_hz": 0.0, "marker_snapshot_period_s": 0.0,
                "marker_objects_per_send": 1}
    for name, low in at_least.items():
        if not params[name] >= low:
            raise ValueError(f"{name} must be >= {low}, got {params[name]}")
    try:
        depth_range(params["depth_range_m"])
    except ValueError as exc:
        raise ValueError(f"depth_range_m: {exc}") from None
    if params["max_objects"] < 0:
        raise ValueError(f"max_objects must be >= 0 (0 = no limit), got {params['max_objects']}")
    if params["max_reconstructions_per_frame"] < 1:
        raise ValueError(f"max_reconstructions_per_frame must be >= 1, got {params['max_reconstructions_per_frame']}")
    if not params["diagnostics_period_s"] > 0:
        raise ValueError(f"diagnostics_period_s must be > 0, got {params['diagnostics_period_s']}")
    if not 0.0 <= params["min_fitness"] <= 1.0:
        raise ValueError(f"min_fitness must be within 0-1, got {params['min_fitness']}")
    if params["collision_max_triangles"] != 0 and params["collision_max_triangles"] < 4:
        raise ValueError(f"collision_max_triangles must be 0 (no limit) or at least 4, got {params['collision_max_triangles']}")
    formats = mesh_formats(params)
    try:
        check_mesh_formats(formats, "mesh_formats")
    except InputError as exc:
        raise ValueError(str(exc)) from None
    try:
        gripper_params(params)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if params["max_grasps"] < 1:
        raise ValueError(f"max_grasps must be >= 1, got {params['max_grasps']}")
    if params["marker_mesh"] == "mesh_resource" and not formats:
        raise ValueError("marker_mesh 'mesh_resource' needs at least one mesh_formats entry")


def gripper_params(params: dict[str, Any]) -> GripperParams:
    """The gripper_* parameters as a GripperParams (InputError naming the first bad value)."""
    return GripperParams.from_dict({key: params[f"gripper_{key}"] for key in GRIPPER_KEYS}, "gripper_* parameters")


def mesh_formats(params: dict[str, Any]) -> tuple[str, ...]:
    """The mesh file formats of the `mesh_formats` parameter (comma-separated)."""
    return tuple(f.strip().lower() for f in str(params["mesh_formats"]).split(",") if f.strip())

def default_models_dir() -> Path:
    """The installed share/sam3d_ros/models (colcon) or the source tree's models/ folder."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("sam3d_ros")) / "models"
    except (ImportError, LookupError, OSError):  # no ament index here (pip install): the source tree
        return Path(__file__).resolve().parents[2] / "models"


@dataclass
class _PreparedMeshes:
    """Each new mesh converted for the outputs, by object id (see PerceptionNode._prepare_meshes)."""

    collision_shapes: dict[str, Any] = field(default_factory=dict)  # shape_msgs/Mesh for the collision ADD
    triangle_lists: dict[str, conversions.TriangleList] = field(default_factory=dict)  # marker TRIANGLE_LIST content


@dataclass
class _Published:
    """What the planning scene and the viewers were last sent for one object."""

    mesh_version: int = 0
    T_frame_obj: np.ndarray | None = None  # last collision pose, in the output frame
    frame_id: str = ""


class PerceptionNode(Node):
    """Subscribes to image, camera_info, depth, masks and detections; tracks objects and publishes them.

    Seams for driving it offline (ros/offline_node.py, `sam3d-ros replay`): `_arrival_s` (the inputs' arrival clock),
    `_hand_over` (what happens to completed frames) and MESH_KEEP_VERSIONS (mesh files kept per object; None: all).
    """

    MESH_KEEP_VERSIONS: int | None = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sam3d_perception", **kwargs)
        self._stopping = False  # set once by destroy_node: no thread publishes after it
        for name, (default, description) in PARAMETERS.items():
            read_only = name not in RUNTIME_PARAMETERS
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description + (" (read-only: set at start-up)" if read_only else ""), read_only=read_only))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        validate_parameters(p)  # before anything is built: a bad value is one line and exit status 2
        self.params = p
        self._depth_range_m = depth_range(p["depth_range_m"])
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
        self.gripper = gripper_params(p)
        self.grasp_planner = GraspPlanner(self.gripper, int(p["max_grasps"])) if p["publish_grasps"] else None
        self.tracking_segmenter = DepthBoxSegmenter()  # per-frame masks from boxes for tracking (fast)
        self.tracker = ObjectTracker(tracker_config(p))
        formats = mesh_formats(p)
        cache_dir = p["mesh_cache_dir"] or str(Path(tempfile.gettempdir()) / "sam3d_ros_meshes" / self.get_name())
        self.mesh_cache = MeshCache(cache_dir, formats=formats, keep_versions=self.MESH_KEEP_VERSIONS) if formats else None
        self.assembler = FrameAssembler(
            float(p["sync_slop_s"]), int(p["sync_queue_size"]), float(p["depth_timeout_s"]), p["segmentation_input"],
            float(p["segmentation_slop_s"]),
        )
        self.stats = NodeStatistics()
        self._assembler_lock = threading.Lock()
        self._lock = threading.RLock()  # tracker and what was published
        self._last_warning: dict[str, float] = {}
        self._marker_ids: dict[str, int] = {}
        self._published: dict[str, _Published] = {}
        self._mesh_files: dict[str, dict[str, Path]] = {}  # object id -> format -> file of its current mesh
        # Per object, its current mesh converted once (on the reconstruction thread, off the lock) for the outputs
        # that carry it: the collision ADD's shape_msgs/Mesh (decimated when over collision_max_triangles) and the
        # marker's TRIANGLE_LIST.
        self._collision_shapes: dict[str, Any] = {}
        self._marker_meshes: dict[str, conversions.TriangleList] = {}
        self._camera_frame_id = ""
        self._plane_cam: np.ndarray | None = None
        self._plane_stamp_ns = -(10**18)

        reliable_input = str(p["input_qos_reliability"]).lower() == "reliable"
        reliability = ReliabilityPolicy.RELIABLE if reliable_input else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p["input_qos_depth"]), reliability=reliability)
        self._undistorter: Undistorter | None = None  # the maps of the last distorted camera seen
        self._input_topics: dict[str, str] = {}  # input kind -> its resolved topic
        image_type, image_suffix = IMAGE_TRANSPORTS[p["image_transport"]]
        depth_type, depth_suffix = DEPTH_TRANSPORTS[p["depth_image_transport"]]
        for kind, msg_type, suffix in (("image", image_type, image_suffix), ("camera_info", CameraInfo, ""),
                                       ("depth", depth_type, depth_suffix), ("masks", Image, ""),
                                       ("detections", Detection2DArray, "")):
            self._subscribe_input(kind, msg_type, qos, suffix)

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.detections_pub = self.create_publisher(Detection3DArray, "~/detections", 10)
        self.markers_pub = self.create_publisher(MarkerArray, "~/markers", latched)
        self.grasp_pubs = None
        self._grasp_messages = conversions.GraspMessageBuilder(self.gripper, p["gripper_joint_names"])
        if p["publish_grasps"]:
            self.grasp_pubs = (self.create_publisher(PoseArray, "~/grasp_poses", 10),
                               self.create_publisher(MarkerArray, "~/grasp_markers", 10),
                               _create_grasp_array_publisher(self))
        self.collision_pub = None
        self.planning_scene_pub = None
        self.tf_broadcaster = None
        self.tf_lookup = None
        # Whose markers go with the next tracked frame, and when the whole latched array goes again.
        self._marker_updates = MarkerUpdates(float(p["marker_snapshot_period_s"]), int(p["marker_objects_per_send"]))
        # The newest target_frame transform found: (stamp ns, camera frame, target frame, T_target_cam).
        self._held_transform: tuple[int, str, str, np.ndarray] | None = None
        self._apply_output_parameters()
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.create_service(Trigger, "~/reconstruct", self._on_reconstruct)
        self.create_service(Trigger, "~/clear", self._on_clear)
        self.create_service(Trigger, "~/save_scene", self._on_save_scene)

        # Heavy work runs off the executor: the tracking thread takes the newest complete frame (a frame it replaces
        # is counted as dropped); reconstruction runs on the scheduler's thread, one request at a time.
        self.scheduler = ReconstructionScheduler(
            self._reconstruct, self._on_reconstructed, queue_size=int(p["reconstruction_queue_size"])
        )
        self._pending: FrameSet | None = None
        self._pending_cv = threading.Condition()
        self._stop = False
        # Fusion runs in a child process (its numpy work never holds this process's GIL), fed from a thread with the
        # newest tracked frame (a newer one replaces a waiting one).
        self.fused_models = FusionProcess(FusionConfig(voxel_budget=int(p["fusion_voxel_budget"])),
                                          float(p["fusion_min_interval_s"]), self.grasp_planner,
                                          str(p["fusion_cpu_priority"])) if p["fusion"] else None
        self.fusion_scheduler = ReconstructionScheduler(
            self._fuse, self._on_fused, queue_size=1, name="sam3d_fusion") if p["fusion"] else None
        self._last_fusion_frame_s: float | None = None  # pacing clock when a frame last went to fusion
        self._scene_frame: tuple[np.ndarray | None, str, int] | None = None  # latest (T_frame_cam, frame id, stamp)
        self._worker = threading.Thread(target=self._track_loop, name="sam3d_tracking", daemon=True)
        self._worker.start()
        self.create_timer(2.0, self._check_inputs)
        # Frames waiting for depth that is not published complete with time alone (steady: whatever /clock does).
        self.create_timer(0.1, self._poll_inputs, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(float(p["diagnostics_period_s"]), self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"sam3d_perception ready: backend={p['backend']}, segmentation={p['segmentation_input']}, "
            f"input QoS={p['input_qos_reliability']}, output frame={p['target_frame'] or 'camera optical frame'}"
        )

    # -- parameters ----------------------------------------------------------------------------------------------
    def _apply_output_parameters(self) -> None:
        """Create or switch off the outputs and lookups that the publish flags and target_frame ask for (start-up and
        runtime); a publisher, once made, is kept for when the flag comes back on."""
        p = self.params
        if p["publish_collision_objects"] and self.collision_pub is None:
            self.collision_pub = self.create_publisher(CollisionObject, "~/collision_objects", QoSProfile(depth=100))
        if p["apply_planning_scene"] and self.planning_scene_pub is None:
            self.planning_scene_pub = self.create_publisher(PlanningScene, p["planning_scene_topic"], QoSProfile(depth=100))
        if p["publish_tf"] and self.tf_broadcaster is None:
            self.tf_broadcaster = make_transform_broadcaster(self)
        if p["target_frame"] and self.tf_lookup is None:
            self.tf_lookup = make_transform_lookup(self)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Apply runtime parameters (validated together first); read-only ones never reach here: rclpy refuses them
        from their descriptors before it calls this."""
        changed = {parameter.name: parameter.value for parameter in parameters}
        candidate = {**self.params, **changed}
        try:
            validate_parameters(candidate)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            old = self.params
            self.params = candidate
            self.tracker.config = tracker_config(candidate)
            self._depth_range_m = depth_range(candidate["depth_range_m"])
            self._apply_output_parameters()
            if candidate["target_frame"] != old["target_frame"]:
                self._held_transform = None
            self._marker_updates.snapshot_period_s = float(candidate["marker_snapshot_period_s"])
            self._marker_updates.max_objects_per_send = int(candidate["marker_objects_per_send"])
            if candidate["publish_tf"] != old["publish_tf"] or candidate["marker_labels"] != old["marker_labels"]:
                self._marker_updates.resend_all()  # frame-locked to the object frames or not, labels or not
        with self._assembler_lock:
            self.assembler.configure(float(candidate["sync_slop_s"]), float(candidate["depth_timeout_s"]),
                                     candidate["segmentation_input"], float(candidate["segmentation_slop_s"]))
        self.get_logger().info("parameters set: " + ", ".join(f"{name}={value!r}" for name, value in changed.items()))
        return SetParametersResult(successful=True)

    # -- input ---------------------------------------------------------------------------------------------------
    def _subscribe_input(self, kind: str, msg_type: type, qos: QoSProfile, suffix: str = "") -> None:
        """Subscribe `kind` (its topic + `suffix`, image_transport's transport topic: the base topic is resolved with
        the node's remappings first, so `-r image:=/camera/color/image_raw` subscribes
        /camera/color/image_raw/compressed); where rclpy passes MessageInfo (Iron and later), publisher sequence
        numbers show the messages lost before the callback (transport, or overwritten in the KEEP_LAST queue) so they
        are counted."""
        topic = self.resolve_topic_name(kind) + suffix if suffix else kind
        if _MESSAGE_INFO_CALLBACKS:
            subscription = self.create_subscription(msg_type, topic, lambda msg, info: self._on_input(kind, msg, info), qos)
            self._input_topics[kind] = subscription.topic_name
        else:  # Humble: the callback gets the message only
            self.stats.input_gaps[kind] = None
            self.create_subscription(msg_type, topic, lambda msg: self._on_input(kind, msg), qos)
        if suffix:
            self.get_logger().info(f"{kind}: {msg_type.__name__} on {topic}")

    def _on_input(self, kind: str, msg: Any, info: dict | None = None) -> None:
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        if info is not None:
            gid = info.get("publisher_gid")  # from Kilted on; Jazzy does not name the publisher (see sequence_gaps)
            publisher = None if gid is None else bytes(gid.get("data", b""))
            publishers = 1 if gid is not None else self.count_publishers(self._input_topics[kind])
            self.stats.input_gaps[kind].observe(publisher, info.get("publication_sequence_number"), publishers)
        with self._assembler_lock:
            frames = self.assembler.add(kind, stamp_ns, msg, self._arrival_s())
            self.stats.unmatched_images = self.assembler.dropped_images
            jump_ns = self.assembler.take_time_jump()
            mismatch = self.assembler.segmentation_mismatch
        if kind == "image":
            self.stats.frames_in += 1
        if jump_ns is not None:
            self._on_time_jump(jump_ns, stamp_ns)
        if mismatch is not None:
            self.warn("segmentation_stamps", (
                f"{mismatch.kind} stamps match no image stamp: they differ by {mismatch.offset_ns / 1e6:+.1f} ms from "
                f"the nearest image (segmentation_slop_s is {self.params['segmentation_slop_s']} s), so frames are "
                "skipped; a segmenter that re-stamps its output needs segmentation_slop_s above that difference"
            ))
        self._hand_over(frames)

    def _poll_inputs(self) -> None:
        """Frames whose depth turned out not to be published (they wait for it up to depth_timeout_s)."""
        with self._assembler_lock:
            frames = self.assembler.poll(self._arrival_s())
            self.stats.unmatched_images = self.assembler.dropped_images
        self._hand_over(frames)

    def _arrival_s(self) -> float:
        """The node's pacing clock (monotonic s): when an input arrives, for the frame assembler's depth wait,
        fusion's time between an object's fused meshes and the markers' snapshot period."""
        return time.monotonic()

    def _fusion_due(self) -> bool:
        """Whether this tracked frame goes to fusion: at most fusion_max_rate_hz frames a second on the pacing clock
        (recording time in replay); should that clock ever go back (neither the monotonic clock nor replay's recording
        time does), the frame goes at once and pacing goes on from it."""
        rate = float(self.params["fusion_max_rate_hz"])
        now = self._arrival_s()
        last = self._last_fusion_frame_s
        if rate > 0 and last is not None and last <= now < last + 1.0 / rate:
            return False
        self._last_fusion_frame_s = now
        return True

    def _submit_fusion(self, frame: FusionFrame) -> None:
        """Hand a tracked frame's views to the fusion thread (a newer frame replaces one still waiting)."""
        self.fusion_scheduler.submit(frame)

    def _hand_over(self, frames: list[FrameSet]) -> None:
        """The newest complete frame goes to the tracking thread."""
        if frames:
            self.stats.frames_dropped_sync += len(frames) - 1  # older complete frames behind a newer one
            with self._pending_cv:
                if self._pending is not None:
                    self.stats.frames_dropped_busy += 1
                self._pending = frames[-1]
                self._pending_cv.notify()

    def _on_time_jump(self, jump_ns: int, stamp_ns: int) -> None:
        """Image stamps jumped back (looping bag, driver restart, simulator reset): the assembler and the tracker
        reset themselves; TF of the old timeline must go too (see tf_listener)."""
        self.warn("time_jump", (
            f"time jumped back {jump_ns / 1e9:.3f} s (image stamp {stamp_ns / 1e9:.3f} s): frames waiting from before "
            "dropped, object timers carried over, transforms from before forgotten"
        ))
        if self.tf_lookup is not None:
            self.tf_lookup.time_jumped_back(stamp_ns)
        self._plane_stamp_ns = -(10**18)
        self._held_transform = None  # a target_frame transform of the old timeline must not stand in

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

    # -- tracking (every frame) ----------------------------------------------------------------------------------
    def _track_loop(self) -> None:
        while True:
            with self._pending_cv:
                while self._pending is None and not self._stop:
                    self._pending_cv.wait()
                if self._stop:
                    return
                frame_set, self._pending = self._pending, None
            self._process_guarded(frame_set)

    def _process_guarded(self, frame_set: FrameSet) -> None:
        """process(), counting and warning about whatever unexpected a frame raises: the node keeps running."""
        try:
            self.process(frame_set)
        except Exception as exc:
            self.stats.frames_invalid += 1
            self.warn(f"unexpected:{type(exc).__name__}", f"frame skipped: unexpected {type(exc).__name__}: {exc}")

    def process(self, frame_set: FrameSet) -> None:
        """Track the objects of one matched frame, queue reconstructions, publish poses."""
        header = frame_set.image.header
        started_s = time.monotonic()
        try:
            frame, prompts, masks, stable_ids = self._to_core(frame_set)
            if frame.depth_m is None and self.pipeline.backend.needs_depth:
                self.stats.frames_invalid += 1
                self.warn(
                    "no_depth",
                    f"no depth image: the '{self.pipeline.backend.name}' backend cannot reconstruct metrically without "
                    "registered depth; nothing is published until depth arrives",
                )
                return
            converted_s = time.monotonic()
        except InputError as exc:
            self.stats.frames_invalid += 1
            self.warn(f"input:{_NUMBERS.sub('#', str(exc))[:60]}", f"frame skipped: {exc}")
            return
        min_pixels = int(self.params["min_mask_pixels"])
        kept = []
        for prompt, mask, stable in zip(prompts, masks, stable_ids):
            pixels = 0 if mask is None else int(np.count_nonzero(mask))
            if pixels < min_pixels:
                self.warn(f"small:{prompt.object_id}", f"object {prompt.object_id}: mask has {pixels} pixels (< {min_pixels})")
            else:
                kept.append((prompt, mask, stable))
        prompts, masks, stable_ids = (list(column) for column in zip(*kept)) if kept else ([], [], [])
        observations = self.tracker.observe(frame.depth_m, frame.intrinsics, prompts, masks, stable_ids)
        output_frame = self._output_frame(header)  # target_frame: objects not seen stay put in it
        if output_frame is None:
            self.stats.frames_dropped_tf += 1
            return
        T_frame_cam, frame_id = output_frame
        with self._lock:
            if self._stopping:
                return
            update = self.tracker.update(frame_set.stamp_ns, observations, T_fixed_cam=T_frame_cam)
            tracked_s = time.monotonic()
            self._scene_frame = (T_frame_cam, frame_id, frame_set.stamp_ns)
            if update.to_reconstruct:
                self._submit(frame, update.to_reconstruct)
            if self.fusion_scheduler is not None and frame.depth_m is not None and update.seen and self._fusion_due():
                self._submit_fusion(FusionFrame(frame.stamp_ns, frame.depth_m, frame.rgb, frame.intrinsics, None, [
                    FusionView(t.track_id, t.mesh_version, t.reconstruction.mesh_obj, t.T_cam_obj, t.last_observation.mask,
                               t.fitness, t.rmse_m) for t in update.seen],
                    display_max_triangles=int(self.params["marker_max_triangles"]) if self._triangle_list_markers() else 0))
            out_header = Header(stamp=header.stamp, frame_id=frame_id)
            self._publish_poses(out_header, T_frame_cam, update.seen, update.kept)
            if update.removed:
                self._publish_removed(out_header, T_frame_cam, update.removed)
        self.stats.frames_out += 1
        done_s = time.monotonic()
        self.stats.record("convert", converted_s - started_s)
        self.stats.record("track", tracked_s - converted_s)
        self.stats.record("publish", done_s - tracked_s)
        self.stats.record("total", done_s - started_s)

    def _to_core(self, frame_set: FrameSet) -> tuple[RGBDFrame, list, list, list[bool]]:
        """(frame, prompts, masks, stable ids) of a matched frame; InputError names what is wrong with the frame.
        A problem of one object (a box off the image, a repeated id) is warned about and costs that object only;
        beyond max_objects the largest masks / best-scored detections are kept."""
        image = frame_set.image
        if not str(image.header.frame_id).strip():
            raise InputError(
                "colour image header.frame_id is empty: the objects' TF parent would be '' (tf2 rejects it); "
                "set the camera driver's frame id"
            )
        depth_m = conversions.depth_msg_to_metres(frame_set.depth) if frame_set.depth is not None else None
        frame = RGBDFrame(
            conversions.image_msg_to_rgb(image), depth_m, conversions.camera_info_to_intrinsics(frame_set.camera_info),
            image.header.frame_id, frame_set.stamp_ns,
        )
        frame.validate()
        if depth_m is not None:
            far, near = _DEPTH_UNIT_HINTS.get(conversions.raw_encoding(frame_set.depth).lower(), ("", ""))
            check_depth_range(depth_m, self._depth_range_m, "depth_range_m", far, near)
        undistorter = self._camera_undistorter(frame_set.camera_info, frame)
        if undistorter is not None:
            frame = replace(frame, rgb=undistorter.colour(frame.rgb),
                            depth_m=None if depth_m is None else undistorter.nearest(depth_m, np.nan, "depth image"))
        self._camera_frame_id = frame.frame_id
        height, width = frame.rgb.shape[:2]
        max_objects = int(self.params["max_objects"])
        if frame_set.masks is not None:
            labels = conversions.mask_msg_to_labels(frame_set.masks)
            if labels.shape != (height, width):
                raise InputError(f"mask image is {labels.shape[1]}x{labels.shape[0]} but the colour image is {width}x{height}")
            if undistorter is not None:
                labels = undistorter.nearest(labels, 0, "mask image")
            prompts, dropped = largest_label_prompts(labels, max_objects)
            if not prompts:
                raise InputError("mask image has no object pixel (all background)")
            self._warn_dropped("mask image", len(prompts), dropped, "largest")
            masks = [prompt.mask for prompt in prompts]
            stable_ids = [False] * len(prompts)
        else:
            prompts, problems = conversions.detections2d_to_prompts(frame_set.detections, width, height)
            if undistorter is not None:  # boxes of the distorted image -> boxes of the undistorted one
                prompts, outside = boxes_in_image(
                    [replace(prompt, bbox_xyxy=undistorter.box(prompt.bbox_xyxy)) for prompt in prompts], width, height)
                problems += outside
            for problem in problems:  # throttled per object and kind of problem, whatever its numbers
                head, _, reason = problem.partition(": ")
                self.warn(f"object:{head}:{_NUMBERS.sub('#', reason)[:40]}", problem)
            prompts, dropped = best_scored_prompts(prompts, max_objects)
            self._warn_dropped("detections", len(prompts), dropped, "best-scored")
            given_ids = {str(d.id) for d in frame_set.detections.detections if d.id}
            stable_ids = [prompt.object_id in given_ids for prompt in prompts]
            masks = self._box_masks(frame, prompts)
        return frame, prompts, masks, stable_ids

    def _camera_undistorter(self, camera_info: CameraInfo, frame: RGBDFrame) -> Undistorter | None:
        """The undistorter of the frame's camera (built once per camera, then reused); None when camera_info has no
        distortion or `undistort` is off."""
        if not self.params["undistort"]:
            return None
        distortion = conversions.camera_info_to_distortion(camera_info)
        if distortion is None:
            return None
        K, (height, width) = frame.intrinsics.K, frame.rgb.shape[:2]
        undistorter = self._undistorter
        if undistorter is None or not undistorter.matches(distortion, K, width, height):
            undistorter = self._undistorter = Undistorter(distortion, K, width, height)
        return undistorter

    def _warn_dropped(self, source: str, kept: int, dropped: int, which: str) -> None:
        if dropped:
            self.warn("max_objects", f"{source} has {kept + dropped} objects: kept the {kept} {which}, dropped {dropped} "
                                     f"(max_objects: {self.params['max_objects']})")

    def _box_masks(self, frame: RGBDFrame, prompts: list) -> list:
        """Fast depth-foreground masks inside the boxes, for tracking (reconstruction uses box_segmentation)."""
        if frame.depth_m is None:
            return [None] * len(prompts)
        if frame.stamp_ns - self._plane_stamp_ns > 1_000_000_000 or frame.stamp_ns < self._plane_stamp_ns:
            self._plane_cam = support_plane_around(frame.depth_m, frame.intrinsics, prompts)
            self._plane_stamp_ns = frame.stamp_ns
        return self.tracking_segmenter.segment(
            frame.rgb, frame.depth_m, frame.intrinsics, [p.bbox_xyxy for p in prompts], self._plane_cam
        )

    def _output_frame(self, header: Header) -> tuple[np.ndarray | None, str] | None:
        """(T_frame_cam, frame id) of the outputs at the image stamp: the camera's frame without target_frame, else
        target_frame through TF. When TF has no transform for the stamp, the last one found stands in if it is at most
        target_frame_hold_s away; otherwise None: the frame cannot be published (the outputs never change frame)."""
        target = self.params["target_frame"]
        if not target or target == header.frame_id:
            return None, header.frame_id
        stamp_ns = conversions.stamp_to_ns(header.stamp)
        try:
            T_target_cam = self.tf_lookup.lookup(target, header.frame_id, stamp_ns, float(self.params["target_frame_timeout_s"]))
        except TransformLookupError as exc:
            self.stats.tf_failures += 1
            held = self._held_transform
            if held is not None and held[1] == header.frame_id and held[2] == target \
                    and abs(stamp_ns - held[0]) <= float(self.params["target_frame_hold_s"]) * 1e9:
                self.warn("target_frame_held", f"no transform {header.frame_id} -> {target} at this stamp ({exc}): "
                          f"using the one {abs(stamp_ns - held[0]) / 1e6:.0f} ms away (target_frame_hold_s)")
                return held[3], target
            self.warn("target_frame", f"no transform {header.frame_id} -> {target} ({exc}): frame dropped; outputs "
                      f"stay in {target} and resume when TF has it (target_frame_hold_s bridges short gaps)")
            return None
        held = self._held_transform
        if held is None or held[0] <= stamp_ns:  # the newest transform found is the one held
            self._held_transform = (stamp_ns, header.frame_id, target, T_target_cam)
        return T_target_cam, target

    # -- reconstruction (scheduler thread) -----------------------------------------------------------------------
    def _submit(self, frame: RGBDFrame, tracks: list[Track]) -> None:
        """Queue at most max_reconstructions_per_frame of `tracks` (best-scored, then largest first); the others
        still need a reconstruction and are sent from the next frames."""
        tracks = sorted(tracks, key=lambda t: (-t.score, -int(np.count_nonzero(t.mask_small))))
        request = self.tracker.make_request(frame.stamp_ns, tracks[: int(self.params["max_reconstructions_per_frame"])])
        for replaced in self.scheduler.submit((request, frame)):
            self.tracker.cancel_request(replaced.payload[0])

    def _reconstruct(self, payload: tuple[ReconstructionRequest, RGBDFrame]) -> tuple[PipelineResult, _PreparedMeshes]:
        """On the scheduler's thread: the reconstruction and, off the tracking path and the node lock, each object's
        mesh converted for the outputs (see _prepare_meshes)."""
        request, frame = payload
        result = self.pipeline.process(frame, request.prompts)
        if self.grasp_planner is not None and result.objects:
            new_ids = {obj.object_id for obj in result.objects}
            with self._lock:  # the other tracked objects, where they are now, as obstacles
                others = [(t.reconstruction.mesh_obj, t.reconstruction.T_cam_obj) for t in self.tracker.tracks.values()
                          if t.reconstruction is not None and t.track_id not in new_ids]
            result.errors += plan_grasps(self.grasp_planner, result.objects, result.support_plane_cam, others)
        return result, self._prepare_meshes(result.objects)

    def _triangle_list_markers(self) -> bool:
        return self.params["marker_mesh"] == "triangle_list" or self.mesh_cache is None

    def _prepare_meshes(self, objects: list[ObjectReconstruction],
                        display_meshes: dict[str, trimesh.Trimesh] | None = None) -> _PreparedMeshes:
        """The collision ADD's mesh message (decimated to collision_max_triangles; made also while collision outputs are
        off, since they can be switched on at runtime) and the TRIANGLE_LIST marker content of each object (of its
        mesh in `display_meshes` where given: a decimated copy made elsewhere, else of its mesh, decimated here when
        over marker_max_triangles). An object whose mesh cannot be converted gets nothing here: the output that needs
        it converts it then and reports the problem there."""
        prepared = _PreparedMeshes()
        max_triangles = int(self.params["collision_max_triangles"])
        markers = self._triangle_list_markers()
        for obj in objects:
            try:
                mesh = simplified_mesh(obj.mesh_obj, max_triangles) if max_triangles else obj.mesh_obj
                prepared.collision_shapes[obj.object_id] = conversions.make_shape_mesh(obj.object_id, mesh)
                if markers and obj.mesh_obj is not None and len(obj.mesh_obj.faces):
                    shown = (display_meshes or {}).get(obj.object_id) or obj.mesh_obj
                    prepared.triangle_lists[obj.object_id] = conversions.make_triangle_list(
                        shown, int(self.params["marker_max_triangles"]))
            except InputError:
                continue
        return prepared

    def _on_reconstructed(self, job: Job, result: Any, error: BaseException | None, elapsed_s: float) -> None:
        """Install the new meshes and publish them. The node lock is held only to update the tracker and send what is
        cheap (poses, collision objects from the prepared meshes); mesh files are written without it, and the
        markers, built from the prepared triangle lists, are sent after them."""
        request, frame = job.payload
        if self._stopping:  # the node is going down: nothing is published any more
            return
        # Requested before time jumped back: published at the latest frame's stamp with the current poses (its own
        # stamp is from the old timeline, which TF listeners have forgotten).
        exact_stamp = request.epoch == self.tracker.time_epoch or self.tracker.newest_stamp_ns is None
        stamp_ns = request.stamp_ns if exact_stamp else self.tracker.newest_stamp_ns
        self.stats.record("reconstruction", elapsed_s)
        prepared = _PreparedMeshes()
        if error is not None:
            result_objects, errors = [], [f"reconstruction failed: {type(error).__name__}: {error}"]
        else:
            result, prepared = result
            result_objects, errors = result.objects, result.errors
        for text in errors:
            self.warn(f"object:{text[:40]}", text)
        if any(not obj.metric_scale for obj in result_objects):
            self.warn("not_metric", "no registered depth: poses and sizes are up to an unknown scale (not metric)")
        done_ids = {obj.object_id for obj in result_objects}
        failed = [prompt.object_id for prompt in request.prompts if prompt.object_id not in done_ids]
        self.stats.count_reconstructed(result_objects)
        self.stats.reconstruction_failures += len(failed)
        header = Header(stamp=conversions.ns_to_stamp(stamp_ns), frame_id=frame.frame_id)
        output_frame = self._output_frame(header)  # None: no target_frame transform; the next tracked frame publishes
        T_frame_cam, frame_id = output_frame if output_frame is not None else (None, "")
        out_header = Header(stamp=header.stamp, frame_id=frame_id)
        with self._lock:
            if self._stopping:
                return
            updated = self.tracker.apply_reconstruction(request, result_objects, failed)
            if not updated:
                return
            # Publish the reconstruction at its own frame's stamp, where its pose is exact.
            exact = [replace(t.reconstruction, T_cam_obj=t.T_cam_obj_reconstructed) if exact_stamp else t.reconstruction
                     for t in updated]
            for track in updated:  # what was converted from the previous mesh must not outlive it
                for kept, new in ((self._collision_shapes, prepared.collision_shapes),
                                  (self._marker_meshes, prepared.triangle_lists)):
                    kept.pop(track.track_id, None)
                    if track.track_id in new:
                        kept[track.track_id] = new[track.track_id]
            if output_frame is not None:
                self.detections_pub.publish(conversions.make_detection3d_array(out_header, exact, T_frame_cam=T_frame_cam))
                if self.params["publish_tf"]:
                    self.tf_broadcaster.sendTransform(
                        conversions.make_transforms(out_header, exact, self.params["frame_prefix"], T_frame_cam=T_frame_cam)
                    )
                self._publish_collisions(out_header, T_frame_cam, exact, force_add=True)
            new_meshes = [(t.track_id, t.mesh_version, t.reconstruction.mesh_obj) for t in updated]
        written = {}
        if self.mesh_cache is not None:  # file I/O: the tracking thread goes on meanwhile
            for track_id, version, mesh in new_meshes:
                try:
                    written[track_id] = (version, self.mesh_cache.write(track_id, version, mesh))
                except (OSError, InputError) as exc:
                    self.warn("mesh_cache", f"cannot write mesh files to {self.mesh_cache.directory}: {exc}")
        with self._lock:
            if self._stopping:
                return
            for track_id, (version, files) in written.items():
                track = self.tracker.tracks.get(track_id)
                if track is None:  # removed while its files were written: they go too
                    self.mesh_cache.remove(track_id)
                elif track.mesh_version == version:
                    self._mesh_files[track_id] = files
            self._marker_updates.changed(track_id for track_id, _, _ in new_meshes)
            if output_frame is not None:  # else sent with the next frame that has an output frame
                self._publish_markers(out_header, T_frame_cam, paced=False)

    # -- fusion (fusion thread) ----------------------------------------------------------------------------------
    def _fuse(self, frame: FusionFrame) -> list[tuple[Any, _PreparedMeshes]]:
        """On the fusion thread: the fusion process integrates the frame's views; each fused mesh due comes back with
        its tracking model and its output messages, made here, off the node's lock."""
        with self._lock:
            reconstructions = {t.track_id: t.reconstruction for t in self.tracker.tracks.values()}
        due = []
        for fused in self.fused_models.integrate(frame, self._arrival_s(), set(reconstructions)):
            reconstruction = reconstructions.get(fused.track_id)
            if reconstruction is None:
                continue
            try:
                model = fused.tracking_model or ObjectModel.from_mesh(fused.mesh_obj)  # made in the fusion process
            except ValueError as exc:  # one object's untrackable mesh costs that object's swap only
                self.warn(f"fused_model:{fused.track_id}", f"object {fused.track_id}: its fused mesh cannot be tracked "
                          f"({exc}); its current mesh is kept")
                continue
            shown = {} if fused.display_mesh_obj is None else {fused.track_id: fused.display_mesh_obj}
            due.append((fused, model, self._prepare_meshes([replace(reconstruction, mesh_obj=fused.mesh_obj)], shown)))
        return due

    def _on_fused(self, job: Job, result: Any, error: BaseException | None, elapsed_s: float) -> None:
        """Install the fused meshes in the tracker: the next tracked frame sends the collision ADD and the markers;
        the mesh files are written here."""
        if self._stopping:
            return
        if error is not None:
            self.warn(f"fusion:{type(error).__name__}", f"fusion of a frame failed: {type(error).__name__}: {error}")
            return
        new_meshes = []
        with self._lock:
            if self._stopping:
                return
            for fused, model, prepared in result:
                if fused.grasp_error:
                    self.warn(f"fusion_grasps:{fused.grasp_error[:40]}", f"object {fused.track_id}: grasps of its fused "
                              f"mesh: {fused.grasp_error} (the grasps of its previous mesh are kept)")
                track = self.tracker.install_mesh(fused.track_id, fused.mesh_obj, fused.mesh_version, model, fused.grasps_obj)
                if track is None:
                    continue
                self.fused_models.installed(track.track_id, track.mesh_version)
                self.stats.fused_meshes += 1
                for kept, new in ((self._collision_shapes, prepared.collision_shapes),
                                  (self._marker_meshes, prepared.triangle_lists)):
                    kept.pop(track.track_id, None)
                    if track.track_id in new:
                        kept[track.track_id] = new[track.track_id]
                new_meshes.append((track.track_id, track.mesh_version, fused.mesh_obj))
                if self.params["marker_mesh"] != "mesh_resource" or self.mesh_cache is None:
                    self._marker_updates.changed([track.track_id])  # else once its file is written, below
        if self.mesh_cache is None or not new_meshes:
            return
        for track_id, version, mesh in new_meshes:
            try:
                files = self.mesh_cache.write(track_id, version, mesh)
            except (OSError, InputError) as exc:
                self.warn("mesh_cache", f"cannot write mesh files to {self.mesh_cache.directory}: {exc}")
                continue
            with self._lock:
                track = self.tracker.tracks.get(track_id)
                if track is not None and track.mesh_version == version:
                    self._mesh_files[track_id] = files
                    if self.params["marker_mesh"] == "mesh_resource":
                        self._marker_updates.changed([track_id])  # the marker names the new file

    # -- outputs -------------------------------------------------------------------------------------------------
    def _publish_poses(self, header: Header, T_frame_cam: np.ndarray | None, seen: list[Track], kept: list[Track]) -> None:
        seen_objects = [t.reconstruction for t in seen]
        self.detections_pub.publish(conversions.make_detection3d_array(header, seen_objects, T_frame_cam=T_frame_cam))
        kept_objects = [t.reconstruction for t in kept]
        if self.params["publish_tf"] and kept_objects:
            self.tf_broadcaster.sendTransform(conversions.make_transforms(header, kept_objects, self.params["frame_prefix"], T_frame_cam=T_frame_cam))
        self._publish_collisions(header, T_frame_cam, seen_objects, force_add=False)
        self._publish_grasps(header, T_frame_cam, kept_objects)
        if not self.params["publish_tf"] and kept_objects:
            self._marker_updates.resend_all()  # markers carry the pose when there is no object TF frame
        self._publish_markers(header, T_frame_cam)

    def _publish_grasps(self, header: Header, T_frame_cam: np.ndarray | None, objects: list) -> None:
        """The grasps of `objects` (object frame, planned with each mesh) at their current poses, best first."""
        if self.grasp_pubs is None:
            return
        poses_pub, markers_pub, grasps_pub = self.grasp_pubs
        outputs = {name for name, pub in (("poses", poses_pub), ("markers", markers_pub), ("grasps", grasps_pub))
                   if pub is not None and pub.get_subscription_count() > 0}
        if not outputs:  # nobody listens: nothing built (several ms a frame at 10 objects)
            return
        messages = self._grasp_messages.build(header, objects, T_frame_cam=T_frame_cam, outputs=outputs)
        for message, pub in ((messages.poses, poses_pub), (messages.markers, markers_pub), (messages.grasps, grasps_pub)):
            if message is not None:
                pub.publish(message)

    def _publish_collisions(self, header: Header, T_frame_cam: np.ndarray | None, objects: list, force_add: bool) -> None:
        messages = []
        for obj in objects:
            state = self._published.setdefault(obj.object_id, _Published())
            T_frame_obj = obj.T_cam_obj if T_frame_cam is None else T_frame_cam @ obj.T_cam_obj
            track = self.tracker.tracks.get(obj.object_id)
            version = track.mesh_version if track is not None else 0
            if force_add or state.mesh_version != version:
                operation = "add"
            elif state.T_frame_obj is not None and state.frame_id == header.frame_id and not _moved(
                state.T_frame_obj, T_frame_obj, float(self.params["collision_min_motion_m"])
            ):
                continue
            else:
                operation = "move"
            state.mesh_version, state.T_frame_obj, state.frame_id = version, T_frame_obj, header.frame_id
            messages.append(conversions.make_collision_object(
                header, obj.object_id, operation, obj, T_frame_cam=T_frame_cam,
                shape_mesh=self._collision_shapes.get(obj.object_id),
            ))
        self._send_collisions(messages)

    def _send_collisions(self, messages: list) -> None:
        if not messages:
            return
        if self.params["publish_collision_objects"]:
            for message in messages:
                self.collision_pub.publish(message)
        if self.params["apply_planning_scene"]:
            self.planning_scene_pub.publish(conversions.make_planning_scene_diff(messages))

    def _publish_markers(self, header: Header, T_frame_cam: np.ndarray | None, paced: bool = True) -> None:
        """The MarkerArray due now (see MarkerUpdates): the mesh (and label) of the objects whose mesh changed, or of
        every known object (a snapshot for viewers that join later), frame-locked to each object's TF frame when TF is
        published (so it is sent again only when something changes)."""
        reconstructions = {t.track_id: t.reconstruction for t in self.tracker.tracks.values() if t.reconstruction is not None}
        send = self._marker_updates.due(self._arrival_s(), reconstructions.keys(), self.markers_pub.get_subscription_count(),
                                        paced)
        if send is None:
            return
        started_s = time.perf_counter()
        objects = [obj for track_id, obj in reconstructions.items() if send.full or track_id in send.object_ids]
        uris = None
        if self.params["marker_mesh"] == "mesh_resource" and self.mesh_cache is not None:
            uris = {oid: self.mesh_cache.uri(next(iter(files.values()))) for oid, files in self._mesh_files.items()}
        markers = conversions.make_marker_array(
            header, objects, self._marker_ids, text=bool(self.params["marker_labels"]),
            max_triangles=int(self.params["marker_max_triangles"]), T_frame_cam=T_frame_cam,
            frame_locked_prefix=self.params["frame_prefix"] if self.params["publish_tf"] else None, mesh_uris=uris,
            triangle_lists=self._marker_meshes,
        )
        self.markers_pub.publish(markers)
        self.stats.marker_send_s += time.perf_counter() - started_s
        if send.full:
            self.stats.marker_arrays_whole += 1
        else:
            self.stats.marker_arrays_partial += 1

    def _publish_removed(self, header: Header, T_frame_cam: np.ndarray | None, tracks: list[Track]) -> None:
        """Delete the markers, REMOVE from the planning scene and forget the files of objects that are gone."""
        ids = [t.track_id for t in tracks]
        marker_ids = [self._marker_ids.pop(i) for i in ids if i in self._marker_ids]
        for track_id in ids:
            self._mesh_files.pop(track_id, None)
            self._collision_shapes.pop(track_id, None)
            self._marker_meshes.pop(track_id, None)
        self._marker_updates.forget(ids)
        if marker_ids:  # live viewers drop them now; the array latched for later viewers is no longer complete
            self.markers_pub.publish(conversions.make_delete_markers(header, marker_ids))
            self._marker_updates.partial_sent()
            self.stats.marker_arrays_partial += 1
        removals = [conversions.make_collision_object(header, i, "remove") for i in ids if self._published.pop(i, None) is not None]
        self._send_collisions(removals)
        if self.mesh_cache is not None:
            for track_id in ids:
                self.mesh_cache.remove(track_id)
        self.stats.objects_removed += len(ids)

    # -- services ------------------------------------------------------------------------------------------------
    def _on_reconstruct(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            count = self.tracker.request_reconstruction(None, "requested")
        response.success = count > 0
        response.message = f"{count} object(s) will be reconstructed from the next frame(s)" if count else "no object to reconstruct"
        return response

    def _on_clear(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            tracks = self.tracker.clear()
            # REMOVE and marker DELETE carry the frame the objects were published in (they need no pose).
            header = Header(stamp=self.get_clock().now().to_msg(),
                            frame_id=self.params["target_frame"] or self._camera_frame_id or "camera")
            self._publish_removed(header, None, tracks)
        response.success = True
        response.message = f"forgot {len(tracks)} object(s)"
        return response

    def _on_save_scene(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            tracks = [t for t in self.tracker.tracks.values() if t.reconstruction is not None]
            objects = [t.reconstruction for t in tracks]
            stamp_ns = max((t.pose_ns for t in tracks), default=0)
            frame_id = self._camera_frame_id or "camera"
            if self._scene_frame is not None:  # poses as of the latest tracked frame, in its output frame
                T_frame_cam, frame_id, stamp_ns = self._scene_frame
                if T_frame_cam is not None:
                    objects = [replace(obj, T_cam_obj=T_frame_cam @ obj.T_cam_obj) for obj in objects]
        if not objects:
            response.success, response.message = False, "no object with a mesh to save: nothing written"
            return response
        root = Path(self.params["scene_dir"] or Path.home() / ".ros" / "sam3d_ros" / "scenes").expanduser()
        out_dir = root / f"scene_{stamp_ns}"
        try:
            path = write_results(out_dir, frame_id, objects, stamp_ns=stamp_ns)
        except OSError as exc:
            response.success, response.message = False, f"cannot write the scene to {out_dir}: {exc}"
            return response
        response.success = True
        response.message = f"{len(objects)} object(s) written to {path.parent}"
        return response

    # -- diagnostics ---------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._lock:
            tracks = list(self.tracker.tracks.values())
        fusion = None
        if self.fused_models is not None:
            fusion = {"bytes": self.fused_models.bytes_by_object, "views integrated": self.fused_models.views_integrated,
                      "views skipped": self.fused_models.views_skipped, "last skip": self.fused_models.last_skip_reason}
        self.diagnostics_pub.publish(conversions.make_diagnostic_array(
            self.get_clock().now().to_msg(),
            self.stats.statuses(self.get_fully_qualified_name(), self.pipeline.backend.name, self.scheduler, tracks, fusion)
        ))

    def destroy_node(self) -> None:
        """Stop and join the tracking and reconstruction threads, close the backend, then destroy the node; safe when
        __init__ failed part-way (rclpy destroys every node of a context when it shuts down)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:
                self._stopping = True  # from here on no thread publishes
        pending_cv = getattr(self, "_pending_cv", None)
        if pending_cv is not None:
            with pending_cv:
                self._stop = True
                pending_cv.notify()
            self._worker.join(timeout=5.0)
        # The backend first: a request in flight to a SAM 3D worker is abandoned, so the reconstruction thread ends
        # soon and is joined before the context goes.
        pipeline = getattr(self, "pipeline", None)
        close = getattr(getattr(pipeline, "backend", None), "close", None)
        if close is not None:
            close()
        for name in ("scheduler", "fused_models", "fusion_scheduler"):  # the fusion process first: its thread waits on it
            worker = getattr(self, name, None)
            if worker is not None:
                worker.close()
        super().destroy_node()

def _create_grasp_array_publisher(node: Node) -> Any:
    """~/grasps (sam3d_ros_msgs/ObjectGraspArray), or None with a warning where that package is not built."""
    try:
        from sam3d_ros_msgs.msg import ObjectGraspArray
    except ImportError:
        node.get_logger().warning("sam3d_ros_msgs is not built (README \"On a robot\"): ~/grasps is off; "
                                  "~/grasp_poses and ~/grasp_markers are published")
        return None
    return node.create_publisher(ObjectGraspArray, "~/grasps", 10)


def _moved(T_a: np.ndarray, T_b: np.ndarray, min_motion_m: float, min_rotation_rad: float = np.radians(2.0)) -> bool:
    return bool(
        np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]) > min_motion_m
        or rotation_angle_between(T_a[:3, :3], T_b[:3, :3]) > min_rotation_rad
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (ros2 launch's second signal, systemd, docker stop) ends the node like Ctrl-C


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run sam3d_ros perception_node`. Ctrl-C and SIGTERM end the node in order: its threads
    are stopped and joined, then the context shuts down (rclpy's own signal handler would shut the context down
    first, under a running reconstruction). Once the node is up, a signal only asks the spin loop to stop: a
    KeyboardInterrupt raised wherever the main thread happens to be (inside a callback, between taking a lock and
    its `try`) could leave a lock held that the way out then waits on."""
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _interrupt)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>`: every thread's Python stack to stderr (a node that hangs)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        node = PerceptionNode()
    except (ValueError, InputError, OSError) as exc:  # bad parameters, unwritable mesh cache: one line, exit 2
        print(f"perception_node: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0

if __name__ == "__main__":
    sys.exit(main())
