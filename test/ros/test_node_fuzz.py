"""Fuzz: malformed and inconsistent messages between good frames. After every bad one the node is alive, has logged
no traceback, and publishes every object of the next good frame. One node process over real DDS."""
import itertools
import math

import numpy as np
import pytest
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from sam3d_ros.ros.conversions import array_to_image_msg, intrinsics_to_camera_info, ns_to_stamp
from sam3d_ros.ros.ros_client import running_node
from sam3d_ros.tools.synthetic import random_tabletop_scene

FRAME_ID = "camera_color_optical_frame"
_stamps = itertools.count()


def _stamp_ns() -> int:
    return 1_780_000_000_000_000_000 + next(_stamps) * 200_000_000


def _detections(header, boxes, ids=None, scores=None):
    """Detection2DArray of (cx, cy, w, h) boxes."""
    array = Detection2DArray(header=header)
    for k, (cx, cy, w, h) in enumerate(boxes):
        detection = Detection2D(header=header)
        detection.id = "" if ids is None else ids[k]
        detection.bbox.center.position.x, detection.bbox.center.position.y = float(cx), float(cy)
        detection.bbox.size_x, detection.bbox.size_y = float(w), float(h)
        if scores is not False:
            hypothesis = ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = "thing", 0.9
            detection.results = [hypothesis]
        array.detections.append(detection)
    return array


def _bad_messages(scene, header):
    """kind -> the frame's messages (image, info, depth, masks, detections), one thing wrong in each."""
    h, w = scene.rgb.shape[:2]
    rgb, depth, labels = scene.rgb, scene.depth_m.astype(np.float32), scene.labels.astype(np.uint8)
    image = lambda: array_to_image_msg(rgb, "rgb8", header)
    info = lambda: intrinsics_to_camera_info(scene.intrinsics, header)
    depth_msg = lambda array=depth: array_to_image_msg(array, "32FC1", header)
    masks = lambda array=labels: array_to_image_msg(array, "mono8", header)

    def edit(message, **fields):
        for name, value in fields.items():
            setattr(message, name, value)
        return message

    def info_with(**fields):
        return edit(info(), **fields)

    cases = {
        "unknown image encoding": (edit(image(), encoding="yuv422_weird"), info(), depth_msg(), masks(), None),
        "image data too short": (edit(image(), data=bytes(image().data)[: 100]), info(), depth_msg(), masks(), None),
        "image step too small": (edit(image(), step=w), info(), depth_msg(), masks(), None),
        "image 0x0": (edit(image(), height=0, width=0, step=0, data=b""), info(), depth_msg(), masks(), None),
        "image big-endian flag on 8-bit data": (edit(image(), is_bigendian=1), info(), depth_msg(), masks(), None),
        "depth of another size": (image(), info(), depth_msg(depth[: h // 2, : w // 2].copy()), masks(), None),
        "depth all NaN": (image(), info(), depth_msg(np.full_like(depth, np.nan)), masks(), None),
        "depth in millimetres as 32FC1": (image(), info(), depth_msg(depth * 1000.0), masks(), None),
        "16UC1 depth all zero": (image(), info(), array_to_image_msg(np.zeros((h, w), np.uint16), "16UC1", header), masks(), None),
        "depth with a colour encoding": (image(), info(), array_to_image_msg(rgb, "rgb8", header), masks(), None),
        "masks of another size": (image(), info(), depth_msg(), masks(labels[: h // 2].copy()), None),
        "masks all background": (image(), info(), depth_msg(), masks(np.zeros_like(labels)), None),
        "masks as float": (image(), info(), depth_msg(), array_to_image_msg(labels.astype(np.float32), "32FC1", header), None),
        "masks with 1000 labels": (image(), info(), depth_msg(), array_to_image_msg(
            (np.arange(h * w, dtype=np.uint32).reshape(h, w) % 1000).astype(np.uint16), "16UC1", header), None),
        "camera_info K all zero": (image(), info_with(k=[0.0] * 9), depth_msg(), masks(), None),
        "camera_info NaN in K": (image(), info_with(k=[math.nan] + list(info().k)[1:]), depth_msg(), masks(), None),
        "camera_info of another size": (image(), info_with(width=w * 2, height=h * 2), depth_msg(), masks(), None),
        "detection box outside the image": (image(), info(), depth_msg(), None, _detections(header, [(w * 3, h * 3, 40, 40)])),
        "detection box of negative size": (image(), info(), depth_msg(), None, _detections(header, [(w / 2, h / 2, -30, -30)])),
        "detection box NaN": (image(), info(), depth_msg(), None, _detections(header, [(math.nan, h / 2, 30, 30)])),
        "detections with a repeated id": (image(), info(), depth_msg(), None, _detections(
            header, [(w / 2, h / 2, 60, 60), (w / 2, h / 2, 60, 60)], ids=["7", "7"])),
        "detection without results": (image(), info(), depth_msg(), None, _detections(header, [(w / 2, h / 2, 60, 60)], scores=False)),
        "empty detections": (image(), info(), depth_msg(), None, Detection2DArray(header=header)),
        "empty frame_id": tuple(edit(m, header=Header(stamp=header.stamp, frame_id="")) if m is not None else None
                                for m in (image(), info(), depth_msg(), masks(), None)),
    }
    return cases


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("fuzz") / "node.log"
    with running_node("/it_fuzz", params={"lost_timeout_s": 30.0, "warning_period_s": 0.0}, log_path=log_path) as (process, client):
        yield process, client, log_path


def _good(client, scene, n_objects, timeout_s=10.0):
    return client.publish_rgbd_until_outputs(_stamp_ns(), FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics,
                                             n_objects, timeout_s, labels=scene.labels)


#: Harmless oddities: processed without a word (the rest must each give a warning).
SILENT = {"image big-endian flag on 8-bit data", "detection without results", "empty detections"}


def test_every_malformed_message_costs_only_itself(node):
    process, client, log_path = node
    scene = random_tabletop_scene(23, n_objects=2)
    assert _good(client, scene, 2, timeout_s=20.0) is not None, log_path.read_text()
    kinds = list(_bad_messages(scene, Header(stamp=ns_to_stamp(0), frame_id=FRAME_ID)))
    assert len(kinds) >= 20
    for kind in kinds:
        stamp = _stamp_ns()
        header = Header(stamp=ns_to_stamp(stamp), frame_id=FRAME_ID)
        image, info, depth, masks, detections = _bad_messages(scene, header)[kind]
        warnings_before = log_path.read_text().count("[WARN]")
        warned = False
        for _ in range(3):  # best-effort input: a lost message is sent again
            client.publish(header, image, info, depth, masks, detections)
            warned = kind in SILENT or client.wait_for(lambda: log_path.read_text().count("[WARN]") > warnings_before, 4.0)
            if warned:
                break
        assert warned, f"no warning for '{kind}'"
        out = _good(client, scene, 2)
        log = log_path.read_text()
        assert process.poll() is None, f"the node died after '{kind}':\n{log}"
        assert "Traceback" not in log, f"traceback after '{kind}':\n{log}"
        assert out is not None and {"1", "2"} <= set(out.detections), \
            f"after '{kind}' the next good frame gave {None if out is None else sorted(out.detections)}:\n{log[-3000:]}"
