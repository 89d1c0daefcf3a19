"""What the node does with input a ROS user gets wrong: depth in the wrong unit, an empty frame_id, one bad
detection among good ones, a label image with hundreds of labels, a garbled compressed image, a distortion model it
does not know; and how boxes of a distorted camera reach the pipeline.

`PerceptionNode` runs in this process (its own rclpy context) and is handed matched frames as its tracking thread
is (`node.process`); what it warns about, which objects it tracks and what it queues for reconstruction are read
from the node itself (the reconstruction queue is replaced by a recorder, so nothing is reconstructed here).
"""
import tracemalloc

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.distortion import Distortion
from sam3d_ros.ros.conversions import (
    array_to_image_msg, depth_to_compressed_depth_msg, intrinsics_to_camera_info, ns_to_stamp, rgb_to_compressed_msg,
)
from sam3d_ros.ros.perception_node import PerceptionNode
from sam3d_ros.ros.sync import FrameSet
from sam3d_ros.tools.synthetic import distort_scene, random_tabletop_scene

FRAME_ID = "camera_color_optical_frame"
STAMP_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def scene():
    return random_tabletop_scene(7, n_objects=2, distance_range=(0.6, 0.9))


@pytest.fixture
def node(tmp_path):
    context = Context()
    rclpy.init(context=context)
    made = PerceptionNode(context=context, parameter_overrides=[
        Parameter("mesh_cache_dir", value=str(tmp_path / "meshes")), Parameter("box_segmentation", value="depth")])
    made.warnings = []
    made.warn = lambda key, text: made.warnings.append(text)  # every warning, unthrottled
    made.requests = []
    made.scheduler.submit = lambda payload: made.requests.append(payload[0]) or []
    try:
        yield made
    finally:
        made.destroy_node()
        rclpy.shutdown(context=context)


def _frame_set(scene, depth=None, depth_encoding="32FC1", labels=None, detections=None, frame_id=FRAME_ID):
    header = Header(stamp=ns_to_stamp(STAMP_NS), frame_id=frame_id)
    depth = scene.depth_m.astype(np.float32) if depth is None else depth
    masks = None
    if detections is None:
        labels = scene.labels if labels is None else labels
        masks = array_to_image_msg(labels.astype(np.uint16), "16UC1", header)
    else:
        detections.header = header
    return FrameSet(
        STAMP_NS, array_to_image_msg(scene.rgb, "rgb8", header), intrinsics_to_camera_info(scene.intrinsics, header),
        array_to_image_msg(depth, depth_encoding, header), masks, detections,
    )


def _real_ids(scene):
    return sorted(str(o.object_id) for o in scene.objects)


def test_depth_in_the_wrong_unit_is_refused_naming_the_unit_and_the_setting(node, scene):
    millimetres = (scene.depth_m * 1000).astype(np.float32)  # 32FC1 holding millimetres
    node.process(_frame_set(scene, depth=millimetres))
    median_mm = np.nanmedian(millimetres[::4, ::4])
    assert node.warnings == [
        f"frame skipped: depth median {median_mm:.3g} m is beyond the working range 0.1-10 m (depth_range_m): "
        "32FC1 depth must be metres; is it millimetres?"
    ]
    labels_as_depth = scene.labels.astype(np.uint16)  # a label image on the depth topic: 1 and 2 "millimetres"
    node.process(_frame_set(scene, depth=labels_as_depth, depth_encoding="16UC1"))
    assert "is below the working range 0.1-10 m (depth_range_m): 16UC1 depth must be millimetres; is it metres, or a " \
           "label image?" in node.warnings[-1]
    assert node.tracker.tracks == {} and node.requests == [] and node.stats.frames_invalid == 2
    node.process(_frame_set(scene))  # the same frame in metres
    assert sorted(node.tracker.tracks) == _real_ids(scene) and len(node.warnings) == 2


def test_an_empty_frame_id_refuses_the_frame(node, scene):
    node.process(_frame_set(scene, frame_id=""))
    assert len(node.warnings) == 1 and "header.frame_id is empty" in node.warnings[0], node.warnings
    assert node.tracker.tracks == {} and node.requests == [] and node.stats.frames_invalid == 1


def _detection(det_id, x_min, y_min, x_max, y_max, score=0.9):
    det = Detection2D(id=det_id)
    det.bbox.center.position.x, det.bbox.center.position.y = (x_min + x_max) / 2, (y_min + y_max) / 2
    det.bbox.size_x, det.bbox.size_y = float(x_max - x_min), float(y_max - y_min)
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = "thing", score
    det.results.append(hypothesis)
    return det


def test_a_box_off_the_image_or_a_repeated_id_costs_only_that_object(node, scene):
    boxes = []
    for obj in scene.objects:
        rows, cols = np.nonzero(scene.labels == obj.object_id)
        boxes.append(_detection(f"det_{obj.object_id}", cols.min() - 4, rows.min() - 4, cols.max() + 4, rows.max() + 4))
    first = boxes[0]
    repeated = _detection(first.id, 10, 10, 60, 60)
    off_image = _detection("off", 700, 20, 760, 90)  # the image is 640x480
    node.process(_frame_set(scene, detections=Detection2DArray(detections=boxes + [off_image, repeated])))
    good = sorted(d.id for d in boxes)
    assert sorted(node.tracker.tracks) == good
    assert sorted(p.object_id for p in node.requests[0].prompts) == good
    assert node.stats.frames_invalid == 0 and node.stats.frames_out == 1
    assert node.warnings == [
        f"object {first.id}: detection 3 repeats the id of an earlier one (the first is kept)",
        "object off: box [700, 20, 760, 90] (x_min, y_min, x_max, y_max) lies outside the 640x480 image",
    ]


def test_hundreds_of_labels_keep_the_largest_max_objects_and_queue_a_bounded_request(node, scene):
    labels = scene.labels.astype(np.uint16).copy()
    spare = labels == 0
    next_id = 1000
    for row in range(0, 120, 10):  # 10x10 specks (100 px, above min_mask_pixels) on the background: segmenter noise
        for col in range(0, 640, 10):
            block = np.zeros_like(spare)
            block[row:row + 10, col:col + 10] = True
            if (block & spare).sum() >= 60:
                labels[block & spare] = next_id
                next_id += 1
    n_labels = len(np.unique(labels)) - 1
    assert n_labels > 300
    tracemalloc.start()
    try:
        node.process(_frame_set(scene, labels=labels))
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert node.warnings[0] == f"mask image has {n_labels} objects: kept the 32 largest, dropped {n_labels - 32} (max_objects: 32)"
    assert len(node.tracker.tracks) == 32 and set(_real_ids(scene)) <= set(node.tracker.tracks)
    # One frame queues at most max_reconstructions_per_frame objects, the largest first: the real ones.
    queued = [p.object_id for p in node.requests[0].prompts]
    assert len(queued) == 8 and set(_real_ids(scene)) <= set(queued)
    # A full-size mask per label alone would be n_labels * 300 kB (> 90 MB); 32 of them are under 10 MB.
    assert peak_bytes < 60e6, f"peak {peak_bytes / 1e6:.0f} MB while handling one frame"
    # The others are not lost: the next frame sends the next 8.
    node.process(_frame_set(scene, labels=labels))
    assert len(node.requests[1].prompts) == 8 and not set(p.object_id for p in node.requests[1].prompts) & set(queued)


def _compressed_frame_set(scene, image_data=None, depth=None, stamp_ns=STAMP_NS):
    """A frame as image_transport's compressed (jpeg colour) and compressedDepth (32FC1) plugins publish it."""
    header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=FRAME_ID)
    image = rgb_to_compressed_msg(scene.rgb, "rgb8", "jpeg", header)
    if image_data is not None:
        image.data = image_data
    depth = depth_to_compressed_depth_msg(scene.depth_m, "32FC1", header) if depth is None else depth
    return FrameSet(stamp_ns, image, intrinsics_to_camera_info(scene.intrinsics, header), depth,
                    array_to_image_msg(scene.labels.astype(np.uint16), "16UC1", header), None)


def test_a_garbled_compressed_image_costs_its_frame_only_with_one_warning(node, scene):
    garbled = bytes(np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8))
    node.process(_compressed_frame_set(scene, image_data=garbled))
    assert node.warnings == ["frame skipped: compressed colour image (format 'rgb8; jpeg compressed bgr8', 4000 bytes) "
                             "cannot be decoded: not a complete JPEG, PNG or TIFF file"]
    assert node.tracker.tracks == {} and node.stats.frames_invalid == 1
    rvl = CompressedImage(header=Header(frame_id=FRAME_ID), format="32FC1; compressedDepth rvl", data=b"\0" * 64)
    node.process(_compressed_frame_set(scene, depth=rvl))
    assert node.warnings[1] == ("frame skipped: compressedDepth format '32FC1; compressedDepth rvl': codec 'rvl' is not "
                                "supported (only png; set the publisher's compressedDepth format parameter to png)")
    assert node.tracker.tracks == {} and node.stats.frames_invalid == 2
    node.process(_compressed_frame_set(scene))  # the next good one
    assert sorted(node.tracker.tracks) == _real_ids(scene) and len(node.warnings) == 2


def _boxes(labels, ids, margin=2):
    boxes = []
    for object_id in ids:
        rows, cols = np.nonzero(labels == object_id)
        boxes.append((cols.min() - margin, rows.min() - margin, cols.max() + 1 + margin, rows.max() + 1 + margin))
    return boxes


def test_detection_boxes_of_a_distorted_camera_are_undistorted(node):
    """A detector runs on the distorted image: its boxes are mapped onto the undistorted image the node works on."""
    wide = CameraIntrinsics(640, 480, 400.0, 400.0, 319.5, 239.5)
    scene = random_tabletop_scene(33, n_objects=3, distance_range=(0.4, 0.7), intrinsics=wide)
    lens = Distortion("plumb_bob", (-0.3, 0.09, 0.001, -0.001, 0.0))
    distorted = distort_scene(scene, lens)
    ids = [obj.object_id for obj in scene.objects]
    detections = Detection2DArray(detections=[
        _detection(f"det_{object_id}", *box) for object_id, box in zip(ids, _boxes(distorted.labels, ids))])
    frame_set = _frame_set(distorted, detections=detections)
    frame_set.camera_info.distortion_model, frame_set.camera_info.d = lens.model, list(lens.coefficients)
    node.process(frame_set)
    assert node.warnings == [] and len(node.requests) == 1
    queued = {p.object_id: p.bbox_xyxy for p in node.requests[0].prompts}

    def contains(box, inner, slack=1.0):
        return box[0] <= inner[0] + slack and box[1] <= inner[1] + slack and box[2] >= inner[2] - slack and box[3] >= inner[3] - slack

    for object_id, given, truth in zip(ids, _boxes(distorted.labels, ids), _boxes(scene.labels, ids)):
        box = queued[f"det_{object_id}"]
        # The object's box in the undistorted image, a little larger (the detector's straight edges are curved there).
        assert contains(box, truth) and np.abs(np.subtract(box, truth)).max() < 16, (object_id, box, truth)
        assert not contains(given, truth), (object_id, given, truth)  # the box as given would cut the object


def test_an_unknown_distortion_model_refuses_the_frame_naming_it(node, scene):
    frame_set = _frame_set(scene)
    frame_set.camera_info.distortion_model, frame_set.camera_info.d = "kannala_brandt_8", [0.1] * 8
    node.process(frame_set)
    assert len(node.warnings) == 1 and "distortion_model 'kannala_brandt_8'" in node.warnings[0], node.warnings
    assert node.tracker.tracks == {} and node.stats.frames_invalid == 1
