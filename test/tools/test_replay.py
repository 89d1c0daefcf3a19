"""`sam3d-ros replay`: recorded bags (rosbags-written, sqlite3 and MCAP, raw and compressed, masks after their image,
/tf of a moving camera) through the node's own code via the installed CLI; the output bag read back with rosbags and
checked against the ground truth frame by frame, twice for determinism; the error cases exit 2 with one line."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from sam3d_ros.geometry.transforms import invert_transform, make_transform, rotation_angle_between, transform_from_pose
from sam3d_ros.ros.conversions import make_transform_stamped
from sam3d_ros.tools.replay import ReplayError, choose_topics
from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, moving_object_sequence, render_scene, upright_pose
from sam3d_ros.tools.synthetic_bag import Recording, recording_messages, write_bag
from test_cli import run_cli

NAMES = ["003_cracker_box", "004_sugar_box"]
N_FRAMES = 12
PREFIX = "sam3d_object_"


@pytest.fixture(scope="module")
def sequence():
    return moving_object_sequence(NAMES, n_frames=N_FRAMES, seed=5)


@pytest.fixture(scope="module")
def mcap_bag(sequence, tmp_path_factory):
    """Fixed camera, objects moving; raw images; MCAP."""
    path = tmp_path_factory.mktemp("bags") / "moving_mcap"
    messages, stamps = recording_messages(sequence, Recording(storage="mcap"))
    write_bag(path, messages, "mcap")
    return path, stamps


def read_outputs(path: Path) -> list[tuple[str, int, object, list]]:
    """(topic, recording time, message decoded by rosbags from the embedded definitions, its fields flattened) of a
    bag."""
    with AnyReader([path]) as reader:
        return [(c.topic, t, msg, flat(msg)) for c, t, raw in reader.messages()
                for msg in [reader.deserialize(raw, c.msgtype)]]


def flat(value) -> list:
    """Every leaf field of a rosbags message but colours, in order (numbers as float arrays)."""
    if dataclasses.is_dataclass(value):
        return [leaf for f in dataclasses.fields(value) if f.name not in ("color", "colors")
                for leaf in flat(getattr(value, f.name))]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in flat(item)]
    if isinstance(value, (np.ndarray, int, float)) and not isinstance(value, bool):
        return [np.asarray(value, dtype=np.float64).ravel()]
    return [value]


def same(a: list, b: list) -> bool:
    """Equal leaves, bit for bit. The replay is exact (same frames, same order, same reconstructions at the same
    stamps), and so is what it computes: the depth backend's support-plane RANSAC and the tracker's ICP run on one
    Open3D thread (`geometry/open3d_threads.py`), whose sums otherwise came out in a varying order (a tracked pose
    0.15-0.3 degrees apart after 5 frames in 1 of 3 runs here)."""
    return len(a) == len(b) and all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        else (not isinstance(x, np.ndarray) and not isinstance(y, np.ndarray) and x == y) for x, y in zip(a, b))


def tf_matrix(transform) -> np.ndarray:
    t, q = transform.transform.translation, transform.transform.rotation
    return transform_from_pose(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))


def object_tf_by_stamp(outputs) -> dict[int, dict[str, object]]:
    """stamp ns -> object id -> the last TransformStamped of that object at that stamp on /tf."""
    found: dict[int, dict[str, object]] = {}
    for topic, _, msg, _ in outputs:
        if topic == "/tf":
            for tf in msg.transforms:
                if tf.child_frame_id.startswith(PREFIX):
                    stamp = tf.header.stamp.sec * 1_000_000_000 + tf.header.stamp.nanosec
                    found.setdefault(stamp, {})[tf.child_frame_id[len(PREFIX):]] = tf
    return found


def test_mcap_replay_follows_the_truth_every_frame_and_gives_the_same_output_twice(mcap_bag, sequence, tmp_path):
    bag, stamps = mcap_bag
    # The node's defaults (fusion on, as live), then twice without fusion: the same output every time.
    results = [run_cli("replay", bag, "--out", tmp_path / f"out{i}", *([] if i == 0 else ["--param", "fusion=false"]),
                       timeout_s=600) for i in range(3)]
    for result in results:
        assert result.returncode == 0, result.stderr
    out = results[0].stdout
    assert "image: /camera/camera/color/image_raw (Image, usual RealSense name)" in out
    assert "masks: /segmenter/masks" in out and f"replayed {N_FRAMES} images" in out
    # Fusion is replayed: each object's fused mesh of its first view after its reconstruction (0.4 s of recording:
    # one each, fusion_min_interval_s is 1 s).
    assert f"{N_FRAMES} frames tracked" in out and "2 objects, 2 reconstructions (0 failed), 2 fused meshes" in out
    assert "2 objects, 2 reconstructions (0 failed), 0 fused meshes" in results[1].stdout
    outputs = read_outputs(tmp_path / "out0")
    # Same bag, same output: every message, field for field and bit for bit, at the same time (the timings of
    # /diagnostics aside).
    first, second = ([(t, ts, leaves) for t, ts, _, leaves in read_outputs(tmp_path / f"out{i}") if t != "/diagnostics"]
                     for i in (1, 2))
    assert [(t, ts) for t, ts, _ in first] == [(t, ts) for t, ts, _ in second]
    assert all(same(a, b) for (_, _, a), (_, _, b) in zip(first, second))
    # The MCAP file as Foxglove reads it (the mcap library, not rosbags): a ros2msg schema for every channel, CDR.
    with open(next((tmp_path / "out0").glob("*.mcap")), "rb") as stream:
        summary = make_reader(stream).get_summary()
    assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
    assert all(summary.schemas[c.schema_id].encoding == "ros2msg" and summary.schemas[c.schema_id].data
               for c in summary.channels.values())
    assert "MSG: vision_msgs/BoundingBox3D" in next(
        s.data.decode() for s in summary.schemas.values() if s.name == "vision_msgs/msg/Detection3DArray")
    topics = {t for t, *_ in outputs}
    assert {"/tf", "/sam3d_perception/detections", "/sam3d_perception/markers",
            "/sam3d_perception/collision_objects", "/diagnostics"} <= topics
    by_stamp = object_tf_by_stamp(outputs)
    assert sorted(by_stamp) == stamps, "every frame, none dropped, at its own stamp"
    T0_est = {oid: tf_matrix(by_stamp[stamps[0]][oid]) for oid in ("1", "2")}
    T0_true = {str(o.object_id): o.T_cam_obj for o in sequence[0].objects}
    worst_m, worst_deg = 0.0, 0.0
    for k, (scene, stamp) in enumerate(zip(sequence, stamps)):
        assert set(by_stamp[stamp]) == {"1", "2"}, f"frame {k}"
        for obj in scene.objects:
            oid = str(obj.object_id)
            tf = by_stamp[stamp][oid]
            assert tf.header.frame_id == "camera_color_optical_frame"
            T_est = tf_matrix(tf)
            motion_est = T_est @ invert_transform(T0_est[oid])  # the object frame is the backend's: compare motions
            motion_true = obj.T_cam_obj @ invert_transform(T0_true[oid])
            centre0 = (invert_transform(motion_true) @ np.append(obj.center_cam, 1.0))[:3]
            worst_m = max(worst_m, float(np.linalg.norm((motion_est @ np.append(centre0, 1.0))[:3] - obj.center_cam)))
            worst_deg = max(worst_deg, float(np.degrees(rotation_angle_between(motion_est[:3, :3], motion_true[:3, :3]))))
            assert np.linalg.norm(T_est[:3, 3] - obj.center_cam) < 0.02, f"frame {k} {obj.name}: absolute centre"
    assert worst_m < 0.01 and worst_deg < 2.0, f"worst {worst_m * 100:.2f} cm / {worst_deg:.2f} deg"
    assert np.linalg.norm(sequence[-1].objects[0].center_cam - sequence[0].objects[0].center_cam) > 0.02, "must move"
    # Outputs at the recording time of the input that caused them, carrying the input stamps.
    detections = [(ts, m) for t, ts, m, _ in outputs if t == "/sam3d_perception/detections"]
    assert all(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec in stamps for _, m in detections)
    assert [ts for ts, _ in detections] == sorted(ts for ts, _ in detections)


def test_sqlite3_compressed_moving_camera_in_target_frame_with_mesh_files(tmp_path):
    """A camera circling two boxes standing still, /tf world -> camera per frame and /tf_static base_link -> world
    once, jpeg + compressedDepth, sqlite3: in target_frame base_link the boxes stay where they truly are, every frame;
    mesh_resource markers name files beside the bag."""
    placements = [(name, upright_pose(name, x, y, yaw)) for name, x, y, yaw in
                  (("003_cracker_box", 0.05, -0.08, 0.4), ("004_sugar_box", -0.06, 0.1, 1.1))]
    T_cam_world = [look_at_camera(0.7, 40.0, 20.0 + 2.0 * k) for k in range(8)]
    scenes = [render_scene(placements, T, default_intrinsics(), rng=k) for k, T in enumerate(T_cam_world)]
    recording = Recording(storage="sqlite3", image_transport="compressed", depth_image_transport="compressedDepth")
    messages, stamps = recording_messages(scenes, recording, [invert_transform(T) for T in T_cam_world])
    T_base_world = make_transform(Rotation.from_euler("z", 30, degrees=True).as_matrix(), [0.3, -0.2, 0.75])
    static = TFMessage(transforms=[make_transform_stamped("base_link", "world", T_base_world, stamps[0])])
    write_bag(tmp_path / "in", messages + [("/tf_static", static, stamps[0] - 1_000_000)], "sqlite3")
    result = run_cli("replay", tmp_path / "in", "--out", tmp_path / "out", "--target-frame", "base_link",
                     "--param", "marker_mesh=mesh_resource", timeout_s=600)
    assert result.returncode == 0, result.stderr
    assert "image: /camera/camera/color/image_raw/compressed (CompressedImage" in result.stdout
    assert "depth: /camera/camera/aligned_depth_to_color/image_raw/compressedDepth (CompressedImage" in result.stdout
    outputs = read_outputs(tmp_path / "out")
    by_stamp = object_tf_by_stamp(outputs)
    assert sorted(by_stamp) == stamps
    centres_true = {str(i + 1): (T_base_world @ invert_transform(T_cam_world[0]) @ np.append(o.center_cam, 1.0))[:3]
                    for i, o in enumerate(scenes[0].objects)}
    for k, stamp in enumerate(stamps):
        for oid, tf in by_stamp[stamp].items():
            assert tf.header.frame_id == "base_link"
            error_m = np.linalg.norm(tf_matrix(tf)[:3, 3] - centres_true[oid])
            assert error_m < 0.02, f"frame {k} object {oid}: {error_m * 100:.1f} cm from the truth in world"
            drift_m = np.linalg.norm(tf_matrix(tf)[:3, 3] - tf_matrix(by_stamp[stamps[0]][oid])[:3, 3])
            assert drift_m < 0.01, f"frame {k} object {oid}: moved {drift_m * 100:.2f} cm while standing still"
    uris = [m.mesh_resource for t, _, msg, _ in outputs if t == "/sam3d_perception/markers" for m in msg.markers
            if m.mesh_resource]
    assert uris and all(u.startswith("file://" + str((tmp_path / "out" / "meshes").resolve())) for u in uris)
    assert all(Path(u[len("file://"):]).is_file() for u in uris)


def test_bag_loop_time_jump_is_handled_as_the_node_does(sequence, tmp_path):
    """A looping source recorded: the stamps jump back 2 s mid-bag (the recording time goes on). The node sees the
    time jump, as live; every frame of both passes is tracked, at its own stamp, the objects under their ids."""
    first, stamps_first = recording_messages(sequence[:5], Recording(start_ns=Recording().start_ns + 2_000_000_000))
    second, stamps_second = recording_messages(sequence[:5], Recording())
    later_ns = 10_000_000_000
    write_bag(tmp_path / "in", first + [(t, m, ts + later_ns) for t, m, ts in second], "mcap")
    result = run_cli("replay", tmp_path / "in", "--out", tmp_path / "out", timeout_s=600)
    assert result.returncode == 0, result.stderr
    assert "replayed 10 images" in result.stdout and "10 frames tracked" in result.stdout, result.stdout
    assert "time jumped back" in result.stderr
    by_stamp = object_tf_by_stamp(read_outputs(tmp_path / "out"))
    assert sorted(by_stamp) == sorted(stamps_first + stamps_second)
    assert all(set(by_stamp[stamp]) == {"1", "2"} for stamp in stamps_second)


def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines, result.stderr
    assert lines[-1].startswith("sam3d-ros: error: "), result.stderr
    return lines[-1]


def test_errors_are_one_line_with_exit_status_2(mcap_bag, tmp_path):
    bag, _ = mcap_bag
    line = _one_line_error(run_cli("replay", bag, "--out", tmp_path / "a", "--masks", "/nope"))
    assert "--masks /nope: no such topic in the bag" in line and "/segmenter/masks (sensor_msgs/msg/Image)" in line
    assert not (tmp_path / "a").exists()
    corrupt = tmp_path / "corrupt.mcap"
    corrupt.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 4)
    assert "cannot read the bag" in _one_line_error(run_cli("replay", corrupt, "--out", tmp_path / "b"))
    unknown = tmp_path / "unknown"  # a storage plugin of its own (the files are there)
    shutil.copytree(bag, unknown)
    (unknown / "metadata.yaml").write_text((bag / "metadata.yaml").read_text().replace("storage_identifier: mcap",
                                                                                      "storage_identifier: rosbag_v3"))
    assert "unknown storage" in _one_line_error(run_cli("replay", unknown, "--out", tmp_path / "c"))
    assert "no such bag" in _one_line_error(run_cli("replay", tmp_path / "missing", "--out", tmp_path / "d"))
    (tmp_path / "e").mkdir()
    assert "exists already" in _one_line_error(run_cli("replay", bag, "--out", tmp_path / "e"))
    params = tmp_path / "bad.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_objects: -3\n")
    line = _one_line_error(run_cli("replay", bag, "--out", tmp_path / "f", "--params-file", params))
    assert "max_objects must be >= 0" in line and not (tmp_path / "f").exists()


def test_topics_are_found_by_usual_names_and_types():
    zed = {"/zed/zed_node/rgb/image_rect_color": "sensor_msgs/msg/Image",
           "/zed/zed_node/rgb/camera_info": "sensor_msgs/msg/CameraInfo",
           "/zed/zed_node/depth/camera_info": "sensor_msgs/msg/CameraInfo",
           "/zed/zed_node/depth/depth_registered": "sensor_msgs/msg/Image",
           "/yolo/detections": "vision_msgs/msg/Detection2DArray"}
    chosen = choose_topics(zed, {})
    assert {k: c.topic for k, c in chosen.items()} == {
        "image": "/zed/zed_node/rgb/image_rect_color", "depth": "/zed/zed_node/depth/depth_registered",
        "camera_info": "/zed/zed_node/rgb/camera_info", "detections": "/yolo/detections"}
    orbbec = {"/camera/color/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
              "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
              "/camera/depth/image_raw/compressedDepth": "sensor_msgs/msg/CompressedImage",
              "/sam/instance_labels": "sensor_msgs/msg/Image"}
    chosen = choose_topics(orbbec, {})
    assert chosen["image"].topic == "/camera/color/image_raw/compressed"
    assert chosen["depth"].topic == "/camera/depth/image_raw/compressedDepth"
    assert chosen["masks"].topic == "/sam/instance_labels" and "detections" not in chosen
    other = {"/left/image": "sensor_msgs/msg/Image", "/right/image": "sensor_msgs/msg/Image",
             "/left/camera_info": "sensor_msgs/msg/CameraInfo", "/dets": "vision_msgs/msg/Detection2DArray"}
    with pytest.raises(ReplayError, match="several image topics in the bag: /left/image, /right/image; choose one with --image"):
        choose_topics(other, {})
    assert choose_topics(other, {"image": "/left/image"})["camera_info"].topic == "/left/camera_info"
    with pytest.raises(ReplayError, match="no segmentation topic found"):
        choose_topics({"/image": "sensor_msgs/msg/Image", "/camera_info": "sensor_msgs/msg/CameraInfo"}, {})
    with pytest.raises(ReplayError, match="--depth /dets is vision_msgs/msg/Detection2DArray"):
        choose_topics(other, {"image": "/left/image", "depth": "/dets"})


def test_output_records_are_cut_to_their_cdr_length_and_unmeasurable_ones_are_kept_and_counted(tmp_path):
    """rclpy can hand over a buffer longer than the message: the writer cuts it to the CDR length; a record rosbags
    cannot parse is written as it is (not the end of the replay) and counted for the summary."""
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    from sam3d_ros.ros.offline_node import RecordedOutput
    from sam3d_ros.tools.replay import OutputBag, ReplaySummary, format_summary

    bag = OutputBag(tmp_path / "out")
    try:
        bag(RecordedOutput("/text", String, QoSProfile(depth=1), String(data="hi"), 5))
        cdr = b"\x00\x01\x00\x00" + (3).to_bytes(4, "little") + b"hi\x00"
        assert bag._exact(cdr + b"\x00" + b"stale memory....", "std_msgs/msg/String") == cdr + b"\x00"
        assert not bag.untrimmed
        broken = b"\x00\x01\x00\x00" + (1000).to_bytes(4, "little") + b"hi"  # a string longer than the record
        assert bag._exact(broken, "std_msgs/msg/String") == broken
        assert bag.untrimmed == {"std_msgs/msg/String": 1}
    finally:
        bag.close()
    summary = ReplaySummary(untrimmed=bag.untrimmed)
    assert "not checked by rosbags" in format_summary(summary, tmp_path / "out") and "std_msgs/msg/String 1" in format_summary(summary, tmp_path / "out")
