"""ROS messages <-> the package's numpy types (the one place these conversions live).

Only message packages are imported here, never rclpy, so everything works without a ROS graph.
Bad input raises `InputError` with a one-line message naming the problem.
"""
from __future__ import annotations

import array as pyarray
import gc
import re
import sys
from typing import Any, Iterable

import numpy as np
import trimesh
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, TransformStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import Detection2DArray, Detection3D, Detection3DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker, MarkerArray

from sam3d_ros.camera import CameraIntrinsics
from sam3d_ros.transforms import pose_from_transform, transform_points
from sam3d_ros.types import InputError, ObjectPrompt, ObjectReconstruction

# encoding -> (native dtype, channels); 8UCn are OpenCV's plain 8-bit types (8UC3/8UC4 are read as BGR/BGRA colour).
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "8UC4": (np.dtype(np.uint8), 4),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32SC1": (np.dtype(np.int32), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
_ENCODINGS_LOWER = {name.lower(): name for name in _ENCODINGS}

_RGB_ORDER = {  # encoding -> channel indices giving R, G, B
    "rgb8": (0, 1, 2),
    "rgba8": (0, 1, 2),
    "bgr8": (2, 1, 0),
    "bgra8": (2, 1, 0),
    "8UC3": (2, 1, 0),
    "8UC4": (2, 1, 0),
}
_MONO8 = ("mono8", "8UC1")
_DEPTH_MM = ("16UC1", "mono16")
_LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32SC1")

_NS_PER_S = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _canonical_encoding(encoding: str) -> str:
    name = _ENCODINGS_LOWER.get(str(encoding).lower())
    if name is None:
        raise InputError(f"unsupported image encoding '{encoding}' (supported: {', '.join(_ENCODINGS)})")
    return name


def _copy_time(stamp: Any) -> Time:
    return Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec))


def _copy_header(header: Header | None) -> Header:
    if header is None:
        return Header()
    return Header(stamp=_copy_time(header.stamp), frame_id=str(header.frame_id))


def _data_bytes(data: Any) -> np.ndarray:
    """Message `data` (array.array, bytes, list, ...) as a flat uint8 array, without copying when possible."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


# ----------------------------------------------------------------------------------------------- images


def _pixel_view(msg: Image) -> tuple[str, np.ndarray]:
    """Canonical encoding and a read-only (H, W, C) view of the message bytes in their wire byte order."""
    encoding = _canonical_encoding(msg.encoding)
    dtype, channels = _ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise InputError(f"{encoding} image is empty ({width}x{height})")
    pixel_bytes = channels * dtype.itemsize
    if step < width * pixel_bytes:
        raise InputError(
            f"{encoding} image step {step} is smaller than width*bytes per pixel = {width}*{pixel_bytes} = {width * pixel_bytes}"
        )
    data = _data_bytes(msg.data)
    if data.size != height * step:
        raise InputError(
            f"{encoding} image data has {data.size} bytes but height*step = {height}*{step} = {height * step}"
        )
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    view = np.ndarray((height, width, channels), dtype=wire, buffer=data, strides=(step, pixel_bytes, dtype.itemsize))
    return encoding, view


def image_msg_to_array(msg: Image) -> np.ndarray:
    """Pixels of an Image as a writable native-endian (H, W) or (H, W, C) array; honours `step` and `is_bigendian`."""
    encoding, view = _pixel_view(msg)
    array = view.astype(_ENCODINGS[encoding][0], copy=True)  # native byte order, C-contiguous, writable
    return array.reshape(array.shape[:2]) if array.shape[2] == 1 else array


def array_to_image_msg(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Image message of an (H, W) or (H, W, C) array; step = width * bytes per pixel.

    The dtype must match the encoding; a non-native byte order in the dtype (e.g. '>u2') is kept and flagged in
    `is_bigendian`.
    """
    encoding = _canonical_encoding(encoding)
    dtype, channels = _ENCODINGS[encoding]
    array = np.asarray(array)
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        want = "HxW" if channels == 1 else f"HxWx{channels}"
        raise InputError(f"{encoding} image needs a {want} array, got shape {array.shape}")
    if array.dtype.newbyteorder("=") != dtype:
        raise InputError(f"{encoding} image needs dtype {dtype}, got {array.dtype}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise InputError(f"{encoding} image is empty ({width}x{height})")
    big = dtype.itemsize > 1 and (
        array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big")
    )
    msg = Image()
    msg.header = _copy_header(header)
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = int(big)
    msg.step = int(width * channels * dtype.itemsize)
    data = pyarray.array("B")
    data.frombytes(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    msg.data = data  # an array.array('B') is taken as is, without per-element checks
    return msg


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a rgb8/bgr8/rgba8/bgra8/mono8 image (mono replicated; 8UC3/8UC4 read as BGR/BGRA)."""
    encoding = _canonical_encoding(msg.encoding)
    if encoding not in _RGB_ORDER and encoding not in _MONO8:
        raise InputError(
            f"colour image encoding '{encoding}' is not supported (use rgb8, bgr8, rgba8, bgra8 or mono8)"
        )
    _, view = _pixel_view(msg)
    rgb = np.empty(view.shape[:2] + (3,), dtype=np.uint8)
    for channel, source in enumerate(_RGB_ORDER.get(encoding, (0, 0, 0))):
        rgb[:, :, channel] = view[:, :, source]  # per-channel copies are ~10x faster than fancy indexing
    return rgb


def depth_msg_to_metres(msg: Image) -> np.ndarray:
    """(H, W) float32 depth in metres, NaN where invalid (REP 118: 16UC1/mono16 millimetres with 0 invalid; 32FC1 metres)."""
    encoding = _canonical_encoding(msg.encoding)
    if encoding in _DEPTH_MM:
        millimetres = image_msg_to_array(msg)
        metres = millimetres.astype(np.float32) / np.float32(1000.0)
        metres[millimetres == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = image_msg_to_array(msg)
        with np.errstate(invalid="ignore"):
            metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
        return metres
    raise InputError(f"depth image encoding '{encoding}' is not supported (use 16UC1, mono16 or 32FC1)")


def mask_msg_to_labels(msg: Image) -> np.ndarray:
    """(H, W) int64 label image of a mono8/8UC1, mono16/16UC1 or 32SC1 mask (0 usually means background)."""
    encoding = _canonical_encoding(msg.encoding)
    if encoding not in _LABEL_ENCODINGS:
        raise InputError(f"mask image encoding '{encoding}' is not supported (use {', '.join(_LABEL_ENCODINGS)})")
    labels = image_msg_to_array(msg).astype(np.int64)
    if labels.min() < 0:
        raise InputError(f"mask image has negative labels (min {int(labels.min())})")
    return labels


# ---------------------------------------------------------------------------------------------- cameras


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """Pinhole intrinsics from CameraInfo's K (row-major 3x3), width and height."""
    width, height = int(msg.width), int(msg.height)
    if width == 0 or height == 0:
        raise InputError(f"camera_info size {width}x{height} is empty")
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise InputError(f"camera_info K has {k.size} values, expected 9")
    intrinsics = CameraIntrinsics.from_K(k.reshape(3, 3), width, height)
    try:
        intrinsics.validate()
    except ValueError as exc:
        raise InputError(f"camera_info K is invalid (uncalibrated camera?): {exc}") from exc
    return intrinsics


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Header | None = None) -> CameraInfo:
    """CameraInfo of pinhole intrinsics: K, P = [K | 0], R = I, plumb_bob with zero distortion."""
    fx, fy, cx, cy = (float(v) for v in (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy))
    msg = CameraInfo()
    msg.header = _copy_header(header)
    msg.width, msg.height = int(intrinsics.width), int(intrinsics.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


# ------------------------------------------------------------------------------------------- detections


def detections2d_to_prompts(msg: Detection2DArray, width: int, height: int) -> list[ObjectPrompt]:
    """Box prompts of 2D detections, clipped to [0, width] x [0, height] (theta is ignored: boxes are axis-aligned).

    object_id is the detection's id, or its 1-based index when the id is empty; label and score come from the
    best-scoring hypothesis (empty label and score 1.0 without hypotheses).
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"image size {width}x{height} for the detections is empty")
    prompts: list[ObjectPrompt] = []
    seen: set[str] = set()
    for index, detection in enumerate(msg.detections):
        object_id = str(detection.id) if detection.id else str(index + 1)
        if object_id in seen:
            raise InputError(f"detection {index} repeats object id '{object_id}'")
        seen.add(object_id)
        bbox = detection.bbox
        cx, cy = float(bbox.center.position.x), float(bbox.center.position.y)
        sx, sy = float(bbox.size_x), float(bbox.size_y)
        if not np.isfinite([cx, cy, sx, sy]).all() or sx <= 0 or sy <= 0:
            raise InputError(f"detection '{object_id}' has an invalid box: centre ({cx}, {cy}), size {sx}x{sy}")
        x_min, x_max = max(0.0, cx - sx / 2), min(float(width), cx + sx / 2)
        y_min, y_max = max(0.0, cy - sy / 2), min(float(height), cy + sy / 2)
        if x_max <= x_min or y_max <= y_min:
            raise InputError(f"detection '{object_id}' box lies outside the {width}x{height} image")
        label, score = "", 1.0
        if len(detection.results) > 0:
            best = max(detection.results, key=lambda result: float(result.hypothesis.score))
            label, score = str(best.hypothesis.class_id), float(best.hypothesis.score)
        prompts.append(ObjectPrompt(object_id=object_id, label=label, score=score, bbox_xyxy=(x_min, y_min, x_max, y_max)))
    return prompts


# ------------------------------------------------------------------------------------------------- time


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces Time (anything with sec and nanosec)."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nanosec < _NS_PER_S:
        raise InputError(f"stamp nanosec {nanosec} is outside [0, 1e9)")
    return sec * _NS_PER_S + nanosec


def ns_to_stamp(ns: int) -> Time:
    """builtin_interfaces Time of a nanosecond count."""
    sec, nanosec = divmod(int(ns), _NS_PER_S)
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise InputError(f"time {ns} ns does not fit a ROS stamp (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


# ---------------------------------------------------------------------------------------------- outputs


def _object_pose(obj: ObjectReconstruction) -> Pose:
    T = np.asarray(obj.T_cam_obj, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise InputError(f"object '{obj.object_id}' T_cam_obj must be a finite 4x4 matrix, got shape {T.shape}")
    position, q = pose_from_transform(T)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def _object_size(obj: ObjectReconstruction) -> np.ndarray:
    size = np.asarray(obj.size_obj, dtype=np.float64).reshape(-1)
    if size.shape != (3,) or not np.isfinite(size).all():
        raise InputError(f"object '{obj.object_id}' size_obj must be 3 finite values, got {obj.size_obj!r}")
    return size


def make_detection3d_array(header: Header, objects: Iterable[ObjectReconstruction]) -> Detection3DArray:
    """Detection3DArray with one Detection3D per object: bbox = pose of T_cam_obj and size_obj, one hypothesis.

    An object whose scale is not metric (no depth) is flagged by `results[0].pose.covariance[0] = -1` (the ROS
    convention for "no estimate"): its position and size share one unknown factor."""
    array = Detection3DArray()
    array.header = _copy_header(header)
    for obj in objects:
        pose = _object_pose(obj)
        size = _object_size(obj)
        detection = Detection3D()
        detection.header = _copy_header(header)
        detection.id = str(obj.object_id)
        detection.bbox.center = pose
        detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = (float(v) for v in size)
        result = ObjectHypothesisWithPose()
        result.hypothesis.class_id = str(obj.label)
        result.hypothesis.score = float(obj.score)
        result.pose.pose = _object_pose(obj)
        if not obj.metric_scale:
            covariance = list(result.pose.covariance)
            covariance[0] = -1.0
            result.pose.covariance = covariance
        detection.results = [result]
        array.detections.append(detection)
    return array


def frame_name(prefix: str, object_id: str) -> str:
    """TF frame of an object: prefix + object_id with every character outside [A-Za-z0-9_] replaced by '_'."""
    name = str(prefix) + re.sub(r"[^A-Za-z0-9_]", "_", str(object_id))
    if not name:
        raise InputError("object frame name is empty (empty prefix and object id)")
    return name


def make_transforms(
    header: Header, objects: Iterable[ObjectReconstruction], child_frame_prefix: str
) -> list[TransformStamped]:
    """TransformStamped header.frame_id -> frame_name(prefix, object_id) per object, stamped header.stamp."""
    transforms = []
    for obj in objects:
        pose = _object_pose(obj)
        tf = TransformStamped()
        tf.header = _copy_header(header)
        tf.child_frame_id = frame_name(child_frame_prefix, obj.object_id)
        p, q = pose.position, pose.orientation
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = p.x, p.y, p.z
        tf.transform.rotation = q
        transforms.append(tf)
    return transforms


# Fast construction of many Points/ColorRGBAs: the generated setters and keyword handling cost ~3 us per object,
# so fill the slots directly when the generated class has the expected layout (else use the public constructor).
_POINT_FAST = {"_x", "_y", "_z", "_check_fields"} <= set(getattr(Point, "__slots__", ()))
_COLOR_FAST = {"_r", "_g", "_b", "_a", "_check_fields"} <= set(getattr(ColorRGBA, "__slots__", ()))


def _points(xyz: list[list[float]]) -> list[Point]:
    if not _POINT_FAST:
        return [Point(x=x, y=y, z=z) for x, y, z in xyz]
    new, check = Point.__new__, Point()._check_fields

    def make(x: float, y: float, z: float) -> Point:
        point = new(Point)
        point._check_fields, point._x, point._y, point._z = check, x, y, z
        return point

    return [make(x, y, z) for x, y, z in xyz]


def _colors(rgba: list[list[float]]) -> list[ColorRGBA]:
    if not _COLOR_FAST:
        return [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in rgba]
    new, check = ColorRGBA.__new__, ColorRGBA()._check_fields

    def make(r: float, g: float, b: float, a: float) -> ColorRGBA:
        color = new(ColorRGBA)
        color._check_fields, color._r, color._g, color._b, color._a = check, r, g, b, a
        return color

    return [make(r, g, b, a) for r, g, b, a in rgba]


def _vertex_colors_u8(mesh: trimesh.Trimesh) -> np.ndarray:
    """(V, 4) uint8 RGBA of the mesh vertices (opaque grey when the mesh has no usable colours)."""
    count = len(mesh.vertices)
    try:
        visual = mesh.visual
        if getattr(visual, "kind", None) == "texture":
            visual = visual.to_color()
        colors = np.asarray(visual.vertex_colors)
    except Exception:  # noqa: BLE001 - any broken visual falls back to grey
        colors = np.empty((0, 4))
    if colors.shape != (count, 4):
        return np.tile(np.array([153, 153, 153, 255], dtype=np.uint8), (count, 1))
    return np.clip(colors, 0, 255).astype(np.uint8)


def _triangle_list(mesh: trimesh.Trimesh, max_triangles: int | None) -> tuple[list[Point], list[ColorRGBA]]:
    """Triangle corners (3 per face) and their vertex colours / 255; evenly strided faces when over max_triangles.

    One Point per used vertex and one ColorRGBA per distinct colour are built and shared by the corners that use
    them (the serializer only reads them), which keeps a 5000-face mesh well under 50 ms.
    """
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if max_triangles is not None and len(faces) > max_triangles:
        faces = faces[np.linspace(0, len(faces), int(max_triangles), endpoint=False).astype(np.int64)]
    corner_vertices = faces.reshape(-1)
    used, point_index = np.unique(corner_vertices, return_inverse=True)
    xyz = np.asarray(mesh.vertices, dtype=np.float64)[used].tolist()
    corner_rgba = np.ascontiguousarray(_vertex_colors_u8(mesh)[corner_vertices])
    packed, color_index = np.unique(corner_rgba.view(np.uint32).reshape(-1), return_inverse=True)
    rgba = (packed.view(np.uint8).reshape(-1, 4) / np.float32(255.0)).astype(np.float32).tolist()  # float32 exact
    point_index, color_index = point_index.reshape(-1).tolist(), color_index.reshape(-1).tolist()
    # Tens of thousands of new objects would trigger repeated cyclic-GC passes over everything alive; they hold
    # no cycles, so pause the collector while building them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        vertex_points, colors = _points(xyz), _colors(rgba)
        return [vertex_points[i] for i in point_index], [colors[i] for i in color_index]
    finally:
        if gc_was_enabled:
            gc.enable()


def _marker_id(marker_ids: dict[str, int], object_id: str) -> int:
    if object_id not in marker_ids:
        marker_ids[object_id] = max(marker_ids.values(), default=-1) + 1
    return marker_ids[object_id]


def _new_marker(header: Header, namespace: str, marker_id: int, marker_type: int, action: int) -> Marker:
    marker = Marker()
    marker.header = _copy_header(header)
    marker.ns = namespace
    marker.id = int(marker_id)
    marker.type = marker_type
    marker.action = action
    return marker


def make_marker_array(
    header: Header,
    objects: Iterable[ObjectReconstruction],
    marker_ids: dict[str, int],
    namespace: str = "sam3d",
    text: bool = True,
    max_triangles: int | None = 20000,
) -> MarkerArray:
    """Per object a TRIANGLE_LIST mesh marker (pose T_cam_obj, vertex colours) and a TEXT_VIEW_FACING "id: label"
    marker (namespace + '_label') above it.

    Marker ids come from `marker_ids` (object id -> int); unknown objects get the next free id, stored in the dict,
    so ids stay stable across calls. An object whose mesh has no faces gets a DELETE for its mesh marker.
    """
    if max_triangles is not None and max_triangles <= 0:
        raise InputError(f"max_triangles must be positive or None, got {max_triangles}")
    array = MarkerArray()
    for obj in objects:
        pose = _object_pose(obj)
        marker_id = _marker_id(marker_ids, str(obj.object_id))
        mesh = obj.mesh_obj
        has_faces = mesh is not None and len(mesh.faces) > 0
        if has_faces:
            marker = _new_marker(header, namespace, marker_id, Marker.TRIANGLE_LIST, Marker.ADD)
            marker.pose = pose
            marker.scale.x = marker.scale.y = marker.scale.z = 1.0
            marker.color.r = marker.color.g = marker.color.b = 1.0
            marker.color.a = 1.0
            marker.points, marker.colors = _triangle_list(mesh, max_triangles)
        else:
            marker = _new_marker(header, namespace, marker_id, Marker.TRIANGLE_LIST, Marker.DELETE)
        array.markers.append(marker)
        if text:
            array.markers.append(_label_marker(header, obj, pose, marker_id, namespace + "_label"))
    return array


def _label_marker(header: Header, obj: ObjectReconstruction, pose: Pose, marker_id: int, namespace: str) -> Marker:
    """TEXT_VIEW_FACING marker just above the object (above = -y in the optical frame)."""
    T = np.asarray(obj.T_cam_obj, dtype=np.float64)
    size = _object_size(obj)
    vertices = np.asarray(obj.mesh_obj.vertices, dtype=np.float64) if obj.mesh_obj is not None else np.empty((0, 3))
    if len(vertices) == 0:
        vertices = (np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T) * size / 2
    top_y = float(transform_points(T, vertices)[:, 1].min())
    height = float(np.clip(0.25 * size.max(), 0.02, 0.1))
    marker = _new_marker(header, namespace, marker_id, Marker.TEXT_VIEW_FACING, Marker.ADD)
    marker.pose.position.x = pose.position.x
    marker.pose.position.y = min(pose.position.y, top_y) - 0.75 * height
    marker.pose.position.z = pose.position.z
    marker.scale.z = height
    marker.color.r = marker.color.g = marker.color.b = 1.0
    marker.color.a = 1.0
    marker.text = f"{obj.object_id}: {obj.label}" if obj.label else str(obj.object_id)
    return marker


def make_delete_markers(header: Header, marker_ids_to_delete: Iterable[int], namespace: str = "sam3d") -> MarkerArray:
    """DELETE markers for the mesh (namespace) and label (namespace + '_label') of each marker id."""
    array = MarkerArray()
    for marker_id in marker_ids_to_delete:
        array.markers.append(_new_marker(header, namespace, marker_id, Marker.TRIANGLE_LIST, Marker.DELETE))
        array.markers.append(_new_marker(header, namespace + "_label", marker_id, Marker.TEXT_VIEW_FACING, Marker.DELETE))
    return array
