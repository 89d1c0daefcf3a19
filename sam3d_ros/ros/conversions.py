"""ROS messages <-> the package's numpy types (the one place these conversions live).

Only message packages are imported here, never rclpy, so everything works without a ROS graph.
Bad input raises `InputError` with a one-line message naming the problem.
"""
from __future__ import annotations

import array as pyarray
import gc
import math
import re
import struct
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import cv2
import numpy as np
import trimesh
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, TransformStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import Detection2DArray, Detection3D, Detection3DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker, MarkerArray

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.distortion import Distortion
from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.geometry.transforms import (
    invert_transform, pose_from_transform, poses_from_transforms, transform_from_pose, transform_points,
)
from sam3d_ros.geometry.types import InputError, ObjectPrompt, ObjectReconstruction
from sam3d_ros.reconstruction.segmentation import boxes_in_image

if TYPE_CHECKING:  # moveit_msgs is imported where it is used, so the rest works on a robot without MoveIt
    from moveit_msgs.msg import CollisionObject, PlanningScene

#: A mesh marker's TRIANGLE_LIST content: the corner points (3 per triangle) and their colours (make_triangle_list).
TriangleList = tuple[list[Point], list[ColorRGBA]]

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


def image_msg_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a rgb8/bgr8/rgba8/bgra8/mono8 image (mono replicated; 8UC3/8UC4 read as BGR/BGRA), or
    of a CompressedImage (compressed_image_msg_to_rgb)."""
    if isinstance(msg, CompressedImage):
        return compressed_image_msg_to_rgb(msg)
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


def depth_msg_to_metres(msg: Image | CompressedImage) -> np.ndarray:
    """(H, W) float32 depth in metres, NaN where invalid (REP 118: 16UC1/mono16 millimetres with 0 invalid; 32FC1
    metres), of an Image or a CompressedImage (compressed_depth_msg_to_metres)."""
    if isinstance(msg, CompressedImage):
        return compressed_depth_msg_to_metres(msg)
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


# ------------------------------------------------------------------------------------- compressed images
# What image_transport_plugins publish on <image topic>/compressed and <depth topic>/compressedDepth, decoded as their
# subscribers do. `format` is "<raw encoding>; <codec> compressed <encoding inside the file>" (compressed) or
# "<raw encoding>; compressedDepth <png|rvl>" (compressedDepth); older publishers wrote only the codec ("jpeg").

#: ROS colour encodings (image_transport's isColor) and mono ones that a compressed colour image may come from.
_COMPRESSED_COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16")
_COMPRESSED_ENCODINGS = _COMPRESSED_COLOUR + ("mono8", "mono16", "8uc1", "8uc3", "8uc4")
#: compressedDepth's ConfigHeader: int32 format (0 = inverse depth) and two float32 quantisation parameters, in the
#: publisher's byte order (little-endian on every platform ROS 2 supports).
_DEPTH_HEADER = struct.Struct("<iff")
_DEPTH_HEADER_SIZE = _DEPTH_HEADER.size  # 12 bytes
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _split_format(fmt: str) -> tuple[str, str]:
    """(raw encoding, the rest) of a CompressedImage format; ('', format) for an old one without ';'."""
    encoding, separator, rest = str(fmt).partition(";")
    return (encoding.strip(), rest.strip()) if separator else ("", encoding.strip())


def _imdecode(data: np.ndarray, what: str, fmt: str) -> np.ndarray:
    """OpenCV's decoding of a JPEG/PNG/TIFF byte string (unchanged: bit depth and channels as stored)."""
    if data.size == 0:
        raise InputError(f"{what} (format '{fmt}') has no data")
    head = bytes(data[:2])
    if head == _JPEG_START and _JPEG_END not in bytes(data[-16:]):  # libjpeg would fill the missing rows with grey
        raise InputError(f"{what} (format '{fmt}', {data.size} bytes) is a truncated JPEG (no end marker)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        image, reason = None, str(exc).strip().splitlines()[-1]
    else:
        reason = "not a complete JPEG, PNG or TIFF file"
    if image is None or image.size == 0:
        raise InputError(f"{what} (format '{fmt}', {data.size} bytes) cannot be decoded: {reason}")
    return image


def compressed_image_msg_to_rgb(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a compressed colour or mono image (image_transport's `compressed`: jpeg, png, tiff).

    Channel order as compressed_image_transport's subscriber reads it: BGR when the format says "compressed bgr..."
    or has no ';' (old publishers), RGB when a colour encoding was compressed without the bgr conversion. 16-bit
    images keep their high byte."""
    fmt = str(msg.format)
    encoding, rest = _split_format(fmt)
    if "compresseddepth" in rest.lower():
        raise InputError(f"colour image format '{fmt}' is a compressedDepth (depth) image, not a colour one")
    if encoding and encoding.lower() not in _COMPRESSED_ENCODINGS:
        raise InputError(f"compressed colour image encoding '{encoding}' (format '{fmt}') is not supported "
                         "(use rgb8, bgr8, rgba8, bgra8 or mono8)")
    image = _imdecode(_data_bytes(msg.data), "compressed colour image", fmt)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"compressed colour image (format '{fmt}') decodes to {image.dtype} pixels, not 8 or 16 bit")
    if image.ndim == 2 or image.shape[2] == 1:
        return np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=2)
    if image.shape[2] not in (3, 4):
        raise InputError(f"compressed colour image (format '{fmt}') has {image.shape[2]} channels")
    rgb_inside = encoding.lower() in _COMPRESSED_COLOUR and "compressed bgr" not in rest.lower()
    order = (0, 1, 2) if rgb_inside else (2, 1, 0)
    rgb = np.empty(image.shape[:2] + (3,), dtype=np.uint8)
    for channel, source in enumerate(order):
        rgb[:, :, channel] = image[:, :, source]
    return rgb


def compressed_depth_msg_to_metres(msg: CompressedImage) -> np.ndarray:
    """(H, W) float32 metres, NaN where invalid, of a compressed depth image.

    compressedDepth (compressed_depth_image_transport): a 12-byte ConfigHeader, then a 16-bit PNG holding millimetres
    (16UC1/mono16, 0 invalid) or, for 32FC1, quantised inverse depth q = A / z + B (0 invalid), decoded z = A / (q - B)
    with A, B from the header. RVL-coded data is refused with a warning naming it. A plain `compressed` depth image
    (a 16-bit PNG, or a 32-bit float TIFF) is read as its raw encoding says.
    """
    fmt = str(msg.format)
    encoding, separator, rest = (part.strip() for part in fmt.partition(";"))
    data = _data_bytes(msg.data)
    codec = "png"  # what the subscriber assumes without ';' (old publishers) or after a bare "compressedDepth"
    if separator:
        if "compressedDepth" not in rest:  # image_transport's plain `compressed` plugin
            return _compressed_plain_depth(encoding, fmt, data)
        if "compressedDepth " in rest:
            codec = rest.split("compressedDepth ", 1)[1].strip().split(" ")[0]
    if codec != "png":
        raise InputError(f"compressedDepth format '{fmt}': codec '{codec}' is not supported (only png; set the "
                         "publisher's compressedDepth format parameter to png)")
    canonical = _ENCODINGS_LOWER.get(encoding.lower(), encoding)
    if canonical not in ("16UC1", "mono16", "32FC1"):
        raise InputError(f"compressedDepth image encoding '{encoding}' (format '{fmt}') is not supported (use 16UC1 or 32FC1)")
    if data.size <= _DEPTH_HEADER_SIZE:
        raise InputError(f"compressedDepth image (format '{fmt}') has {data.size} bytes, not even its "
                         f"{_DEPTH_HEADER_SIZE}-byte header and an image")
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(bytes(data[:_DEPTH_HEADER_SIZE]))
    stored = _imdecode(data[_DEPTH_HEADER_SIZE:], "compressedDepth image", fmt)
    if stored.dtype != np.uint16 or stored.ndim != 2:
        channels = 1 if stored.ndim == 2 else stored.shape[2]
        raise InputError(f"compressedDepth image (format '{fmt}') holds {channels} channel(s) of {stored.dtype}, "
                         "not one 16-bit channel")
    if canonical == "32FC1":
        if not (math.isfinite(quant_a) and math.isfinite(quant_b) and quant_a > 0):
            raise InputError(f"compressedDepth image (format '{fmt}') has invalid quantisation parameters "
                             f"A={quant_a:g}, B={quant_b:g} in its header")
        with np.errstate(divide="ignore", invalid="ignore"):
            metres = np.float32(quant_a) / (stored.astype(np.float32) - np.float32(quant_b))
        metres[(stored == 0) | ~(metres > 0)] = np.nan
        return metres
    metres = stored.astype(np.float32) / np.float32(1000.0)
    metres[stored == 0] = np.nan
    return metres


def _compressed_plain_depth(encoding: str, fmt: str, data: np.ndarray) -> np.ndarray:
    canonical = _ENCODINGS_LOWER.get(encoding.lower(), encoding)
    if canonical not in ("16UC1", "mono16", "32FC1"):
        raise InputError(f"compressed depth image encoding '{encoding}' (format '{fmt}') is not supported (use 16UC1 "
                         "or 32FC1, or the compressedDepth transport)")
    stored = _imdecode(data, "compressed depth image", fmt)
    expected = np.float32 if canonical == "32FC1" else np.uint16
    if stored.dtype != expected or stored.ndim != 2:
        raise InputError(f"compressed depth image (format '{fmt}') decodes to {stored.dtype} pixels, not one "
                         f"{np.dtype(expected).name} channel (a lossy JPEG cannot carry depth)")
    image = array_to_image_msg(stored, canonical)
    return depth_msg_to_metres(image)


def raw_encoding(msg: Image | CompressedImage) -> str:
    """The raw encoding of an Image or of the image a CompressedImage was made of ('' when its format does not say)."""
    if isinstance(msg, CompressedImage):
        return _split_format(msg.format)[0]
    return str(msg.encoding)


def rgb_to_compressed_msg(rgb: np.ndarray, encoding: str = "rgb8", codec: str = "jpeg", header: Header | None = None,
                          jpeg_quality: int = 95, png_level: int = 3) -> CompressedImage:
    """What compressed_image_transport publishes for an rgb8/bgr8/mono8 image holding `rgb` (H, W, 3 uint8 RGB):
    the pixels converted to BGR (mono8: grey) and encoded by OpenCV, format '<encoding>; <codec> compressed bgr8'."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if codec not in ("jpeg", "png"):
        raise InputError(f"codec must be jpeg or png, got '{codec}'")
    if encoding == "mono8":
        pixels, inside = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), "mono8"
    else:
        pixels, inside = np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
    ok, encoded = cv2.imencode(".jpg" if codec == "jpeg" else ".png", pixels, params)
    if not ok:
        raise InputError(f"OpenCV could not encode the image as {codec}")
    msg = CompressedImage()
    msg.header = _copy_header(header)
    msg.format = f"{encoding}; {codec} compressed " + ("" if codec == "png" and inside == "mono8" else inside)
    msg.data = encoded.reshape(-1).tobytes()
    return msg


def depth_to_compressed_depth_msg(depth: np.ndarray, encoding: str, header: Header | None = None, depth_max: float = 10.0,
                                  depth_quantization: float = 100.0, png_level: int = 3) -> CompressedImage:
    """What compressed_depth_image_transport (format png) publishes for a 16UC1 (millimetres, uint16) or 32FC1
    (metres, float32) depth image: the ConfigHeader, then a 16-bit PNG of the depth (16UC1: values above depth_max
    zeroed) or of the quantised inverse depth (32FC1: q = A / z + B truncated to 16 bits, 0 where z >= depth_max or
    NaN; A = Z0 (Z0 + 1), B = 1 - A / depth_max, Z0 = depth_quantization), computed in float32 as the encoder does."""
    depth = np.asarray(depth)
    if encoding == "32FC1":
        depth = depth.astype(np.float32)
        quant_a = np.float32(depth_quantization) * (np.float32(depth_quantization) + np.float32(1.0))
        quant_b = np.float32(1.0) - quant_a / np.float32(depth_max)
        stored = np.zeros(depth.shape, dtype=np.uint16)
        with np.errstate(divide="ignore", invalid="ignore"):
            valid = depth < np.float32(depth_max)  # NaN compares false: 0
            stored[valid] = (quant_a / depth[valid] + quant_b).astype(np.uint16)  # C++ float -> ushort truncates
    elif encoding == "16UC1":
        stored = np.asarray(depth, dtype=np.uint16).copy()
        stored[stored > np.uint16(int(depth_max * 1000.0))] = 0
        quant_a = quant_b = np.float32(0.0)  # the encoder leaves them unset for 16-bit depth
    else:
        raise InputError(f"compressedDepth encodes 16UC1 or 32FC1 depth, not '{encoding}'")
    ok, encoded = cv2.imencode(".png", stored, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:
        raise InputError("OpenCV could not encode the depth image as png")
    msg = CompressedImage()
    msg.header = _copy_header(header)
    msg.format = f"{encoding}; compressedDepth png"
    msg.data = _DEPTH_HEADER.pack(0, float(quant_a), float(quant_b)) + encoded.reshape(-1).tobytes()
    return msg


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


def camera_info_to_distortion(msg: CameraInfo) -> Distortion | None:
    """The lens distortion CameraInfo describes (`distortion_model`, `d`); None when D is empty or all zero."""
    try:
        return Distortion.from_camera_info(msg.distortion_model, msg.d)
    except ValueError as exc:
        raise InputError(str(exc)) from None


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


def detections2d_to_prompts(msg: Detection2DArray, width: int, height: int) -> tuple[list[ObjectPrompt], list[str]]:
    """Box prompts of 2D detections, clipped to [0, width] x [0, height] (theta is ignored: boxes are axis-aligned),
    and one line per detection left out: an invalid box, a box outside the image, or an id an earlier detection has
    (the first one is kept). One bad detection costs only itself.

    object_id is the detection's id, or its 1-based index when the id is empty; label and score come from the
    best-scoring hypothesis (empty label and score 1.0 without hypotheses).
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"image size {width}x{height} for the detections is empty")
    prompts: list[ObjectPrompt] = []
    errors: list[str] = []
    seen: set[str] = set()
    for index, detection in enumerate(msg.detections):
        object_id = str(detection.id) if detection.id else str(index + 1)
        if object_id in seen:
            errors.append(f"object {object_id}: detection {index} repeats the id of an earlier one (the first is kept)")
            continue
        seen.add(object_id)
        bbox = detection.bbox
        cx, cy = float(bbox.center.position.x), float(bbox.center.position.y)
        sx, sy = float(bbox.size_x), float(bbox.size_y)
        if not np.isfinite([cx, cy, sx, sy]).all() or sx <= 0 or sy <= 0:
            errors.append(f"object {object_id}: invalid box: centre ({cx:g}, {cy:g}), size {sx:g}x{sy:g}")
            continue
        label, score = "", 1.0
        if len(detection.results) > 0:
            best = max(detection.results, key=lambda result: float(result.hypothesis.score))
            label, score = str(best.hypothesis.class_id), float(best.hypothesis.score)
        box = (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2)
        prompts.append(ObjectPrompt(object_id=object_id, label=label, score=score, bbox_xyxy=box))
    prompts, outside = boxes_in_image(prompts, width, height)
    return prompts, errors + outside


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


def transform_stamped_to_matrix(msg: TransformStamped) -> tuple[str, str, int, np.ndarray]:
    """(parent frame, child frame, stamp ns, T_parent_child 4x4) of a TransformStamped; InputError if not finite."""
    t, q = msg.transform.translation, msg.transform.rotation
    position = np.array([t.x, t.y, t.z], dtype=np.float64)
    q_xyzw = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.isfinite(position).all() and np.isfinite(q_xyzw).all()) or np.linalg.norm(q_xyzw) < 1e-9:
        raise InputError(f"transform {msg.header.frame_id} -> {msg.child_frame_id} is not finite or has a zero quaternion")
    return str(msg.header.frame_id), str(msg.child_frame_id), stamp_to_ns(msg.header.stamp), transform_from_pose(position, q_xyzw)


# ---------------------------------------------------------------------------------------------- outputs


def _frame_transform(T_frame_cam: np.ndarray | None) -> np.ndarray | None:
    """T_frame_cam as a checked float64 4x4 rigid transform (None stays None)."""
    if T_frame_cam is None:
        return None
    T = np.asarray(T_frame_cam, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise InputError(f"T_frame_cam must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not (np.allclose(R.T @ R, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0 and np.allclose(T[3], [0, 0, 0, 1])):
        raise InputError("T_frame_cam must be a rigid transform (orthonormal rotation, last row 0 0 0 1)")
    return T


def _object_transform(obj: ObjectReconstruction, T_frame_cam: np.ndarray | None = None) -> np.ndarray:
    """T_frame_obj = T_frame_cam @ obj.T_cam_obj (just T_cam_obj without T_frame_cam), checked finite."""
    T = np.asarray(obj.T_cam_obj, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise InputError(f"object '{obj.object_id}' T_cam_obj must be a finite 4x4 matrix, got shape {T.shape}")
    return T if T_frame_cam is None else T_frame_cam @ T


def _pose(T: np.ndarray) -> Pose:
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


def make_detection3d_array(
    header: Header, objects: Iterable[ObjectReconstruction], T_frame_cam: np.ndarray | None = None
) -> Detection3DArray:
    """Detection3DArray with one Detection3D per object: bbox = the size_obj box (the object's axes, centred on
    `box_centre_obj`: the origin but for fused meshes), one hypothesis at the object's pose (score: the
    detection's score x the reconstruction's confidence when it has one).

    The pose is T_frame_cam @ T_cam_obj in header.frame_id (just T_cam_obj, header in the optical frame, without
    T_frame_cam). An object whose scale is not metric (no depth) is flagged by `results[0].pose.covariance[0] = -1`
    (the ROS convention for "no estimate"): its position and size share one unknown factor."""
    T_frame_cam = _frame_transform(T_frame_cam)
    array = Detection3DArray()
    array.header = _copy_header(header)
    for obj in objects:
        T_frame_obj = _object_transform(obj, T_frame_cam)
        size = _object_size(obj)
        detection = Detection3D()
        detection.header = _copy_header(header)
        detection.id = str(obj.object_id)
        detection.bbox.center = _pose(T_frame_obj @ obj.T_obj_box())
        detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = (float(v) for v in size)
        result = ObjectHypothesisWithPose()
        result.hypothesis.class_id = str(obj.label)
        # The detection's score, times the reconstruction's confidence where the backend gives one.
        result.hypothesis.score = float(obj.score) * (1.0 if obj.confidence is None else float(obj.confidence))
        result.pose.pose = _pose(T_frame_obj)
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
    header: Header,
    objects: Iterable[ObjectReconstruction],
    child_frame_prefix: str,
    T_frame_cam: np.ndarray | None = None,
) -> list[TransformStamped]:
    """TransformStamped header.frame_id -> frame_name(prefix, object_id) per object, stamped header.stamp.

    The transform is T_frame_cam @ T_cam_obj (just T_cam_obj, header in the optical frame, without T_frame_cam)."""
    T_frame_cam = _frame_transform(T_frame_cam)
    transforms = []
    for obj in objects:
        pose = _pose(_object_transform(obj, T_frame_cam))
        tf = TransformStamped()
        tf.header = _copy_header(header)
        tf.child_frame_id = frame_name(child_frame_prefix, obj.object_id)
        p, q = pose.position, pose.orientation
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = p.x, p.y, p.z
        tf.transform.rotation = q
        transforms.append(tf)
    return transforms


def make_transform_stamped(parent: str, child: str, T_parent_child: np.ndarray, stamp_ns: int) -> TransformStamped:
    """TransformStamped parent -> child of a 4x4 T_parent_child at stamp_ns (the inverse of transform_stamped_to_matrix)."""
    pose = _pose(np.asarray(T_parent_child, dtype=np.float64))
    tf = TransformStamped()
    tf.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=parent)
    tf.child_frame_id = child
    p = pose.position
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = p.x, p.y, p.z
    tf.transform.rotation = pose.orientation
    return tf


# Collision meshes are built fast: Points and MeshTriangles get their slots filled directly when the generated class
# has the expected layout (else, or with plain=True, the public constructors, whose setters check and convert every
# field), and the cyclic garbage collector pauses while these thousands of acyclic objects are made. Kept because
# `sam3d-ros bench-messages` (README "Mesh messages", 2-core VM, four runs) measured the plain API 3-5 times slower:
# a 5000-triangle collision mesh (collision_max_triangles' default) 1.7-2.7 ms against 7.1-7.6 ms, 20000 triangles
# 7-11 ms against 31-41 ms, on the reconstruction thread that shares the GIL with 30 Hz tracking (33 ms a frame). Marker
# triangle lists use the plain API: the same trick saved them only 10-35 % there (20000 triangles: 28-37 ms against
# 40-43 ms), not worth its cost in clarity.
_POINT_FAST = {"_x", "_y", "_z", "_check_fields"} <= set(getattr(Point, "__slots__", ()))


@contextmanager
def _collector_paused(pause: bool = True) -> Iterator[None]:
    """The cyclic garbage collector off inside the block (when `pause`), as it was after it."""
    was_enabled = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause and was_enabled:
            gc.enable()


def _points(xyz: list[list[float]], plain: bool = False) -> list[Point]:
    if plain or not _POINT_FAST:
        return [Point(x=x, y=y, z=z) for x, y, z in xyz]
    new, check = Point.__new__, Point()._check_fields

    def make(x: float, y: float, z: float) -> Point:
        point = new(Point)
        point._check_fields, point._x, point._y, point._z = check, x, y, z
        return point

    return [make(x, y, z) for x, y, z in xyz]


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


def make_triangle_list(mesh: trimesh.Trimesh, max_triangles: int | None) -> TriangleList:
    """Triangle corners (3 per face) and their vertex colours / 255. The TRIANGLE_LIST content of a mesh marker:
    prepare it off the publishing path and pass it to make_marker_array.

    A mesh over `max_triangles` is shown as its quadric-decimated copy (`simplified_mesh`, colours kept: same
    surface, no holes; 5-20 ms per mesh here, which holds the GIL: fused meshes come decimated from the fusion
    process, `FusedMesh.display_mesh_obj`); below 4 triangles, or should decimation stop above the budget, evenly
    strided faces. One Point per used vertex and one ColorRGBA per distinct colour are built and shared by the
    corners that use them (the serializer only reads them).
    """
    colors_u8 = _vertex_colors_u8(mesh)
    if max_triangles is not None and max_triangles >= 4 and len(mesh.faces) > max_triangles:
        mesh = simplified_mesh(mesh, int(max_triangles), vertex_colors=colors_u8)
        colors_u8 = np.asarray(mesh.visual.vertex_colors, dtype=np.uint8)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if max_triangles is not None and len(faces) > max_triangles:
        faces = faces[np.linspace(0, len(faces), int(max_triangles), endpoint=False).astype(np.int64)]
    corner_vertices = faces.reshape(-1)
    used, point_index = np.unique(corner_vertices, return_inverse=True)
    xyz = np.asarray(mesh.vertices, dtype=np.float64)[used].tolist()
    corner_rgba = np.ascontiguousarray(colors_u8[corner_vertices])
    packed, color_index = np.unique(corner_rgba.view(np.uint32).reshape(-1), return_inverse=True)
    rgba = (packed.view(np.uint8).reshape(-1, 4) / np.float32(255.0)).astype(np.float32).tolist()  # float32 exact
    point_index, color_index = point_index.reshape(-1).tolist(), color_index.reshape(-1).tolist()
    vertex_points = [Point(x=x, y=y, z=z) for x, y, z in xyz]
    colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in rgba]
    return [vertex_points[i] for i in point_index], [colors[i] for i in color_index]


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


# MESH_RESOURCE colour: opaque white tints nothing, so the file's own (vertex) colours show in RViz 1 and 2 alike.
_MESH_RESOURCE_RGBA = (1.0, 1.0, 1.0, 1.0)


def make_marker_array(
    header: Header,
    objects: Iterable[ObjectReconstruction],
    marker_ids: dict[str, int],
    namespace: str = "sam3d",
    text: bool = True,
    max_triangles: int | None = 20000,
    T_frame_cam: np.ndarray | None = None,
    frame_locked_prefix: str | None = None,
    mesh_uris: Mapping[str, str] | None = None,
    triangle_lists: Mapping[str, TriangleList] | None = None,
) -> MarkerArray:
    """Per object a mesh marker and a TEXT_VIEW_FACING "id: label" marker (namespace + '_label') above it.

    The mesh marker is a TRIANGLE_LIST with vertex colours, or, for an object with an entry in `mesh_uris`
    (object id -> 'file:///...' URI), a MESH_RESOURCE of that file (embedded materials, white, scale 1).
    Poses: in header.frame_id, T_frame_cam @ T_cam_obj (T_cam_obj without T_frame_cam); with
    `frame_locked_prefix`, every marker of an object is in frame_name(prefix, object_id) instead, with the mesh at
    the identity pose and frame_locked=True, so RViz moves it with the object's TF and it need not be re-sent.
    Labels sit above the object: along -y of the optical frame without T_frame_cam, along +z of the output frame
    (REP 103) with it; frame-locked labels keep that offset in the object frame.

    `triangle_lists` (object id -> make_triangle_list of its mesh) are used as they are instead of converting the
    mesh again (the heavy part of a marker array; the node prepares them once per mesh, off its lock).

    Marker ids come from `marker_ids` (object id -> int); unknown objects get the next free id, stored in the dict,
    so ids stay stable across calls. An object with neither faces nor a mesh URI gets a DELETE for its mesh marker.
    """
    if max_triangles is not None and max_triangles <= 0:
        raise InputError(f"max_triangles must be positive or None, got {max_triangles}")
    T_frame_cam = _frame_transform(T_frame_cam)
    up = np.array([0.0, -1.0, 0.0]) if T_frame_cam is None else np.array([0.0, 0.0, 1.0])
    frame_locked = frame_locked_prefix is not None
    array = MarkerArray()
    for obj in objects:
        object_id = str(obj.object_id)
        T_frame_obj = _object_transform(obj, T_frame_cam)
        marker_id = _marker_id(marker_ids, object_id)
        if frame_locked:
            marker_header = Header(stamp=_copy_time(header.stamp), frame_id=frame_name(frame_locked_prefix, object_id))
            pose = _pose(np.eye(4))
        else:
            marker_header, pose = header, _pose(T_frame_obj)
        uri = None if mesh_uris is None else mesh_uris.get(object_id)
        mesh = obj.mesh_obj
        if uri is not None:
            if not isinstance(uri, str) or not uri:
                raise InputError(f"mesh URI of object '{object_id}' must be a non-empty string, got {uri!r}")
            marker = _new_marker(marker_header, namespace, marker_id, Marker.MESH_RESOURCE, Marker.ADD)
            marker.mesh_resource = uri
            marker.mesh_use_embedded_materials = True
            marker.color.r, marker.color.g, marker.color.b, marker.color.a = _MESH_RESOURCE_RGBA
        elif mesh is not None and len(mesh.faces) > 0:
            marker = _new_marker(marker_header, namespace, marker_id, Marker.TRIANGLE_LIST, Marker.ADD)
            marker.color.r = marker.color.g = marker.color.b = 1.0
            marker.color.a = 1.0
            prepared = None if triangle_lists is None else triangle_lists.get(object_id)
            marker.points, marker.colors = prepared if prepared is not None else make_triangle_list(mesh, max_triangles)
        else:
            marker = _new_marker(marker_header, namespace, marker_id, Marker.TRIANGLE_LIST, Marker.DELETE)
        if marker.action == Marker.ADD:
            marker.pose = pose
            marker.scale.x = marker.scale.y = marker.scale.z = 1.0
            marker.frame_locked = frame_locked
        array.markers.append(marker)
        if text:
            position, height = _label_position(obj, T_frame_obj, up)
            if frame_locked:
                position = transform_points(invert_transform(T_frame_obj), position)[0]
            label = _label_marker(marker_header, obj, position, height, marker_id, namespace + "_label")
            label.frame_locked = frame_locked
            array.markers.append(label)
    return array


def _label_position(obj: ObjectReconstruction, T_frame_obj: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, float]:
    """(position in the frame of T_frame_obj, text height): the object origin moved along `up` to just above the
    object's highest vertex (its size_obj box when the mesh has no vertices)."""
    size = _object_size(obj)
    vertices = np.asarray(obj.mesh_obj.vertices, dtype=np.float64) if obj.mesh_obj is not None else np.empty((0, 3))
    if len(vertices) == 0:
        vertices = (np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T) * size / 2
    origin = T_frame_obj[:3, 3]
    origin_up = float(origin @ up)
    top = max(float((transform_points(T_frame_obj, vertices) @ up).max()), origin_up)
    height = float(np.clip(0.25 * size.max(), 0.02, 0.1))
    return origin + (top + 0.75 * height - origin_up) * up, height


def _label_marker(
    header: Header, obj: ObjectReconstruction, position: np.ndarray, height: float, marker_id: int, namespace: str
) -> Marker:
    """TEXT_VIEW_FACING "id: label" marker at `position` (in header.frame_id), text `height` metres tall."""
    marker = _new_marker(header, namespace, marker_id, Marker.TEXT_VIEW_FACING, Marker.ADD)
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (float(v) for v in position)
    marker.pose.orientation.w = 1.0
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


# ------------------------------------------------------------------------------------------------ MoveIt

_MESH_TRIANGLE_FAST = {"_vertex_indices", "_check_fields"} <= set(getattr(MeshTriangle, "__slots__", ()))


def _mesh_triangles(faces: np.ndarray, plain: bool = False) -> list[MeshTriangle]:
    """MeshTriangles of (F, 3) vertex indices (each row a uint32[3] array, as the generated setter stores it)."""
    rows = list(np.ascontiguousarray(faces, dtype=np.uint32))
    if plain or not _MESH_TRIANGLE_FAST:
        return [MeshTriangle(vertex_indices=row) for row in rows]
    new, check = MeshTriangle.__new__, MeshTriangle()._check_fields

    def make(row: np.ndarray) -> MeshTriangle:
        triangle = new(MeshTriangle)
        triangle._check_fields, triangle._vertex_indices = check, row
        return triangle

    return [make(row) for row in rows]


def make_shape_mesh(object_id: str, mesh: trimesh.Trimesh | None, plain: bool = False) -> Mesh:
    """shape_msgs/Mesh of a trimesh: every vertex (object frame, metres) and every face, indices unchanged (the
    geometry of a collision ADD: prepare it off the publishing path and pass it to make_collision_object). `plain`:
    every message through its generated constructor with the garbage collector running (the same content; what
    `sam3d-ros bench-messages` compares with)."""
    if mesh is None or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise InputError(f"object '{object_id}' has an empty mesh, nothing to add as a collision object")
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if not np.isfinite(vertices).all():
        raise InputError(f"object '{object_id}' mesh has non-finite vertices")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"object '{object_id}' mesh has face indices outside [0, {len(vertices)})")
    with _collector_paused(not plain):  # many small acyclic objects: see _points
        return Mesh(vertices=_points(vertices.tolist(), plain), triangles=_mesh_triangles(faces, plain))


def make_collision_object(
    header: Header,
    object_id: str,
    operation: str,
    obj: ObjectReconstruction | None = None,
    T_frame_cam: np.ndarray | None = None,
    mesh_obj: trimesh.Trimesh | None = None,
    shape_mesh: Mesh | None = None,
) -> CollisionObject:
    """moveit_msgs/CollisionObject `object_id` in header.frame_id for operation 'add', 'move' or 'remove'.

    add: the object's mesh (vertices in the object frame; `mesh_obj` instead of obj.mesh_obj when given, e.g. a
    decimated one; `shape_mesh`, a prepared make_shape_mesh, before either) with mesh_poses = [identity] and pose = T_frame_cam @ T_cam_obj (T_cam_obj without T_frame_cam);
    move: id and pose only (MoveIt's MOVE takes no geometry); remove: id only. add and move need `obj`.
    """
    from moveit_msgs.msg import CollisionObject

    operations = {"add": CollisionObject.ADD, "move": CollisionObject.MOVE, "remove": CollisionObject.REMOVE}
    op = operations.get(str(operation).lower())
    if op is None:
        raise InputError(f"collision object operation '{operation}' is not one of add, move, remove")
    object_id = str(object_id)
    if not object_id:
        raise InputError("collision object id is empty")
    msg = CollisionObject()
    msg.header = _copy_header(header)
    msg.id = object_id
    msg.operation = op
    if op == CollisionObject.REMOVE:
        return msg
    if obj is None:
        raise InputError(f"collision object '{object_id}' needs its reconstruction for '{operation}'")
    msg.pose = _pose(_object_transform(obj, _frame_transform(T_frame_cam)))
    if op == CollisionObject.ADD:
        msg.meshes = [shape_mesh if shape_mesh is not None else make_shape_mesh(object_id, obj.mesh_obj if mesh_obj is None else mesh_obj)]
        msg.mesh_poses = [Pose()]  # identity: the mesh vertices are already in the object frame
    return msg


def make_planning_scene_diff(collision_objects: Iterable[CollisionObject]) -> PlanningScene:
    """moveit_msgs/PlanningScene diff (is_diff, robot_state.is_diff) carrying these world collision objects."""
    from moveit_msgs.msg import CollisionObject, PlanningScene

    objects = list(collision_objects)
    for index, item in enumerate(objects):
        if not isinstance(item, CollisionObject):
            raise InputError(f"planning scene item {index} is a {type(item).__name__}, not a moveit_msgs CollisionObject")
    scene = PlanningScene()
    scene.is_diff = True
    scene.robot_state.is_diff = True  # an empty robot state in a diff changes nothing
    scene.world.collision_objects = objects
    return scene


# ----------------------------------------------------------------------------------------------- diagnostics

_DIAGNOSTIC_LEVELS = {
    "ok": DiagnosticStatus.OK,
    "warn": DiagnosticStatus.WARN,
    "error": DiagnosticStatus.ERROR,
    "stale": DiagnosticStatus.STALE,
}


@dataclass
class DiagnosticEntry:
    """One diagnostic_msgs/DiagnosticStatus: level is 'ok', 'warn', 'error' or 'stale'."""

    name: str
    hardware_id: str = ""
    level: str = "ok"
    message: str = ""
    values: dict[str, str | int | float] = field(default_factory=dict)


def _diagnostic_value(value: Any) -> str:
    """A KeyValue value: strings as they are, booleans 'true'/'false', integers exact, floats to 6 significant digits."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(value) if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def make_diagnostic_array(stamp: Any, statuses: Iterable[DiagnosticEntry | tuple]) -> DiagnosticArray:
    """DiagnosticArray stamped `stamp` (a Time, or nanoseconds) with one DiagnosticStatus per entry.

    An entry is a DiagnosticEntry or a tuple in its field order (name, hardware_id, level, message[, values]).
    """
    array = DiagnosticArray()
    array.header.stamp = ns_to_stamp(stamp) if isinstance(stamp, (int, np.integer)) else _copy_time(stamp)
    for index, entry in enumerate(statuses):
        if not isinstance(entry, DiagnosticEntry):
            try:
                entry = DiagnosticEntry(*entry)
            except TypeError as exc:
                raise InputError(f"diagnostic status {index} must be (name, hardware_id, level, message[, values]): {exc}") from exc
        if not str(entry.name):
            raise InputError(f"diagnostic status {index} has an empty name")
        level = _DIAGNOSTIC_LEVELS.get(str(entry.level).lower())
        if level is None:
            raise InputError(f"diagnostic status '{entry.name}' level '{entry.level}' is not one of {', '.join(_DIAGNOSTIC_LEVELS)}")
        status = DiagnosticStatus()
        status.level = level
        status.name = str(entry.name)
        status.message = str(entry.message)
        status.hardware_id = str(entry.hardware_id)
        values = entry.values if entry.values is not None else {}
        if not isinstance(values, Mapping):
            raise InputError(f"diagnostic status '{entry.name}' values must be a dict, got {type(values).__name__}")
        status.values = [KeyValue(key=str(key), value=_diagnostic_value(value)) for key, value in values.items()]
        array.status.append(status)
    return array


# ---------------------------------------------------------------------------------------------- grasps


@dataclass
class GraspMessages:
    """The grasp outputs of one stamp: best first over all objects (see make_grasp_messages)."""

    poses: Any  # geometry_msgs/PoseArray; None when not asked for
    markers: MarkerArray | None  # None when not asked for
    grasps: Any = None  # sam3d_ros_msgs/ObjectGraspArray; None when not asked for or where that package is not built


def _score_colour(score: float) -> ColorRGBA:
    """Red (0) through yellow to green (1)."""
    s = float(np.clip(score, 0.0, 1.0))
    return ColorRGBA(r=float(min(1.0, 2.0 - 2.0 * s)), g=float(min(1.0, 2.0 * s)), b=0.0, a=1.0)


def _gripper_lines(T_frame_grasp: np.ndarray, opening_m: float, finger_length_m: float, stem_m: float) -> np.ndarray:
    """(8, 3) end points of 4 segments drawing a parallel-jaw gripper: two fingers, the palm bar between their roots
    and a stem back along -z (the way the hand comes from)."""
    half = opening_m / 2
    root = -finger_length_m
    local = np.array([[0, -half, 0], [0, -half, root], [0, half, 0], [0, half, root],
                      [0, -half, root], [0, half, root], [0, 0, root], [0, 0, root - stem_m]], dtype=np.float64)
    return transform_points(T_frame_grasp, local)


GRASP_OUTPUTS = frozenset({"poses", "markers", "grasps"})


def make_grasp_messages(
    header: Header, objects: Iterable[ObjectReconstruction], gripper: Any, joint_names: Iterable[str] = (),
    T_frame_cam: np.ndarray | None = None, marker_namespace: str = "sam3d_grasps", outputs: Iterable[str] = GRASP_OUTPUTS,
) -> GraspMessages:
    """Every object's grasps (`grasps_obj`, object frame) moved to header.frame_id by T_frame_cam @ T_cam_obj, sorted
    best first over all objects: a PoseArray (gripper frames), a MarkerArray (one LINE_LIST of gripper outlines at
    the pre-grasp opening, coloured by score red -> green; DELETEALL when there is no grasp) and, where sam3d_ros_msgs
    is built, an ObjectGraspArray whose moveit_msgs/Grasp carries the approach along the gripper's +z, the retreat
    back along -z, and the jaw postures (each joint of `joint_names` at half the opening, e.g. panda_finger_joint1/2).
    Only the messages named in `outputs` ("poses", "markers", "grasps") are built; the others are None. For a stream
    of frames, GraspMessageBuilder gives the same messages at a fraction of the cost."""
    return GraspMessageBuilder(gripper, joint_names, marker_namespace).build(header, objects, T_frame_cam, outputs)


class GraspMessageBuilder:
    """make_grasp_messages for one stream of frames (a node's tracking thread). Building the moveit_msgs/Grasp of 50
    grasps costs several ms (rclpy builds every default sub-message of every message made), so the messages are kept
    and, while the objects' grasp lists are the same lists (a mesh's grasps are planned once), only their stamp,
    frame and poses are set again: the messages one `build` returns are valid until the next `build`. All
    sub-messages of one build share one Header, and the PoseArray and each Grasp share one Pose per grasp."""

    def __init__(self, gripper: Any, joint_names: Iterable[str] = (), marker_namespace: str = "sam3d_grasps") -> None:
        self.gripper = gripper
        self.joint_names = [str(n) for n in joint_names]
        self.marker_namespace = marker_namespace
        self._lists: list[tuple[str, list]] = []  # (object id, grasps_obj list) the kept messages were built for
        self._header = Header()  # shared by every kept sub-message, for good
        self._poses: list[Pose] = []
        self._grasps: Any = None  # ObjectGraspArray, None until asked for (or where sam3d_ros_msgs is not built)
        self._directions: list[tuple[Any, Any]] = []  # (approach, retreat) Vector3 of each kept Grasp
        self._ranked: list[tuple[float, str, float]] = []  # (score, object id, width) best first
        self._order = np.zeros(0, dtype=np.int64)
        # object id -> (its grasps_obj list, its ObjectGrasp messages and their (approach, retreat) in the list's order)
        self._object_messages: dict[str, tuple[list, list, list]] = {}
        self.rebuilds = 0  # how often the kept messages were put together anew (for tests and diagnostics)
        self.objects_built = 0  # how often one object's ObjectGrasp messages were made (the costly part)

    def build(self, header: Header, objects: Iterable[ObjectReconstruction], T_frame_cam: np.ndarray | None = None,
              outputs: Iterable[str] = GRASP_OUTPUTS) -> GraspMessages:
        """See make_grasp_messages."""
        from geometry_msgs.msg import PoseArray

        outputs = frozenset(outputs)
        if outputs - GRASP_OUTPUTS:
            raise InputError(f"unknown grasp outputs {sorted(outputs - GRASP_OUTPUTS)}; known: {sorted(GRASP_OUTPUTS)}")
        T_frame_cam = _frame_transform(T_frame_cam)
        objects = [obj for obj in objects if obj.grasps_obj]
        T_frame_grasps = [_object_transform(obj, T_frame_cam) @ np.stack([g.T_obj_grasp for g in obj.grasps_obj])
                          for obj in objects]
        lists = [(obj.object_id, obj.grasps_obj) for obj in objects]
        same_lists = len(lists) == len(self._lists) and all(
            a == c and b is d for (a, b), (c, d) in zip(lists, self._lists))
        if not same_lists or ("grasps" in outputs and self._grasps is None):
            self._rebuild(lists)
        self._header.stamp = _copy_time(header.stamp)
        self._header.frame_id = str(header.frame_id)
        T_ranked = np.concatenate(T_frame_grasps)[self._order] if T_frame_grasps else np.zeros((0, 4, 4))
        positions, quaternions = poses_from_transforms(T_ranked)
        for pose, (px, py, pz), (qx, qy, qz, qw) in zip(self._poses, positions.tolist(), quaternions.tolist()):
            pose.position.x, pose.position.y, pose.position.z = px, py, pz
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
        if self._grasps is not None:
            for (approach, retreat), (x, y, z) in zip(self._directions, T_ranked[:, :3, 2].tolist()):
                approach.x, approach.y, approach.z = x, y, z
                retreat.x, retreat.y, retreat.z = -x, -y, -z
        messages = GraspMessages(None, None)
        if "poses" in outputs:
            messages.poses = PoseArray(header=self._header, poses=self._poses)
        if "markers" in outputs:
            messages.markers = MarkerArray(markers=[self._marker(header, T_ranked)])
        if "grasps" in outputs:
            messages.grasps = self._grasps
        return messages

    def _marker(self, header: Header, T_ranked: np.ndarray) -> Marker:
        marker = _new_marker(header, self.marker_namespace, 0, Marker.LINE_LIST,
                             Marker.ADD if self._ranked else Marker.DELETEALL)
        if self._ranked:
            marker.scale.x = 0.003
            marker.pose.orientation.w = 1.0
            xyz, colours = [], []
            for (score, _, width), T in zip(self._ranked, T_ranked):
                xyz += _gripper_lines(T, self.gripper.pre_grasp_opening(width), self.gripper.finger_length_m, 0.03).tolist()
                colours += [_score_colour(score)] * 8
            marker.points = _points(xyz)
            marker.colors = colours
        return marker

    def _rebuild(self, lists: list[tuple[str, list]]) -> None:
        """The kept messages for these objects' grasp lists, ranked best first over all objects (poses and directions
        are set by `build`). An object whose grasp list is the one its kept messages were made for keeps them (a
        fused mesh's new grasps cost that object's messages only); the others' are made anew."""
        self.rebuilds += 1
        self._lists = lists
        ids = [object_id for object_id, grasps in lists for _ in grasps]
        grasps = [g for _, grasps in lists for g in grasps]
        self._order = np.argsort(-np.array([float(g.score) for g in grasps], dtype=np.float64), kind="stable")
        self._ranked = [(float(grasps[i].score), ids[i], float(grasps[i].width_m)) for i in self._order]
        self._grasps, self._directions = None, []
        try:
            from sam3d_ros_msgs.msg import ObjectGraspArray
        except ImportError:  # a robot that did not build interfaces/sam3d_ros_msgs: poses and markers only
            self._poses = [Pose() for _ in self._ranked]
            return
        kept = self._object_messages
        self._object_messages = {}
        messages, directions = [], []
        for object_id, object_grasps in lists:
            entry = kept.get(object_id)
            if entry is None or entry[0] is not object_grasps:
                entry = (object_grasps, *self._object_grasp_messages(object_id, object_grasps))
                self.objects_built += 1
            self._object_messages[object_id] = entry
            messages += entry[1]
            directions += entry[2]
        self._grasps = ObjectGraspArray(header=self._header)
        self._grasps.grasps = [messages[i] for i in self._order]
        self._directions = [directions[i] for i in self._order]
        self._poses = [message.grasp.grasp_pose.pose for message in self._grasps.grasps]
        for rank, message in enumerate(self._grasps.grasps):
            message.grasp.id = f"{message.object_id}_{rank}"

    def _object_grasp_messages(self, object_id: str, object_grasps: list) -> tuple[list, list]:
        """One object's ObjectGrasp messages in its list's order (ids, poses and directions are set later) and the
        (approach, retreat) direction Vector3 of each."""
        from geometry_msgs.msg import PoseStamped, Vector3, Vector3Stamped
        from moveit_msgs.msg import Grasp, GripperTranslation
        from sam3d_ros_msgs.msg import ObjectGrasp
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        gripper, names, header = self.gripper, self.joint_names, self._header

        def posture(opening_m: float, effort: float | None) -> JointTrajectory:
            point = JointTrajectoryPoint(positions=[float(opening_m) / 2] * len(names))
            point.time_from_start.sec = 1
            if effort is not None:
                point.effort = [float(effort)] * len(names)
            return JointTrajectory(header=header, joint_names=names, points=[point])

        def translation(distance_m: float) -> tuple[GripperTranslation, Vector3]:
            vector = Vector3()
            return GripperTranslation(direction=Vector3Stamped(header=header, vector=vector), desired_distance=distance_m,
                                      min_distance=distance_m / 2), vector

        approach_m, force_n = float(gripper.approach_distance_m), float(gripper.max_force_n)
        messages, directions = [], []
        for g in object_grasps:
            score, width = float(g.score), float(g.width_m)
            (approach, approach_vector), (retreat, retreat_vector) = translation(approach_m), translation(approach_m)
            grasp = Grasp(grasp_quality=score, max_contact_force=force_n, allowed_touch_objects=[object_id],
                          grasp_pose=PoseStamped(header=header, pose=Pose()),
                          pre_grasp_posture=posture(gripper.pre_grasp_opening(width), None),
                          grasp_posture=posture(max(width - 2 * gripper.clearance_m, 0.0), force_n),
                          pre_grasp_approach=approach, post_grasp_retreat=retreat)
            messages.append(ObjectGrasp(object_id=object_id, width=width, score=score, grasp=grasp))
            directions.append((approach_vector, retreat_vector))
        return messages, directions
