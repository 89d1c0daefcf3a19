"""Tests of sam3d_ros.ros.conversions: ROS messages <-> numpy types."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import trimesh
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.ros.conversions import (
    make_grasp_messages,
    DiagnosticEntry,
    array_to_image_msg,
    camera_info_to_intrinsics,
    depth_msg_to_metres,
    detections2d_to_prompts,
    frame_name,
    image_msg_to_array,
    image_msg_to_rgb,
    intrinsics_to_camera_info,
    make_collision_object,
    make_delete_markers,
    make_detection3d_array,
    make_diagnostic_array,
    make_marker_array,
    make_planning_scene_diff,
    make_shape_mesh,
    make_transform_stamped,
    make_transforms,
    make_triangle_list,
    mask_msg_to_labels,
    ns_to_stamp,
    stamp_to_ns,
    transform_stamped_to_matrix,
)
from sam3d_ros.geometry.transforms import make_transform, matrix_from_quaternion_xyzw, transform_from_pose, transform_points
from sam3d_ros.geometry.types import InputError, ObjectReconstruction

ENCODINGS = {  # encoding -> (dtype, channels)
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "32SC1": (np.int32, 1),
    "32FC1": (np.float32, 1),
}


def random_image(rng: np.random.Generator, dtype: type, channels: int, height: int = 5, width: int = 7) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def raw_image(encoding: str, array: np.ndarray, pad: int = 0, big_endian: bool = False) -> Image:
    """Image built by hand: rows of `array` in the given byte order followed by `pad` junk bytes each."""
    height, width = array.shape[:2]
    wire = array.astype(array.dtype.newbyteorder(">" if big_endian else "<"))
    rows = wire.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, dtype=np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def header(frame_id: str = "camera_color_optical_frame", sec: int = 12, nanosec: int = 345) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def coloured_box(extents=(0.1, 0.2, 0.3), seed: int = 0) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents)
    rng = np.random.default_rng(seed)
    mesh.visual.vertex_colors = rng.integers(0, 256, size=(len(mesh.vertices), 4), dtype=np.uint8)
    return mesh


def reconstruction(object_id: str, label: str = "cup", seed: int = 0, mesh: trimesh.Trimesh | None = None) -> ObjectReconstruction:
    rng = np.random.default_rng(seed)
    mesh = coloured_box(seed=seed) if mesh is None else mesh
    return ObjectReconstruction(
        object_id=object_id,
        label=label,
        score=0.75,
        T_cam_obj=make_transform(rotation(rng), rng.normal(size=3) + [0, 0, 1.0]),
        size_obj=np.asarray(mesh.extents, dtype=float) if len(mesh.vertices) else np.full(3, 0.1),
        mesh_obj=mesh,
        mask=np.zeros((4, 4), dtype=bool),
    )


# ------------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("width", [1, 7, 10])
def test_round_trip_every_encoding(encoding: str, width: int) -> None:
    dtype, channels = ENCODINGS[encoding]
    array = random_image(np.random.default_rng(width), dtype, channels, height=5, width=width)
    msg = array_to_image_msg(array, encoding, header("cam"))
    assert msg.encoding == encoding and msg.width == width and msg.height == 5
    assert msg.step == width * channels * np.dtype(dtype).itemsize
    assert msg.header.frame_id == "cam"
    back = image_msg_to_array(msg)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[0, 0] = back[0, 0]  # writable


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 1, 3])
def test_row_padding_and_byte_order(encoding: str, big_endian: bool, pad: int) -> None:
    dtype, channels = ENCODINGS[encoding]
    array = random_image(np.random.default_rng(pad), dtype, channels, height=4, width=5)
    msg = raw_image(encoding, array, pad=pad, big_endian=big_endian)
    back = image_msg_to_array(msg)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype,encoding", [(">u2", "16UC1"), (">i4", "32SC1"), (">f4", "32FC1")])
def test_big_endian_array_round_trip(dtype: str, encoding: str) -> None:
    array = (np.arange(15).reshape(3, 5) * 1000 + 7).astype(dtype)
    msg = array_to_image_msg(array, encoding)
    assert msg.is_bigendian == 1
    assert bytes(msg.data[:4]) == array.tobytes()[:4]
    back = image_msg_to_array(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array.astype(back.dtype))


def test_bgr_to_rgb_channel_order() -> None:
    rgb = random_image(np.random.default_rng(1), np.uint8, 3)
    for encoding, stored in [("rgb8", rgb), ("bgr8", rgb[:, :, ::-1])]:
        np.testing.assert_array_equal(image_msg_to_rgb(array_to_image_msg(stored, encoding)), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_msg_to_rgb(array_to_image_msg(rgba, "rgba8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_msg_to_rgb(array_to_image_msg(bgra, "bgra8")), rgb)
    padded = raw_image("bgra8", bgra, pad=3)  # row padding is skipped
    np.testing.assert_array_equal(image_msg_to_rgb(padded), rgb)
    mono = rgb[:, :, 0].copy()
    out = image_msg_to_rgb(array_to_image_msg(mono, "mono8"))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.stack([mono] * 3, axis=-1))
    with pytest.raises(InputError, match="16UC1"):
        image_msg_to_rgb(array_to_image_msg(np.ones((2, 2), np.uint16), "16UC1"))


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_depth_millimetres_to_metres(encoding: str) -> None:
    mm = np.array([[0, 1, 1234], [65535, 500, 0]], dtype=np.uint16)
    metres = depth_msg_to_metres(array_to_image_msg(mm, encoding))
    assert metres.dtype == np.float32
    expected = np.array([[np.nan, 0.001, 1.234], [65.535, 0.5, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(metres, expected)


def test_depth_float_invalid_values_become_nan() -> None:
    depth = np.array([[1.5, np.inf, 0.0], [-2.0, np.nan, -np.inf], [0.25, 3.0, 1e-3]], dtype=np.float32)
    metres = depth_msg_to_metres(array_to_image_msg(depth, "32FC1"))
    expected = np.array([[1.5, np.nan, np.nan], [np.nan, np.nan, np.nan], [0.25, 3.0, 1e-3]], dtype=np.float32)
    np.testing.assert_array_equal(metres, expected)
    with pytest.raises(InputError, match="depth"):
        depth_msg_to_metres(array_to_image_msg(np.ones((2, 2, 3), np.uint8), "rgb8"))


def test_mask_labels() -> None:
    for encoding, dtype in [("mono8", np.uint8), ("8UC1", np.uint8), ("16UC1", np.uint16), ("32SC1", np.int32)]:
        labels = np.array([[0, 1, 2], [3, 0, 250]], dtype=dtype)
        out = mask_msg_to_labels(array_to_image_msg(labels, encoding))
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, labels)
    with pytest.raises(InputError, match="negative"):
        mask_msg_to_labels(array_to_image_msg(np.array([[0, -1]], dtype=np.int32), "32SC1"))
    with pytest.raises(InputError, match="32FC1"):
        mask_msg_to_labels(array_to_image_msg(np.zeros((2, 2), np.float32), "32FC1"))


def test_bad_images_raise_input_error() -> None:
    good = array_to_image_msg(np.zeros((3, 4), np.uint16), "16UC1")

    def variant(**changes) -> Image:
        msg = Image(height=good.height, width=good.width, encoding=good.encoding, step=good.step)
        msg.data = bytes(good.data)
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    with pytest.raises(InputError, match="unsupported image encoding 'yuv422'"):
        image_msg_to_array(variant(encoding="yuv422"))
    with pytest.raises(InputError, match="24 bytes but height\\*step"):
        image_msg_to_array(variant(step=10))
    with pytest.raises(InputError, match="20 bytes but height\\*step = 3\\*8 = 24"):
        image_msg_to_array(variant(data=bytes(20)))
    with pytest.raises(InputError, match="step 6 is smaller than width\\*bytes per pixel = 4\\*2 = 8"):
        image_msg_to_array(variant(step=6, data=bytes(18)))
    with pytest.raises(InputError, match="empty"):
        image_msg_to_array(variant(height=0, data=b""))
    with pytest.raises(InputError, match="empty"):
        image_msg_to_array(variant(width=0, step=0, data=b""))
    with pytest.raises(InputError, match="dtype uint16"):
        array_to_image_msg(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(InputError, match="HxWx3"):
        array_to_image_msg(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(InputError, match="empty"):
        array_to_image_msg(np.zeros((0, 2), np.uint8), "mono8")


# ----------------------------------------------------------------------------------------------- cameras


def test_camera_info_to_intrinsics_exact() -> None:
    msg = CameraInfo(width=640, height=480)
    msg.k = [615.25, 0.0, 321.5, 0.0, 614.75, 239.125, 0.0, 0.0, 1.0]
    intrinsics = camera_info_to_intrinsics(msg)
    assert intrinsics == CameraIntrinsics(640, 480, 615.25, 614.75, 321.5, 239.125)
    back = intrinsics_to_camera_info(intrinsics, header("cam"))
    assert camera_info_to_intrinsics(back) == intrinsics
    assert back.header.frame_id == "cam" and back.distortion_model == "plumb_bob"
    assert list(back.d) == [0.0] * 5
    np.testing.assert_array_equal(np.reshape(back.p, (3, 4))[:, :3], intrinsics.K)


def test_bad_camera_info_raises() -> None:
    msg = CameraInfo(width=640, height=0)
    msg.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    with pytest.raises(InputError, match="640x0 is empty"):
        camera_info_to_intrinsics(msg)
    uncalibrated = CameraInfo(width=640, height=480)
    with pytest.raises(InputError, match="not positive"):
        camera_info_to_intrinsics(uncalibrated)


# -------------------------------------------------------------------------------------------- detections


def detection(cx: float, cy: float, sx: float, sy: float, det_id: str = "", results=()) -> Detection2D:
    det = Detection2D(id=det_id)
    det.bbox.center.position.x, det.bbox.center.position.y = float(cx), float(cy)
    det.bbox.center.theta = 0.3
    det.bbox.size_x, det.bbox.size_y = float(sx), float(sy)
    for class_id, score in results:
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = class_id, score
        det.results.append(hypothesis)
    return det


def test_detections_to_prompts() -> None:
    msg = Detection2DArray(header=header())
    msg.detections = [
        detection(50, 40, 20, 10, det_id="mug-3", results=[("cup", 0.4), ("mug", 0.9), ("bowl", 0.2)]),
        detection(5, 95, 30, 20),  # clipped at the left and bottom
        detection(120, -2, 30, 10, results=[("box", 0.6)]),  # clipped at the right and top
    ]
    prompts, errors = detections2d_to_prompts(msg, width=128, height=100)
    assert errors == []
    assert [p.object_id for p in prompts] == ["mug-3", "2", "3"]
    assert [p.label for p in prompts] == ["mug", "", "box"]
    assert [p.score for p in prompts] == [0.9, 1.0, 0.6]
    assert prompts[0].bbox_xyxy == (40.0, 35.0, 60.0, 45.0)
    assert prompts[1].bbox_xyxy == (0.0, 85.0, 20.0, 100.0)
    assert prompts[2].bbox_xyxy == (105.0, 0.0, 128.0, 3.0)
    assert all(p.mask is None for p in prompts)


def test_bad_detections_cost_only_themselves() -> None:
    good = detection(50, 40, 20, 10, det_id="good")
    for bad, expected in [
        (detection(10, 10, 0, 5, det_id="a"), "object a: invalid box: centre (10, 10), size 0x5"),
        (detection(10, 10, float("nan"), 5), "object 2: invalid box: centre (10, 10), size nanx5"),
        (detection(500, 10, 10, 10, det_id="far"),
         "object far: box [495, 5, 505, 15] (x_min, y_min, x_max, y_max) lies outside the 128x100 image"),
        (detection(20, 20, 4, 4, "good"), "object good: detection 1 repeats the id of an earlier one (the first is kept)"),
    ]:
        prompts, errors = detections2d_to_prompts(Detection2DArray(detections=[good, bad]), 128, 100)
        assert [p.object_id for p in prompts] == ["good"] and prompts[0].bbox_xyxy == (40.0, 35.0, 60.0, 45.0)
        assert errors == [expected]
    with pytest.raises(InputError, match="image size 0x100"):
        detections2d_to_prompts(Detection2DArray(detections=[good]), 0, 100)


def test_stamps() -> None:
    assert stamp_to_ns(Time(sec=12, nanosec=345)) == 12_000_000_345
    stamp = ns_to_stamp(1_700_000_000_123_456_789)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert stamp_to_ns(ns_to_stamp(-1)) == -1
    with pytest.raises(InputError, match="int32"):
        ns_to_stamp(2**31 * 1_000_000_000)


# ----------------------------------------------------------------------------------------------- outputs


def test_detection3d_array_pose_size_header() -> None:
    objects = [reconstruction("a", "cup", seed=1), reconstruction("b", "", seed=2)]
    hdr = header("optical", 5, 6)
    msg = make_detection3d_array(hdr, objects)
    hdr.frame_id = "changed-later"  # the header is copied, not shared
    assert msg.header.frame_id == "optical" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, 6)
    assert len(msg.detections) == 2
    for obj, det in zip(objects, msg.detections):
        assert det.header.frame_id == "optical" and det.header.stamp.nanosec == 6
        assert det.id == obj.object_id
        for pose in (det.bbox.center, det.results[0].pose.pose):
            q = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
            np.testing.assert_allclose(matrix_from_quaternion_xyzw(q), obj.T_cam_obj[:3, :3], atol=1e-9)
            np.testing.assert_allclose([pose.position.x, pose.position.y, pose.position.z], obj.T_cam_obj[:3, 3], atol=1e-12)
        np.testing.assert_allclose([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z], obj.size_obj)
        assert len(det.results) == 1
        assert det.results[0].hypothesis.class_id == obj.label and det.results[0].hypothesis.score == 0.75
    # With a reconstruction confidence, the hypothesis score is the detection's score times it.
    objects[0].confidence = 0.5
    assert make_detection3d_array(hdr, objects).detections[0].results[0].hypothesis.score == pytest.approx(0.375)


def test_detection3d_bbox_is_centred_on_a_fused_meshs_box() -> None:
    """A box off the object's origin (box_centre_obj) moves the bbox centre along the object's axes; the
    hypothesis pose stays the object's pose (its TF frame)."""
    obj = reconstruction("a", "cup", seed=5)
    obj.box_centre_obj = np.array([0.03, -0.01, 0.02])
    det = make_detection3d_array(header("optical", 1, 2), [obj]).detections[0]
    centre = det.bbox.center.position
    np.testing.assert_allclose([centre.x, centre.y, centre.z], obj.T_cam_obj[:3, :3] @ obj.box_centre_obj + obj.T_cam_obj[:3, 3],
                               atol=1e-12)
    pose = det.results[0].pose.pose.position
    np.testing.assert_allclose([pose.x, pose.y, pose.z], obj.T_cam_obj[:3, 3], atol=1e-12)


def test_transforms_frames_and_parent() -> None:
    objects = [reconstruction("mug 3/a-b", seed=3), reconstruction("7", seed=4)]
    tfs = make_transforms(header("optical", 1, 2), objects, "sam3d_")
    assert [tf.child_frame_id for tf in tfs] == ["sam3d_mug_3_a_b", "sam3d_7"]
    assert frame_name("obj_", "a.b c") == "obj_a_b_c"
    for obj, tf in zip(objects, tfs):
        assert tf.header.frame_id == "optical" and (tf.header.stamp.sec, tf.header.stamp.nanosec) == (1, 2)
        r = tf.transform.rotation
        np.testing.assert_allclose(matrix_from_quaternion_xyzw([r.x, r.y, r.z, r.w]), obj.T_cam_obj[:3, :3], atol=1e-9)
        t = tf.transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], obj.T_cam_obj[:3, 3])


def test_marker_array_triangles_colours_and_stable_ids() -> None:
    objects = [reconstruction("a", "cup", seed=5), reconstruction("b", "", seed=6)]
    marker_ids: dict[str, int] = {}
    msg = make_marker_array(header("optical"), objects, marker_ids)
    assert marker_ids == {"a": 0, "b": 1}
    meshes = [m for m in msg.markers if m.type == Marker.TRIANGLE_LIST]
    texts = [m for m in msg.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert [m.id for m in meshes] == [0, 1] and [m.id for m in texts] == [0, 1]
    assert {m.ns for m in meshes} == {"sam3d"} and {m.ns for m in texts} == {"sam3d_label"}
    assert [m.text for m in texts] == ["a: cup", "b"]
    for obj, marker, label in zip(objects, meshes, texts):
        mesh = obj.mesh_obj
        assert marker.action == Marker.ADD and marker.header.frame_id == "optical" and marker.header.stamp.sec == 12
        assert len(marker.points) == 3 * len(mesh.faces) == len(marker.colors)
        points = np.array([[p.x, p.y, p.z] for p in marker.points])
        np.testing.assert_allclose(points, mesh.vertices[mesh.faces].reshape(-1, 3))
        colors = np.array([[c.r, c.g, c.b, c.a] for c in marker.colors])
        np.testing.assert_allclose(colors, mesh.visual.vertex_colors[mesh.faces].reshape(-1, 4) / 255.0, atol=1e-6)
        assert (marker.scale.x, marker.scale.y, marker.scale.z) == (1.0, 1.0, 1.0) and marker.color.a == 1.0
        np.testing.assert_allclose([marker.pose.position.x, marker.pose.position.y, marker.pose.position.z], obj.T_cam_obj[:3, 3])
        top = (mesh.vertices @ obj.T_cam_obj[:3, :3].T + obj.T_cam_obj[:3, 3])[:, 1].min()
        assert label.pose.position.y < top  # above the object in the optical frame (-y is up)

    # ids stay stable, new objects get the next free id
    again = make_marker_array(header("optical"), [reconstruction("c"), objects[1]], marker_ids, text=False)
    assert marker_ids == {"a": 0, "b": 1, "c": 2}
    assert [m.id for m in again.markers] == [2, 1]
    deletes = make_delete_markers(header("optical"), [0, 2])
    assert [(m.ns, m.id, m.action) for m in deletes.markers] == [
        ("sam3d", 0, Marker.DELETE),
        ("sam3d_label", 0, Marker.DELETE),
        ("sam3d", 2, Marker.DELETE),
        ("sam3d_label", 2, Marker.DELETE),
    ]


def test_marker_of_mesh_without_faces_is_deleted() -> None:
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    obj = reconstruction("e", "thing", mesh=empty)
    msg = make_marker_array(header(), [obj], {"other": 4})
    assert [(m.type, m.action, m.id) for m in msg.markers] == [
        (Marker.TRIANGLE_LIST, Marker.DELETE, 5),
        (Marker.TEXT_VIEW_FACING, Marker.ADD, 5),
    ]
    assert msg.markers[1].pose.position.y < obj.T_cam_obj[1, 3]
    assert gc.isenabled()


def test_a_mesh_over_the_marker_budget_is_shown_decimated_closed_coloured_and_on_its_surface() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.05)  # 5120 faces, closed
    top = mesh.vertices[:, 2] > 0
    mesh.visual.vertex_colors = np.where(top[:, None], [200, 10, 10, 255], [10, 20, 200, 128]).astype(np.uint8)
    marker = make_marker_array(header(), [reconstruction("s", mesh=mesh)], {}, text=False, max_triangles=500).markers[0]
    assert 400 <= len(marker.points) // 3 <= 500 and len(marker.points) == len(marker.colors)
    corners = np.array([[p.x, p.y, p.z] for p in marker.points])
    # On the original surface (a sphere of 5 cm; its facets lie within 0.3 mm of it), within 1 mm.
    assert np.abs(np.linalg.norm(corners, axis=1) - 0.05).max() < 1e-3
    # No holes: the triangles close up again (every edge shared by exactly two of them), unlike a subset of faces.
    shown = trimesh.Trimesh(corners, np.arange(len(corners)).reshape(-1, 3), process=True)
    assert shown.is_watertight and abs(shown.volume - mesh.volume) < 0.05 * mesh.volume
    # Each corner keeps the colour of its part of the mesh (no blending: only the two colours given).
    rgba = np.array([[c.r, c.g, c.b, c.a] for c in marker.colors])
    red = np.all(np.isclose(rgba, [200 / 255, 10 / 255, 10 / 255, 1.0], atol=1e-6), axis=1)
    blue = np.all(np.isclose(rgba, [10 / 255, 20 / 255, 200 / 255, 128 / 255], atol=1e-6), axis=1)
    assert np.all(red | blue)
    assert np.all(corners[red, 2] > -0.01) and np.all(corners[blue, 2] < 0.01)


def test_marker_budget_below_a_tetrahedron_takes_strided_faces() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=3)  # 1280 faces
    mesh.visual.vertex_colors = np.tile([10, 20, 30, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    marker = make_marker_array(header(), [reconstruction("s", mesh=mesh)], {}, text=False, max_triangles=3).markers[0]
    assert len(marker.points) == 9 == len(marker.colors)
    points = np.array([[p.x, p.y, p.z] for p in marker.points]).reshape(-1, 3, 3)
    corners = mesh.vertices[mesh.faces]
    picked = [int(np.argmin(np.abs(corners - tri).sum(axis=(1, 2)))) for tri in points]
    assert picked == [0, 426, 853]  # spread over the whole mesh
    np.testing.assert_allclose([marker.colors[0].r, marker.colors[0].a], [10 / 255, 1.0], atol=1e-6)


def test_marker_of_5000_unshared_faces_has_every_corner() -> None:
    """Worst case for the marker builder (speed is measured by the benchmark, not asserted here)."""
    mesh = trimesh.creation.icosphere(subdivisions=4)
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces[:5000], process=False)
    mesh.unmerge_vertices()  # no shared vertices, 15000 distinct corners
    mesh.visual.vertex_colors = np.random.default_rng(0).integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    obj = reconstruction("big", mesh=mesh)
    marker = make_marker_array(header(), [obj], {}, text=False).markers[0]
    assert len(marker.points) == 15000 and len(marker.colors) == 15000
    np.testing.assert_allclose([marker.points[7].x, marker.points[7].y, marker.points[7].z], mesh.vertices[mesh.faces[2, 1]])


def test_non_metric_objects_are_flagged_in_their_detection() -> None:
    metric = reconstruction("a", seed=1)
    scaled = reconstruction("b", seed=2)
    scaled.metric_scale = False
    detections = make_detection3d_array(header(), [metric, scaled]).detections
    assert detections[0].results[0].pose.covariance[0] == 0.0
    assert detections[1].results[0].pose.covariance[0] == -1.0
    assert list(detections[1].results[0].pose.covariance[1:]) == [0.0] * 35


# ------------------------------------------------------------------------------------ output frame, markers

# base_link <- optical frame of a camera 1.2 m up looking along base x: optical z -> x, x -> -y, y -> -z.
T_BASE_CAM = make_transform(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), [0.5, 0.0, 1.2])


def pose_matrix(pose) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return transform_from_pose([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def test_poses_in_the_output_frame_are_t_frame_cam_times_t_cam_obj() -> None:
    upright = reconstruction("u", seed=1)
    upright.T_cam_obj = make_transform(np.eye(3), [0.1, 0.2, 1.0])  # 1 m ahead, 0.1 m right, 0.2 m down
    turned = reconstruction("t", seed=2)  # random rotation and position
    hdr = header("base_link", 3, 4)
    detections = make_detection3d_array(hdr, [upright, turned], T_frame_cam=T_BASE_CAM).detections
    tfs = make_transforms(hdr, [upright, turned], "sam3d_", T_frame_cam=T_BASE_CAM)
    # by hand: (0.1, 0.2, 1.0) in the optical frame is (1.0, -0.1, -0.2) from the camera in base axes
    center = detections[0].bbox.center
    assert (center.position.x, center.position.y, center.position.z) == pytest.approx((1.5, -0.1, 1.0), abs=1e-12)
    np.testing.assert_allclose(pose_matrix(center)[:3, :3], T_BASE_CAM[:3, :3], atol=1e-12)
    for obj, det, tf in zip([upright, turned], detections, tfs):
        expected = T_BASE_CAM @ obj.T_cam_obj
        assert det.header.frame_id == "base_link" and tf.header.frame_id == "base_link"
        np.testing.assert_allclose(pose_matrix(det.bbox.center), expected, atol=1e-12)
        np.testing.assert_allclose(pose_matrix(det.results[0].pose.pose), expected, atol=1e-12)
        t, r = tf.transform.translation, tf.transform.rotation
        np.testing.assert_allclose(transform_from_pose([t.x, t.y, t.z], [r.x, r.y, r.z, r.w]), expected, atol=1e-12)
    assert not np.allclose(T_BASE_CAM @ turned.T_cam_obj, turned.T_cam_obj @ T_BASE_CAM, atol=1e-3)  # order matters
    skewed = T_BASE_CAM.copy()
    skewed[:3, :3] *= 2.0
    with pytest.raises(InputError, match="T_frame_cam must be a rigid transform"):
        make_transforms(hdr, [upright], "sam3d_", T_frame_cam=skewed)
    with pytest.raises(InputError, match="T_frame_cam must be a finite 4x4"):
        make_detection3d_array(hdr, [upright], T_frame_cam=np.full((4, 4), np.nan))


def test_markers_in_the_output_frame_and_label_above_along_z() -> None:
    obj = reconstruction("a", "cup", seed=7)
    mesh_marker, label = make_marker_array(header("base_link"), [obj], {}, T_frame_cam=T_BASE_CAM).markers
    T_base_obj = T_BASE_CAM @ obj.T_cam_obj
    assert mesh_marker.header.frame_id == "base_link" and not mesh_marker.frame_locked and not label.frame_locked
    np.testing.assert_allclose(pose_matrix(mesh_marker.pose), T_base_obj, atol=1e-12)
    points = np.array([[p.x, p.y, p.z] for p in mesh_marker.points])  # still in the object frame
    np.testing.assert_allclose(points, obj.mesh_obj.vertices[obj.mesh_obj.faces].reshape(-1, 3))
    top_z = transform_points(T_base_obj, obj.mesh_obj.vertices)[:, 2].max()
    assert top_z < label.pose.position.z < top_z + 0.2  # base_link is z-up (REP 103)
    np.testing.assert_allclose([label.pose.position.x, label.pose.position.y], T_base_obj[:2, 3])


@pytest.mark.parametrize("T_frame_cam", [None, T_BASE_CAM])
def test_frame_locked_markers_sit_in_the_object_frame(T_frame_cam: np.ndarray | None) -> None:
    objects = [reconstruction("mug 1", "mug", seed=8), reconstruction("b", "", seed=9)]
    msg = make_marker_array(header("frame", 7, 8), objects, {}, T_frame_cam=T_frame_cam, frame_locked_prefix="obj_")
    assert [m.header.frame_id for m in msg.markers] == ["obj_mug_1", "obj_mug_1", "obj_b", "obj_b"]
    assert all(m.frame_locked for m in msg.markers)
    assert all((m.header.stamp.sec, m.header.stamp.nanosec) == (7, 8) for m in msg.markers)
    for obj, mesh_marker, label in zip(objects, msg.markers[0::2], msg.markers[1::2]):
        assert mesh_marker.type == Marker.TRIANGLE_LIST and label.type == Marker.TEXT_VIEW_FACING
        np.testing.assert_array_equal(pose_matrix(mesh_marker.pose), np.eye(4))
        assert len(mesh_marker.points) == 3 * len(obj.mesh_obj.faces)
        # the label, in the object frame, lies above the object in the output frame
        T_out_obj = obj.T_cam_obj if T_frame_cam is None else T_frame_cam @ obj.T_cam_obj
        up = np.array([0.0, -1.0, 0.0]) if T_frame_cam is None else np.array([0.0, 0.0, 1.0])
        p = label.pose.position
        label_out = transform_points(T_out_obj, [p.x, p.y, p.z])[0]
        assert label_out @ up > (transform_points(T_out_obj, obj.mesh_obj.vertices) @ up).max()
        np.testing.assert_allclose(label_out - (label_out @ up) * up, T_out_obj[:3, 3] - (T_out_obj[:3, 3] @ up) * up, atol=1e-9)


def test_mesh_resource_markers_for_objects_with_a_mesh_file() -> None:
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    objects = [reconstruction("a", seed=1), reconstruction("b", seed=2), reconstruction("c", mesh=empty)]
    uris = {"a": "file:///tmp/cache/a_v3.glb", "c": "file:///tmp/cache/c_v1.glb"}
    msg = make_marker_array(header("base_link"), objects, {}, text=False, T_frame_cam=T_BASE_CAM, mesh_uris=uris)
    a, b, c = msg.markers
    for marker, obj, uri in [(a, objects[0], uris["a"]), (c, objects[2], uris["c"])]:
        assert (marker.type, marker.action) == (Marker.MESH_RESOURCE, Marker.ADD)
        assert marker.mesh_resource == uri and marker.mesh_use_embedded_materials
        assert (marker.scale.x, marker.scale.y, marker.scale.z) == (1.0, 1.0, 1.0)
        assert (marker.color.r, marker.color.g, marker.color.b, marker.color.a) == (1.0, 1.0, 1.0, 1.0)
        assert len(marker.points) == 0 and len(marker.colors) == 0
        np.testing.assert_allclose(pose_matrix(marker.pose), T_BASE_CAM @ obj.T_cam_obj, atol=1e-12)
    assert b.type == Marker.TRIANGLE_LIST and b.mesh_resource == "" and len(b.points) == 3 * len(objects[1].mesh_obj.faces)
    locked = make_marker_array(header(), objects[:1], {}, text=False, frame_locked_prefix="o_", mesh_uris=uris).markers[0]
    assert locked.type == Marker.MESH_RESOURCE and locked.frame_locked and locked.header.frame_id == "o_a"
    np.testing.assert_array_equal(pose_matrix(locked.pose), np.eye(4))
    with pytest.raises(InputError, match="mesh URI of object 'a'"):
        make_marker_array(header(), objects[:1], {}, mesh_uris={"a": ""})


# ------------------------------------------------------------------------------------------------- MoveIt


def moveit_msgs():
    return pytest.importorskip("moveit_msgs.msg", reason="moveit_msgs is not installed")


def test_collision_object_add_move_remove() -> None:
    msgs = moveit_msgs()
    from rclpy.serialization import deserialize_message, serialize_message

    obj = reconstruction("mug 3", seed=11)
    mesh = obj.mesh_obj
    hdr = header("base_link", 5, 6)
    add = make_collision_object(hdr, "mug 3", "add", obj, T_frame_cam=T_BASE_CAM)
    hdr.frame_id = "changed-later"
    assert (add.id, add.operation, add.header.frame_id) == ("mug 3", msgs.CollisionObject.ADD, "base_link")
    assert (add.header.stamp.sec, add.header.stamp.nanosec) == (5, 6)
    np.testing.assert_allclose(pose_matrix(add.pose), T_BASE_CAM @ obj.T_cam_obj, atol=1e-12)
    assert len(add.meshes) == 1 and len(add.mesh_poses) == 1 and len(add.primitives) == 0
    np.testing.assert_array_equal(pose_matrix(add.mesh_poses[0]), np.eye(4))
    shape = add.meshes[0]
    assert len(shape.vertices) == len(mesh.vertices) == 8 and len(shape.triangles) == len(mesh.faces) == 12
    np.testing.assert_array_equal([[v.x, v.y, v.z] for v in shape.vertices], mesh.vertices)  # object frame
    np.testing.assert_array_equal([list(t.vertex_indices) for t in shape.triangles], mesh.faces)
    back = deserialize_message(serialize_message(add), msgs.CollisionObject)  # the fast-filled fields serialize
    np.testing.assert_array_equal([list(t.vertex_indices) for t in back.meshes[0].triangles], mesh.faces)
    assert back.meshes[0].vertices[5].z == mesh.vertices[5, 2]

    coarse = trimesh.creation.icosphere(subdivisions=0, radius=0.05)  # e.g. a decimated collision mesh
    add_coarse = make_collision_object(hdr, "mug 3", "add", obj, T_frame_cam=T_BASE_CAM, mesh_obj=coarse)
    np.testing.assert_array_equal([list(t.vertex_indices) for t in add_coarse.meshes[0].triangles], coarse.faces)
    np.testing.assert_allclose(pose_matrix(add_coarse.pose), T_BASE_CAM @ obj.T_cam_obj, atol=1e-12)

    move = make_collision_object(header("optical"), "mug 3", "MOVE", obj)
    assert (move.operation, move.header.frame_id) == (msgs.CollisionObject.MOVE, "optical")
    np.testing.assert_allclose(pose_matrix(move.pose), obj.T_cam_obj, atol=1e-12)
    assert len(move.meshes) == len(move.mesh_poses) == len(move.primitives) == 0

    remove = make_collision_object(header("base_link"), "mug 3", "remove")
    assert (remove.id, remove.operation) == ("mug 3", msgs.CollisionObject.REMOVE)
    assert len(remove.meshes) == len(remove.mesh_poses) == 0
    np.testing.assert_array_equal(pose_matrix(remove.pose), np.eye(4))


def test_collision_object_bad_input() -> None:
    moveit_msgs()
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    with pytest.raises(InputError, match="'e' has an empty mesh"):
        make_collision_object(header(), "e", "add", reconstruction("e", mesh=empty))
    lost = reconstruction("n", seed=3)
    lost.T_cam_obj = lost.T_cam_obj.copy()
    lost.T_cam_obj[0, 3] = np.nan
    for operation in ("add", "move"):
        with pytest.raises(InputError, match="'n' T_cam_obj must be a finite 4x4"):
            make_collision_object(header(), "n", operation, lost)
    with pytest.raises(InputError, match="needs its reconstruction for 'move'"):
        make_collision_object(header(), "n", "move")
    with pytest.raises(InputError, match="'append' is not one of add, move, remove"):
        make_collision_object(header(), "n", "append", reconstruction("n"))


def test_planning_scene_diff() -> None:
    msgs = moveit_msgs()
    objects = [
        make_collision_object(header("base_link"), "a", "add", reconstruction("a", seed=1)),
        make_collision_object(header("base_link"), "b", "remove"),
    ]
    scene = make_planning_scene_diff(objects)
    assert isinstance(scene, msgs.PlanningScene) and scene.is_diff and scene.robot_state.is_diff
    assert [(o.id, o.operation) for o in scene.world.collision_objects] == [
        ("a", msgs.CollisionObject.ADD),
        ("b", msgs.CollisionObject.REMOVE),
    ]
    assert len(scene.world.collision_objects[0].meshes[0].triangles) == 12
    assert len(make_planning_scene_diff([]).world.collision_objects) == 0
    with pytest.raises(InputError, match="item 1 is a Marker"):
        make_planning_scene_diff([objects[0], Marker()])


# -------------------------------------------------------------------------------------------- diagnostics


def test_diagnostic_array() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    statuses = [
        DiagnosticEntry("sam3d: tracker", "camera_1", "ok", "3 objects",
                        {"rate_hz": 29.970029, "objects": 3, "backend": "depth", "metric": True}),
        ("sam3d: worker", "gpu0", "WARN", "slow", {"latency_s": np.float32(0.1), "big": 1234567.0, "bad": float("nan")}),
        ("sam3d: camera", "", "error", "no images"),
        DiagnosticEntry("sam3d: tf", level="stale"),
    ]
    msg = make_diagnostic_array(Time(sec=9, nanosec=10), statuses)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (9, 10)
    assert [s.level for s in msg.status] == [DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE]
    assert [(s.name, s.hardware_id, s.message) for s in msg.status] == [
        ("sam3d: tracker", "camera_1", "3 objects"),
        ("sam3d: worker", "gpu0", "slow"),
        ("sam3d: camera", "", "no images"),
        ("sam3d: tf", "", ""),
    ]
    assert [(kv.key, kv.value) for kv in msg.status[0].values] == [
        ("rate_hz", "29.97"), ("objects", "3"), ("backend", "depth"), ("metric", "true"),
    ]
    assert [(kv.key, kv.value) for kv in msg.status[1].values] == [("latency_s", "0.1"), ("big", "1.23457e+06"), ("bad", "nan")]
    assert len(msg.status[2].values) == 0
    by_ns = make_diagnostic_array(12_000_000_345, [])
    assert (by_ns.header.stamp.sec, by_ns.header.stamp.nanosec) == (12, 345) and len(by_ns.status) == 0
    with pytest.raises(InputError, match="level 'fine' is not one of ok, warn, error, stale"):
        make_diagnostic_array(Time(), [("x", "", "fine", "")])
    with pytest.raises(InputError, match="diagnostic status 0 must be"):
        make_diagnostic_array(Time(), [("x", "", "ok", "", {}, "extra")])
    with pytest.raises(InputError, match="empty name"):
        make_diagnostic_array(Time(), [DiagnosticEntry("")])


def test_plain_message_api_builds_the_same_collision_mesh() -> None:
    """`plain=True` (what bench-messages compares with) and the slot-filling path give equal messages; the fast path
    leaves the garbage collector as it found it."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    assert make_shape_mesh("a", mesh) == make_shape_mesh("a", mesh, plain=True)
    points, colors = make_triangle_list(mesh, 100)
    assert len(points) == len(colors) == 300
    gc.disable()
    try:
        make_shape_mesh("a", mesh)
        assert not gc.isenabled()
    finally:
        gc.enable()
    make_shape_mesh("a", mesh)
    assert gc.isenabled()


def test_transform_stamped_round_trips_through_its_matrix():
    T_world_cam = make_transform(matrix_from_quaternion_xyzw(np.array([0.1, -0.3, 0.2, 0.9]) / np.linalg.norm([0.1, -0.3, 0.2, 0.9])),
                                 [0.4, -0.1, 1.2])
    msg = make_transform_stamped("world", "camera", T_world_cam, 1_750_000_000_123_456_789)
    parent, child, stamp_ns, T = transform_stamped_to_matrix(msg)
    assert (parent, child, stamp_ns) == ("world", "camera", 1_750_000_000_123_456_789)
    np.testing.assert_allclose(T, T_world_cam, atol=1e-12)


def test_grasp_messages_are_best_first_over_all_objects_in_the_output_frame():
    from visualization_msgs.msg import Marker

    from sam3d_ros.geometry.grasps import Grasp
    from sam3d_ros.geometry.gripper import GripperParams
    from sam3d_ros.geometry.transforms import make_transform
    from sam3d_ros.geometry.types import ObjectReconstruction

    def obj(object_id, x, scores):
        mesh = trimesh.creation.box([0.05, 0.05, 0.05])
        grasps = [Grasp(make_transform(np.eye(3), [0.0, 0.0, 0.01 * k]), 0.05, s) for k, s in enumerate(scores)]
        return ObjectReconstruction(object_id, "box", 1.0, make_transform(np.eye(3), [x, 0.0, 1.0]), np.full(3, 0.05),
                                    mesh, np.zeros((2, 2), bool), grasps_obj=grasps)

    header = Header(frame_id="world")
    header.stamp.sec = 7
    T_world_cam = make_transform(np.eye(3), [0.0, 0.0, 0.5])
    gripper = GripperParams()
    messages = make_grasp_messages(header, [obj("a", 0.1, [0.9, 0.5]), obj("b", -0.1, [0.7])], gripper,
                                               ["j1", "j2"], T_frame_cam=T_world_cam)
    assert messages.poses.header.frame_id == "world" and messages.poses.header.stamp.sec == 7
    xs = [p.position.x for p in messages.poses.poses]
    assert xs == pytest.approx([0.1, -0.1, 0.1])  # scores 0.9 (a), 0.7 (b), 0.5 (a)
    assert messages.poses.poses[0].position.z == pytest.approx(1.5)
    marker = messages.markers.markers[0]
    assert marker.type == Marker.LINE_LIST and len(marker.points) == 8 * 3 and len(marker.colors) == 8 * 3
    assert marker.colors[0].r < marker.colors[-1].r  # the worse, the redder
    if messages.grasps is not None:  # sam3d_ros_msgs built
        assert [g.object_id for g in messages.grasps.grasps] == ["a", "b", "a"]
        grasp = messages.grasps.grasps[0].grasp
        assert grasp.grasp_pose.header.frame_id == "world" and grasp.grasp_quality == pytest.approx(0.9)
        assert list(grasp.pre_grasp_posture.joint_names) == ["j1", "j2"]
        assert grasp.pre_grasp_posture.points[0].positions[0] == pytest.approx(gripper.pre_grasp_opening(0.05) / 2)
        assert grasp.grasp_posture.points[0].effort[0] == pytest.approx(gripper.max_force_n)
        assert grasp.allowed_touch_objects == ["a"]
    empty = make_grasp_messages(header, [obj("c", 0.0, [])], gripper)
    assert empty.poses.poses == [] and empty.markers.markers[0].action == Marker.DELETEALL


def _grasped_box(object_id: str, x: float, scores: list[float], yaw: float = 0.0):
    from scipy.spatial.transform import Rotation

    from sam3d_ros.geometry.grasps import Grasp
    from sam3d_ros.geometry.transforms import make_transform
    from sam3d_ros.geometry.types import ObjectReconstruction

    grasps = [Grasp(make_transform(Rotation.from_euler("xz", [0.3 * k, 0.2]).as_matrix(), [0.0, 0.01 * k, 0.02]),
                    0.04 + 0.01 * k, s) for k, s in enumerate(scores)]
    T_cam_obj = make_transform(Rotation.from_euler("z", yaw).as_matrix(), [x, 0.0, 1.0])
    return ObjectReconstruction(object_id, "box", 1.0, T_cam_obj, np.full(3, 0.05), trimesh.creation.box([0.05] * 3),
                                np.zeros((2, 2), bool), grasps_obj=grasps)


def test_a_grasp_message_stream_reuses_its_messages_and_equals_fresh_ones_every_frame():
    from dataclasses import replace

    from sam3d_ros.geometry.gripper import GripperParams
    from sam3d_ros.geometry.transforms import make_transform
    from sam3d_ros.ros.conversions import GraspMessageBuilder

    gripper = GripperParams()
    builder = GraspMessageBuilder(gripper, ["j1", "j2"])
    a, b = _grasped_box("a", 0.1, [0.9, 0.5, 0.4]), _grasped_box("b", -0.1, [0.7, 0.6])
    T_world_cam = make_transform(np.eye(3), [0.0, 0.0, 0.5])
    for frame, (objects, yaw_b) in enumerate([([a, b], 0.0), ([a, b], 0.4), ([a, b], 1.1)]):
        moved = [objects[0], replace(objects[1], T_cam_obj=_grasped_box("b", -0.1 + 0.01 * frame, [], yaw_b).T_cam_obj)]
        header = Header(frame_id="world")
        header.stamp.sec = 10 + frame
        streamed = builder.build(header, moved, T_frame_cam=T_world_cam)
        fresh = make_grasp_messages(header, moved, gripper, ["j1", "j2"], T_frame_cam=T_world_cam)
        assert streamed.poses == fresh.poses and streamed.markers == fresh.markers
        if fresh.grasps is not None:  # sam3d_ros_msgs built
            assert streamed.grasps == fresh.grasps
            assert streamed.grasps.grasps[-1].grasp.post_grasp_retreat.direction.header.stamp.sec == 10 + frame
        assert streamed.poses.poses[1].position.x == pytest.approx(-0.1 + 0.01 * frame)  # b's best grasp moves with b
    assert builder.rebuilds == 1  # the same grasp lists: the messages were made once and only updated
    built = builder.objects_built
    new_b = _grasped_box("b", -0.1, [0.95])  # b's new mesh comes with new grasps: now best
    streamed = builder.build(Header(frame_id="world"), [a, new_b], T_frame_cam=T_world_cam)
    assert builder.rebuilds == 2 and len(streamed.poses.poses) == 4
    if streamed.grasps is not None:  # only b's messages were made anew; a's kept ones moved down a rank
        assert builder.objects_built == built + 1
        assert [g.grasp.id for g in streamed.grasps.grasps] == ["b_0", "a_1", "a_2", "a_3"]
    assert streamed == make_grasp_messages(Header(frame_id="world"), [a, new_b], gripper, ["j1", "j2"], T_frame_cam=T_world_cam)
    assert builder.build(Header(), [a]).poses.poses[0].position.x == pytest.approx(0.1) and builder.rebuilds == 3


def test_only_the_grasp_messages_asked_for_are_built():
    from sam3d_ros.geometry.gripper import GripperParams
    from sam3d_ros.geometry.types import InputError

    objects = [_grasped_box("a", 0.1, [0.9])]
    only_poses = make_grasp_messages(Header(), objects, GripperParams(), outputs={"poses"})
    assert len(only_poses.poses.poses) == 1 and only_poses.markers is None and only_poses.grasps is None
    only_markers = make_grasp_messages(Header(), objects, GripperParams(), outputs={"markers"})
    assert only_markers.poses is None and len(only_markers.markers.markers[0].points) == 8
    with pytest.raises(InputError, match="unknown grasp outputs"):
        make_grasp_messages(Header(), objects, GripperParams(), outputs={"pose"})
