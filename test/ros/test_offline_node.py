"""OfflinePerceptionNode: the node fed message by message in-process, its outputs recorded with the input's time."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter

from sam3d_ros.ros.offline_node import OfflinePerceptionNode
from sam3d_ros.ros.ros_client import rgbd_messages
from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, moving_object_sequence, render_scene, upright_pose

START_NS = 1_750_000_000_000_000_000


@pytest.fixture
def context():
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def make_node(context, tmp_path, sink, **params):
    overrides = [Parameter("mesh_cache_dir", value=str(tmp_path / "meshes")),
                 *(Parameter(name, value=value) for name, value in params.items())]
    return OfflinePerceptionNode(sink, context=context, parameter_overrides=overrides)


def test_every_frame_is_tracked_with_its_reconstruction_and_outputs_carry_the_input_time(context, tmp_path):
    scenes = moving_object_sequence(["004_sugar_box"], n_frames=3, seed=1, intrinsics=default_intrinsics(320, 240))
    recorded = []
    node = make_node(context, tmp_path, recorded.append)
    try:
        assert node.mesh_cache.keep_versions is None, "a recording refers to every mesh version"
        assert {"/image", "/camera_info", "/depth", "/masks", "/detections"} <= set(node.topics())
        for k, scene in enumerate(scenes):
            stamp = START_NS + k * 33_333_333
            _, image, info, depth, masks, _ = rgbd_messages(stamp, "cam", scene.rgb, scene.depth_m, scene.intrinsics,
                                                            scene.labels)
            node.feed("/not_subscribed", image, stamp)  # ignored
            for topic, msg in (("/camera_info", info), ("/depth", depth), ("/image", image)):
                node.feed(topic, msg, stamp + 1)
            assert node.stats.frames_out == k, "no frame before its masks"
            node.feed("/masks", masks, stamp + 40_000_000)  # the segmenter's latency
            assert node.stats.frames_out == k + 1 and node.scheduler.idle(), "tracked and reconstructed at once"
        node.finish()
    finally:
        node.destroy_node()
    assert node.stats.reconstructions == 1 and node.frames_processed == 3
    tf = [r for r in recorded if r.topic == "/tf"]
    assert [r.time_ns for r in tf] == [START_NS + k * 33_333_333 + 40_000_000 for k in range(3)]
    assert [r.msg.transforms[0].header.stamp.nanosec for r in tf] == [0, 33_333_333, 66_666_666]
    topics = {r.topic for r in recorded}
    assert {"/sam3d_perception/detections", "/sam3d_perception/markers", "/sam3d_perception/collision_objects",
            "/diagnostics"} <= topics
    assert "/parameter_events" not in topics
    # v1: the reconstruction of frame 0; v2: the fused mesh of frame 1's view (fusion is on; frame 0's view came
    # before its reconstruction), installed before frame 2 and no more within fusion_min_interval_s (1 s).
    assert node.stats.fused_meshes == 1
    assert sorted(p.name for p in (tmp_path / "meshes").iterdir()) == ["1_v1.glb", "1_v1.ply", "1_v2.glb", "1_v2.ply"]


def test_fused_meshes_come_at_the_recording_times_interval(context, tmp_path):
    # Frames 0.4 s apart in the recording, fed as fast as the machine goes: a fused mesh at most once per
    # fusion_min_interval_s (1 s) of recording time, so after the views of frames 1 (0.4 s) and 4 (1.6 s) only.
    # On the wall clock they fall where the machine's speed puts them (seen: [1, 2, 3, 3, 3, 3]).
    name = "004_sugar_box"  # still; the camera circles it by 7 degrees a frame: every frame is a new view
    scenes = [render_scene([(name, upright_pose(name, 0.0, 0.0, 0.4))], look_at_camera(0.55, 35.0, 10.0 + 7.0 * k),
                           default_intrinsics(320, 240), rng=k) for k in range(6)]
    recorded = []
    node = make_node(context, tmp_path, recorded.append, fusion_min_interval_s=1.0)
    versions = []
    try:
        for k, scene in enumerate(scenes):
            stamp = START_NS + k * 400_000_000
            _, image, info, depth, masks, _ = rgbd_messages(stamp, "cam", scene.rgb, scene.depth_m, scene.intrinsics,
                                                            scene.labels)
            for topic, msg in (("/camera_info", info), ("/depth", depth), ("/image", image), ("/masks", masks)):
                node.feed(topic, msg, stamp + 1)
            versions.append(node.tracker.tracks["1"].mesh_version)
        node.finish()
    finally:
        node.destroy_node()
    assert versions == [1, 2, 2, 2, 3, 3], versions


def test_at_most_fusion_max_rate_hz_frames_go_to_fusion_on_the_recording_clock(context, tmp_path):
    # Frames 0.1 s apart in the recording (the first is reconstructed, so fusion starts with the second):
    # fusion_max_rate_hz 5 sends every other frame to fusion, 0 every frame.
    name = "004_sugar_box"
    scene = render_scene([(name, upright_pose(name, 0.0, 0.0, 0.4))], look_at_camera(0.55, 35.0, 10.0),
                         default_intrinsics(320, 240), rng=0)
    stamps = [START_NS + k * 100_000_000 for k in range(6)]
    for rate, expected in ((5.0, [1, 3, 5]), (0.0, [1, 2, 3, 4, 5])):
        node = make_node(context, tmp_path / str(rate), lambda output: None, fusion_max_rate_hz=rate)
        submitted = []
        submit = node._submit_fusion
        node._submit_fusion = lambda frame, submit=submit, submitted=submitted: (submitted.append(frame.stamp_ns), submit(frame))
        try:
            for stamp in stamps:
                _, image, info, depth, masks, _ = rgbd_messages(stamp, "cam", scene.rgb, scene.depth_m,
                                                                scene.intrinsics, scene.labels)
                for topic, msg in (("/camera_info", info), ("/depth", depth), ("/image", image), ("/masks", masks)):
                    node.feed(topic, msg, stamp + 1)
            node.finish()
        finally:
            node.destroy_node()
        assert submitted == [stamps[k] for k in expected], (rate, [(s - START_NS) / 1e9 for s in submitted])


def test_its_clock_is_the_recording_time(context, tmp_path):
    node = make_node(context, tmp_path, lambda output: None, use_sim_time=False)  # whatever a params file says
    try:
        node.advance(START_NS)
        assert node.get_clock().now().nanoseconds == START_NS
        node.advance(START_NS - 1)  # never back
        assert node.get_clock().now().nanoseconds == START_NS
    finally:
        node.destroy_node()
