"""OfflinePerceptionNode: the node fed message by message in-process, its outputs recorded with the input's time."""
from __future__ import annotations

import threading

import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from visualization_msgs.msg import Marker

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


def feed_frame(node, scene, stamp_ns, time_ns):
    """One frame's camera_info, depth, image and masks, stamped `stamp_ns`, fed at recording time `time_ns`."""
    _, image, info, depth, masks, _ = rgbd_messages(stamp_ns, "cam", scene.rgb, scene.depth_m, scene.intrinsics,
                                                    scene.labels)
    for topic, msg in (("/camera_info", info), ("/depth", depth), ("/image", image), ("/masks", masks)):
        node.feed(topic, msg, time_ns)


def record_fusion_submissions(node):
    """Stamps of the frames the node hands to fusion, in order (the submission itself goes on as usual)."""
    submitted = []
    submit = node._submit_fusion
    node._submit_fusion = lambda frame: (submitted.append(frame.stamp_ns), submit(frame))
    return submitted


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
            feed_frame(node, scene, stamp, stamp + 1)
            versions.append(node.tracker.tracks["1"].mesh_version)
        node.finish()
    finally:
        node.destroy_node()
    assert versions == [1, 2, 2, 2, 3, 3], versions


def test_a_fused_mesh_that_cannot_be_tracked_costs_only_its_own_swap(context, tmp_path):
    # The fusion process never hands out a mesh without surface, but should one come (here injected at the process
    # boundary, beside a good one), the other object's fused mesh is still installed and the node says why.
    import numpy as np
    import trimesh

    from sam3d_ros.tracking.fused_models import FusedMesh

    scene = moving_object_sequence(["004_sugar_box", "005_tomato_soup_can"], 1, seed=0, distance_range=(0.6, 0.6))[0]
    recorded = []
    node = make_node(context, tmp_path, recorded.append)
    try:
        feed_frame(node, scene, START_NS, START_NS + 1)
        tracks = dict(node.tracker.tracks)
        assert sorted(tracks) == ["1", "2"]
        flat = trimesh.Trimesh(np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.0, 0.0]]), [[0, 1, 2]], process=False)
        good = tracks["2"].reconstruction.mesh_obj
        node.fused_models.integrate = lambda *args: [FusedMesh("1", tracks["1"].mesh_version, flat, 3),
                                                     FusedMesh("2", tracks["2"].mesh_version, good, 3)]
        warnings = []
        warn = node.warn
        node.warn = lambda key, text: (warnings.append(text), warn(key, text))
        due = node._fuse(None)
    finally:
        node.destroy_node()
    assert [fused.track_id for fused, _, _ in due] == ["2"]
    assert any(text.startswith("object 1: its fused mesh cannot be tracked") for text in warnings), warnings


def test_at_most_fusion_max_rate_hz_frames_go_to_fusion_on_the_recording_clock(context, tmp_path):
    # Frames 0.1 s apart in the recording (the first is reconstructed, so fusion starts with the second):
    # fusion_max_rate_hz 5 sends every other frame to fusion, 0 every frame.
    name = "004_sugar_box"
    scene = render_scene([(name, upright_pose(name, 0.0, 0.0, 0.4))], look_at_camera(0.55, 35.0, 10.0),
                         default_intrinsics(320, 240), rng=0)
    stamps = [START_NS + k * 100_000_000 for k in range(6)]
    for rate, expected in ((5.0, [1, 3, 5]), (0.0, [1, 2, 3, 4, 5])):
        node = make_node(context, tmp_path / str(rate), lambda output: None, fusion_max_rate_hz=rate)
        submitted = record_fusion_submissions(node)
        try:
            for stamp in stamps:
                feed_frame(node, scene, stamp, stamp + 1)
            node.finish()
        finally:
            node.destroy_node()
        assert submitted == [stamps[k] for k in expected], (rate, [(s - START_NS) / 1e9 for s in submitted])


def test_after_the_pacing_clock_went_back_the_next_frame_goes_to_fusion_and_pacing_goes_on_from_it(context, tmp_path):
    # A source that starts again 2 s earlier (a looping bag played with its clock, a simulator reset), on a pacing
    # clock that goes back with it: the node's own clocks never go back (monotonic live; replay's recording time
    # goes on when the stamps jump back), so the test sets the pacing clock through the node's seam, _arrival_s.
    # Frames 0.1 s apart, fusion_max_rate_hz 5: every other frame of the first pass goes to fusion (1, 3, 5); after
    # the jump the first frame goes at once, then every other one again (not none until the old time comes back).
    name = "004_sugar_box"
    scene = render_scene([(name, upright_pose(name, 0.0, 0.0, 0.4))], look_at_camera(0.55, 35.0, 10.0),
                         default_intrinsics(320, 240), rng=0)
    first = [START_NS + k * 100_000_000 for k in range(6)]
    second = [START_NS - 2_000_000_000 + k * 100_000_000 for k in range(6)]
    node = make_node(context, tmp_path, lambda output: None, fusion_max_rate_hz=5.0)
    pacing_s = [0.0]
    node._arrival_s = lambda: pacing_s[0]
    submitted = record_fusion_submissions(node)
    try:
        for k, stamp in enumerate(first + second):
            pacing_s[0] = stamp / 1e9
            feed_frame(node, scene, stamp, START_NS + k * 100_000_000)  # the recording time goes on
        assert node.tracker.time_epoch == 1, "the node saw time jump back"
        assert node.stats.frames_out == 12, "every frame of both passes was tracked"
    finally:
        node.destroy_node()
    expected = [first[1], first[3], first[5], second[0], second[2], second[4]]
    assert submitted == expected, [(s - START_NS) / 1e9 for s in submitted]


def test_a_fused_mesh_resource_marker_is_sent_once_its_file_is_written_and_names_the_new_file(context, tmp_path):
    # marker_mesh mesh_resource, fusion on: frame 0 is reconstructed (v1), frame 1's view is fused (v2, installed
    # after frame 1). Frame 2 is tracked while v2's files are being written (live, the tracking thread goes on while
    # the fusion thread writes): its markers must not send the object, whose newest file is not there yet (it would
    # name v1's file, and nothing would send the object again). Frame 3, after the write, sends the object's marker
    # naming v2's file; frame 4 sends nothing more (changed once; no snapshot within marker_snapshot_period_s).
    scenes = moving_object_sequence(["004_sugar_box"], n_frames=5, seed=1, intrinsics=default_intrinsics(320, 240))
    stamps = [START_NS + k * 33_333_333 for k in range(5)]
    sent = []  # (frame index being fed, object mesh URIs of one marker array)
    feeding = [0]

    def sink(output):
        if output.topic == "/sam3d_perception/markers":
            sent.append((feeding[0], [m.mesh_resource for m in output.msg.markers
                                      if m.type == Marker.MESH_RESOURCE and m.action == Marker.ADD]))

    node = make_node(context, tmp_path, sink, marker_mesh="mesh_resource", fusion_max_rate_hz=5.0,
                     marker_snapshot_period_s=1e6)
    write = node.mesh_cache.write
    fused_writes = []

    def write_while_frame_2_is_tracked(object_id, version, mesh_obj):
        if threading.current_thread().name.startswith("sam3d_fusion"):
            fused_writes.append(version)
            feeding[0] = 2  # not due for fusion (0.07 s after frame 1 at 5 Hz): tracked here, without waiting on it
            feed_frame(node, scenes[2], stamps[2], stamps[2] + 1)
        return write(object_id, version, mesh_obj)

    node.mesh_cache.write = write_while_frame_2_is_tracked
    try:
        for k in (0, 1, 3, 4):
            feeding[0] = k
            feed_frame(node, scenes[k], stamps[k], stamps[k] + 1)
        assert node.frames_processed == 5 and node.stats.fused_meshes == 1 and fused_writes == [2]
    finally:
        node.destroy_node()
    uri = {v: node.mesh_cache.uri(tmp_path / "meshes" / f"1_v{v}.glb") for v in (1, 2)}
    assert sent[0] == (0, [uri[1]]), sent  # the reconstruction's marker
    assert [uris for k, uris in sent if k >= 2 and uris] == [[uri[2]]], sent
    assert [k for k, uris in sent if uris == [uri[2]]] == [3], sent


def test_its_clock_is_the_recording_time(context, tmp_path):
    node = make_node(context, tmp_path, lambda output: None, use_sim_time=False)  # whatever a params file says
    try:
        node.advance(START_NS)
        assert node.get_clock().now().nanoseconds == START_NS
        node.advance(START_NS - 1)  # never back
        assert node.get_clock().now().nanoseconds == START_NS
    finally:
        node.destroy_node()
