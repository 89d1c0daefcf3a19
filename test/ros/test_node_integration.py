"""The perception node in its own process, driven over real DDS: masks in; TF, Detection3DArray, markers out."""
import itertools
import time

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import Marker

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.distortion import Distortion
from sam3d_ros.ros.conversions import (
    array_to_image_msg, depth_to_compressed_depth_msg, frame_name, intrinsics_to_camera_info, ns_to_stamp,
)
from sam3d_ros.ros.ros_client import running_node
from sam3d_ros.tools.synthetic import distort_scene, random_tabletop_scene
from std_msgs.msg import Header

FRAME_ID = "camera_color_optical_frame"
# Boxes and cans: shapes the built-in backend completes exactly, so 2 cm checks the node's plumbing and metric
# scale. Asymmetric objects (mustard nozzle, mug handle) are measured by the evaluation, not bounded here.
BOXES_AND_CANS = ["002_master_chef_can", "003_cracker_box", "004_sugar_box", "005_tomato_soup_can", "010_potted_meat_can"]
_stamps = itertools.count(1)


def _stamp_ns() -> int:
    return 1_700_000_000_000_000_000 + next(_stamps) * 200_000_000  # 5 Hz: stamps further apart than the slop


@pytest.fixture(scope="module")
def node_and_client(tmp_path_factory):
    namespace = "/it_masks"
    log_path = tmp_path_factory.mktemp("node") / "node.log"
    # Each test sends unrelated scenes 0.2 s apart: objects unseen for 0.1 s are forgotten, so ids start afresh.
    with running_node(namespace, params={"lost_timeout_s": 0.1}, log_path=log_path) as (process, client):
        yield process, client, log_path


def _send_and_wait(client, scene, n_objects, **kwargs):
    """Publish a frame (again, if best-effort lost it) until the node answers for its stamp."""
    stamp = _stamp_ns()
    return stamp, client.publish_rgbd_until_outputs(stamp, FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics,
                                                    n_objects, labels=scene.labels, **kwargs)


@pytest.mark.parametrize("seed,depth_encoding,image_encoding", [(11, "32FC1", "rgb8"), (12, "16UC1", "bgr8")])
def test_objects_are_published_at_their_true_positions(node_and_client, seed, depth_encoding, image_encoding):
    process, client, log_path = node_and_client
    scene = random_tabletop_scene(seed, n_objects=3, distance_range=(0.5, 1.0), names=BOXES_AND_CANS)
    stamp, out = _send_and_wait(
        client, scene, len(scene.objects), depth_encoding=depth_encoding, image_encoding=image_encoding
    )
    assert out is not None, f"no output for the frame; node log:\n{log_path.read_text()}"
    detections = out.detections
    assert sorted(detections) == sorted(str(o.object_id) for o in scene.objects)
    assert out.frame_id == FRAME_ID
    for obj in scene.objects:
        det = detections[str(obj.object_id)]
        assert det.header.stamp == ns_to_stamp(stamp)
        p = det.bbox.center.position
        error_m = np.linalg.norm(np.array([p.x, p.y, p.z]) - obj.center_cam)
        assert error_m < 0.02, f"{obj.name}: centre error {error_m * 100:.1f} cm"
        assert all(s > 0.01 for s in (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z))
        tf = out.transforms[frame_name("sam3d_object_", str(obj.object_id))]
        assert tf.header.frame_id == FRAME_ID and tf.child_frame_id == f"sam3d_object_{obj.object_id}"
        t = tf.transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], [p.x, p.y, p.z], atol=1e-9)
    # Meshes are drawn in each object's TF frame (frame-locked), so they are re-sent only when a mesh changes.
    expected_frames = {frame_name("sam3d_object_", str(o.object_id)) for o in scene.objects}
    assert client.wait_for(lambda: expected_frames <= {
        m.header.frame_id for m in client.markers.values() if m.type == Marker.TRIANGLE_LIST}, 5.0)
    meshes = [m for m in client.markers.values() if m.type == Marker.TRIANGLE_LIST and m.header.frame_id in expected_frames]
    assert len(meshes) == len(scene.objects)
    for marker in meshes:
        assert marker.frame_locked and len(marker.points) % 3 == 0 and len(marker.points) > 0
        assert len(marker.colors) == len(marker.points)
    assert process.poll() is None


def test_malformed_frames_are_skipped_and_the_next_good_one_processed(node_and_client):
    process, client, log_path = node_and_client
    scene = random_tabletop_scene(21, n_objects=2)
    # 1. depth of the wrong size, 2. an unknown image encoding, 3. an all-NaN depth, 4. an empty label image,
    # 5. 32FC1 depth in millimetres, 6. an empty frame_id (tf2 rejects it as a parent).
    bad_frames = []
    for kind in ("small_depth", "bad_encoding", "nan_depth", "empty_mask", "mm_depth", "no_frame_id"):
        stamp = _stamp_ns()
        header = Header(stamp=ns_to_stamp(stamp), frame_id="" if kind == "no_frame_id" else FRAME_ID)
        depth = scene.depth_m
        image = array_to_image_msg(scene.rgb, "rgb8", header)
        labels = scene.labels
        if kind == "small_depth":
            depth = depth[::2, ::2].copy()
        elif kind == "bad_encoding":
            image.encoding = "yuv422_yuy2"
        elif kind == "nan_depth":
            depth = np.full_like(depth, np.nan)
        elif kind == "empty_mask":
            labels = np.zeros_like(labels)
        elif kind == "mm_depth":
            depth = depth * 1000
        client.publish(
            header, image, intrinsics_to_camera_info(scene.intrinsics, header),
            array_to_image_msg(depth.astype(np.float32), "32FC1", header),
            array_to_image_msg(labels.astype(np.uint8), "mono8", header),
        )
        bad_frames.append(stamp)
        time.sleep(0.3)  # one frame at a time: the node keeps only the newest waiting frame
    stamp, out = _send_and_wait(client, scene, len(scene.objects))
    assert out is not None, f"good frame after bad ones not processed; node log:\n{log_path.read_text()}"
    assert len(out.detections) == len(scene.objects)
    for bad in bad_frames:
        assert bad not in client.outputs or client.outputs[bad].detection_arrays == 0
    assert process.poll() is None, "the node died"
    log = log_path.read_text()
    for expected in ("depth image is 320x240 but colour image is 640x480", "yuv422_yuy2", "no valid pixel", "no object pixel",
                     "32FC1 depth must be metres; is it millimetres?", "header.frame_id is empty"):
        assert expected in log, f"missing warning '{expected}' in node log:\n{log}"


def test_detection_boxes_are_segmented_and_reconstructed(node_and_client):
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    process, client, log_path = node_and_client
    scene = random_tabletop_scene(13, n_objects=3, distance_range=(0.5, 1.0), names=BOXES_AND_CANS)
    detections = Detection2DArray()
    for obj in scene.objects:
        rows, cols = np.nonzero(scene.labels == obj.object_id)
        det = Detection2D(id=f"det_{obj.object_id}")
        det.bbox.center.position.x = float(cols.min() + cols.max()) / 2
        det.bbox.center.position.y = float(rows.min() + rows.max()) / 2
        det.bbox.size_x = float(cols.max() - cols.min() + 8)
        det.bbox.size_y = float(rows.max() - rows.min() + 8)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = obj.name, 0.8
        det.results.append(hypothesis)
        detections.detections.append(det)
    out = client.publish_rgbd_until_outputs(_stamp_ns(), FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics,
                                            len(scene.objects), timeout_s=15.0, detections=detections)
    assert out is not None, f"no output for a detections frame; node log:\n{log_path.read_text()}"
    by_id = out.detections
    for obj in scene.objects:
        det = by_id[f"det_{obj.object_id}"]
        assert det.results[0].hypothesis.class_id == obj.name
        p = det.bbox.center.position
        assert np.linalg.norm(np.array([p.x, p.y, p.z]) - obj.center_cam) < 0.025, obj.name
        assert f"sam3d_object_det_{obj.object_id}" in out.transforms
    assert "box segmentation:" in log_path.read_text()


def _image_counts(client) -> tuple[int, int] | None:
    """(images received, images lost before the node) from the node's newest /diagnostics message."""
    # This node's own status only: another node on the same domain must not be counted.
    pipeline = client.diagnostic_values().get(f"{client.namespace}/sam3d_perception: pipeline")
    if pipeline is None:
        return None
    return int(pipeline["frames in"]), int(pipeline["image messages lost before the node"])


def test_images_lost_before_the_node_are_counted_not_silent(node_and_client):
    """Bursts overflow the node's KEEP_LAST input queue: every image sent is either received or counted as lost."""
    process, client, log_path = node_and_client
    time.sleep(1.5)  # a diagnostics message (1 s period) after everything earlier tests sent
    before = _image_counts(client)
    assert before is not None, "no /diagnostics from the node"
    header = Header(stamp=ns_to_stamp(_stamp_ns()), frame_id=FRAME_ID)
    image = array_to_image_msg(np.zeros((240, 320, 3), np.uint8), "rgb8", header)
    sent = 0
    for _ in range(5):  # a burst of 200 images is far more than 5 queued; repeat in the unlikely case none was lost
        for _ in range(200):
            image.header.stamp = ns_to_stamp(_stamp_ns())
            client.pub_image.publish(image)
            sent += 1
        time.sleep(0.5)
        image.header.stamp = ns_to_stamp(_stamp_ns())
        client.pub_image.publish(image)  # after a pause: a loss at the end of the burst shows as a gap before it
        sent += 1
        time.sleep(1.5)
        if _image_counts(client)[1] > before[1]:
            break
    accounted = lambda: (lambda now: now[0] + now[1] - before[0] - before[1] >= sent)(_image_counts(client))
    client.wait_for(accounted, timeout_s=10.0)
    received, lost = (now - then for now, then in zip(_image_counts(client), before))
    assert lost > 0, f"no image was lost in 5 bursts of 200 (received {received} of {sent})"
    assert received + lost == sent, f"sent {sent}, node received {received} and counted {lost} lost"
    assert process.poll() is None


#: What the node reports on Jazzy for images it cannot check for losses (its MessageInfo names no publisher).
UNCHECKED = "image messages not checked for losses (several publishers, none named)"


def _image_checks(client) -> tuple[int, int, int] | None:
    """(images received, lost before the node, not checked for losses) from the node's newest /diagnostics."""
    pipeline = client.diagnostic_values().get(f"{client.namespace}/sam3d_perception: pipeline")
    if pipeline is None:
        return None
    return (int(pipeline["frames in"]), int(pipeline["image messages lost before the node"]),
            int(pipeline.get(UNCHECKED, 0)))


def test_images_of_two_publishers_are_checked_per_publisher_or_reported_unchecked(node_and_client, ros_distro):
    """Two publishers on the image topic. Kilted names the publisher of each message: their sequence numbers are
    checked apart and every image sent is received or counted lost. Jazzy does not: while the topic has two
    publishers the node cannot tell whose number it got, and /diagnostics says how many images went unchecked
    (rather than counting false losses from the mixed numbers, or none while it cannot see them)."""
    process, client, log_path = node_and_client
    second = client.node.create_publisher(Image, client.pub_image.topic_name, qos_profile_sensor_data)
    publishers = (client.pub_image, second)
    image = array_to_image_msg(np.zeros((24, 32, 3), np.uint8), "rgb8", Header(frame_id=FRAME_ID))
    try:
        assert client.wait_for(lambda: second.get_subscription_count() >= 1, 10.0), "the node never matched"
        time.sleep(1.5)  # a diagnostics message (1 s period) after everything earlier tests sent
        before = _image_checks(client)
        assert before is not None, "no /diagnostics from the node"
        sent = 0
        for _ in range(5):  # the node may add the second publisher to its graph a little after it matched
            for publisher in publishers * 10 + (None,) + publishers:  # a pause: a loss at the end shows as a gap
                if publisher is None:
                    time.sleep(0.5)
                    continue
                image.header.stamp = ns_to_stamp(_stamp_ns())
                publisher.publish(image)
                sent += 1
                time.sleep(0.02)
            time.sleep(1.5)
            if ros_distro != "jazzy" or _image_checks(client)[2] > before[2]:
                break
        if ros_distro != "jazzy":
            client.wait_for(lambda: sum(_image_checks(client)[:2]) >= sum(before[:2]) + sent, timeout_s=10.0)
        received, lost, unchecked = (now - then for now, then in zip(_image_checks(client), before))
        if ros_distro == "jazzy":
            assert 0 < unchecked <= received <= sent, f"sent {sent}: received {received}, {unchecked} not checked"
        else:
            assert received + lost == sent, f"sent {sent}, node received {received} and counted {lost} lost"
            assert unchecked == 0
        assert process.poll() is None
    finally:
        client.node.destroy_publisher(second)


def test_sam3d_backend_with_a_dead_worker_falls_back_to_depth(tmp_path):
    """backend: sam3d, no worker listening: every object is reported and reconstructed by the depth backend."""
    namespace = "/it_sam3d_dead"
    log_path = tmp_path / "node.log"
    params = {"backend": "sam3d", "sam3d_worker": "tcp://127.0.0.1:9", "sam3d_timeout_s": 1.0, "sam3d_connect_timeout_s": 1.0}
    with running_node(namespace, params=params, log_path=log_path) as (process, client):
        scene = random_tabletop_scene(17, n_objects=2, names=BOXES_AND_CANS)
        stamp, out = _send_and_wait(client, scene, len(scene.objects))
        assert out is not None, f"no output; node log:\n{log_path.read_text()}"
        for obj, det in zip(scene.objects, sorted(out.detections.values(), key=lambda d: d.id)):
            p = det.bbox.center.position
            assert np.linalg.norm(np.array([p.x, p.y, p.z]) - obj.center_cam) < 0.025
        assert "used the depth backend" in log_path.read_text()
        assert process.poll() is None


#: A wide-angle camera (77 degrees across) with barrel distortion: objects towards the border move by 10-30 pixels.
WIDE = CameraIntrinsics(640, 480, 400.0, 400.0, 319.5, 239.5)
LENS = Distortion("plumb_bob", (-0.3, 0.09, 0.001, -0.001, 0.0))


def _centre_errors_m(scene, out) -> dict[str, float]:
    errors = {}
    for obj in scene.objects:
        p = out.detections[str(obj.object_id)].bbox.center.position
        errors[obj.name] = float(np.linalg.norm(np.array([p.x, p.y, p.z]) - obj.center_cam))
    return errors


def test_a_distorted_camera_gives_objects_at_their_true_positions(node_and_client):
    """Images of a distorted camera, its camera_info carrying D: the node undistorts image, depth and masks and finds
    the objects where they are; with `undistort: false` (D ignored, what a pinhole-only node does) the same frames put
    them centimetres off."""
    process, client, log_path = node_and_client
    scene = random_tabletop_scene(33, n_objects=3, distance_range=(0.4, 0.7), names=BOXES_AND_CANS, intrinsics=WIDE)
    distorted = distort_scene(scene, LENS)
    stamp, out = _send_and_wait(client, distorted, len(scene.objects), distortion=LENS)
    assert out is not None, f"no output; node log:\n{log_path.read_text()}"
    errors = _centre_errors_m(scene, out)
    assert max(errors.values()) < 0.02, f"centre errors (m) {errors}"
    try:
        assert client.set_parameters({"undistort": False}) == [(True, "")]
        stamp, out = _send_and_wait(client, distorted, len(scene.objects), distortion=LENS)
        assert out is not None, f"no output with undistort false; node log:\n{log_path.read_text()}"
        ignored = _centre_errors_m(scene, out)
        assert max(ignored.values()) > 0.04, f"the lens should matter in this scene: {ignored}"
    finally:
        client.set_parameters({"undistort": True})
    assert process.poll() is None


def test_compressed_colour_and_compressed_depth_from_remapped_topics(tmp_path):
    """What a bag or a robot's image_transport publishes: jpeg colour on <image>/compressed and png compressedDepth
    (16UC1, and 32FC1 as quantised inverse depth) on <depth>/compressedDepth, the base topics remapped as a launch file
    does: objects at their true positions. A garbled message costs its frame only, with a warning."""
    namespace = "/it_compressed"
    topics = {"image": "/it_compressed_cam/color/image_raw", "depth": "/it_compressed_cam/depth/image_raw"}
    log_path = tmp_path / "node.log"
    # warning_period_s 60: the garbled frame may be sent more than once (below), its warning is logged once.
    params = {"lost_timeout_s": 0.1, "image_transport": "compressed", "depth_image_transport": "compressedDepth",
              "warning_period_s": 60.0}
    with running_node(namespace, params=params, log_path=log_path, remappings=topics,
                      client_options=dict(image_transport="compressed", depth_image_transport="compressedDepth",
                                          topics=topics)) as (process, client):
        garbled_stamp = _stamp_ns()
        header = Header(stamp=ns_to_stamp(garbled_stamp), frame_id=FRAME_ID)
        scene = random_tabletop_scene(12, n_objects=3, distance_range=(0.5, 1.0), names=BOXES_AND_CANS)
        garbled = CompressedImage(header=header, format="rgb8; jpeg compressed bgr8", data=bytes(range(256)) * 8)
        undecodable = "frame skipped: compressed colour image (format 'rgb8; jpeg compressed bgr8', 2048 bytes) cannot be decoded"
        for _ in range(5):  # sent again when best-effort transport lost it in the node's first seconds
            client.publish(header, garbled, intrinsics_to_camera_info(scene.intrinsics, header),
                           depth_to_compressed_depth_msg(scene.depth_m, "32FC1", header),
                           array_to_image_msg(scene.labels.astype(np.uint8), "mono8", header))
            if client.wait_for(lambda: undecodable in log_path.read_text(), 3.0):
                break
        assert undecodable in log_path.read_text(), log_path.read_text()
        for seed, depth_encoding in ((11, "32FC1"), (12, "16UC1")):
            scene = random_tabletop_scene(seed, n_objects=3, distance_range=(0.5, 1.0), names=BOXES_AND_CANS)
            stamp, out = _send_and_wait(client, scene, len(scene.objects), depth_encoding=depth_encoding)
            assert out is not None, f"no output ({depth_encoding}); node log:\n{log_path.read_text()}"
            errors = _centre_errors_m(scene, out)
            assert max(errors.values()) < 0.02, f"{depth_encoding}: centre errors (m) {errors}"
        assert garbled_stamp not in client.outputs
        log = log_path.read_text()
        assert "image: CompressedImage on /it_compressed_cam/color/image_raw/compressed" in log
        assert "depth: CompressedImage on /it_compressed_cam/depth/image_raw/compressedDepth" in log
        assert log.count(undecodable) == 1, log
        assert process.poll() is None
