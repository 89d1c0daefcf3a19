"""Multi-view fusion in the node, in its own process over real DDS: a wrist camera (its pose on /tf) circles a box and a bottle
standing still with target_frame `world`; `~/save_scene` then holds meshes completed from the views, with poses in
`world` and the stamp they hold for, scored against the true meshes in `world` (F1@5mm)."""
import itertools
import json
import time

import numpy as np
import pytest
import trimesh
from rclpy.qos import QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker

from scipy.spatial import cKDTree

from sam3d_ros.geometry.grasps import Grasp
from sam3d_ros.geometry.transforms import invert_transform, transform_from_pose
from sam3d_ros.reconstruction.fusion import BYTES_PER_VOXEL
from sam3d_ros.ros.conversions import frame_name, make_triangle_list
from sam3d_ros.ros.ros_client import running_node
from sam3d_ros.tools.evaluation import chamfer_and_fscore, surface_samples
from sam3d_ros.tools.synthetic import default_intrinsics, load_ycb_mesh, look_at_camera, render_scene, upright_pose
from test_node_tracking import _transform_msg  # noqa: E402  (the same TransformStamped helper)

FRAME_ID = "wrist_camera_optical_frame"
NS_PER_FRAME = 33_333_333
# Tuning objects (tools/object_split.py), standing still on the table at 20 cm from each other.
PLACEMENTS = [(name, upright_pose(name, x, y, yaw)) for name, x, y, yaw in
              (("003_cracker_box", 0.0, -0.1, 0.4), ("006_mustard_bottle", 0.0, 0.1, 1.1))]
SWEEP_DEG, FRAMES = 120.0, 21  # 6 degrees per frame: every frame is a new view of both objects
_stamps = itertools.count()


def _stamp_ns() -> int:
    return 1_760_000_000_000_000_000 + next(_stamps) * NS_PER_FRAME


def _saved_f1(scene_dir) -> tuple[dict[str, float], dict]:
    """F1@5mm of each saved mesh at its saved pose (world) against the true mesh at its true pose."""
    saved = json.loads((scene_dir / "objects.json").read_text())
    scores = {}
    for entry in saved["objects"]:
        mesh = trimesh.load(scene_dir / entry["mesh"], force="mesh")
        T_world_obj = transform_from_pose(np.array(entry["position"]), np.array(entry["orientation_xyzw"]))
        name, T_world_true = PLACEMENTS[int(entry["id"]) - 1]
        _, f1 = chamfer_and_fscore(surface_samples(mesh, T_world_obj), surface_samples(load_ycb_mesh(name), T_world_true))
        scores[entry["id"]] = f1
    return scores, saved


def _saved_grasp_errors_mm(saved: dict) -> dict[str, list[float]]:
    """Per saved object, for each of its saved grasps (world) how far its farther jaw contact lies from the true
    object's surface at its true pose (mm)."""
    errors = {}
    for entry in saved["objects"]:
        name, T_world_true = PLACEMENTS[int(entry["id"]) - 1]
        tree = cKDTree(surface_samples(load_ycb_mesh(name), T_world_true, n=100_000))
        grasps = [Grasp(transform_from_pose(np.array(g["position"]), np.array(g["orientation_xyzw"])), g["width"], g["score"])
                  for g in entry.get("grasps", [])]
        errors[entry["id"]] = [round(float(tree.query(g.contacts_obj())[0].max() * 1e3), 1) for g in grasps]
    return errors


# Above the fused meshes' 5000 triangles: the markers show the meshes themselves, so a marker can be matched with the
# newest mesh file exactly. (The display budget's decimated copies are not: the PLY file holds float32 vertices, and
# quadric decimation of the rounded mesh can pick other collapses, moving the marker's mean by 0.1 mm. The copies
# are tested in test_conversions and test_fused_models.)
MARKER_MAX_TRIANGLES = 20000


@pytest.fixture(scope="module")
def fusion_node(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fusion")
    namespace = "/it_fusion"
    log_path = workdir / "node.log"
    params = {"target_frame": "world", "target_frame_timeout_s": 0.5, "lost_timeout_s": 5.0, "fusion": True,
              "fusion_min_interval_s": 0.5, "mesh_cache_dir": str(workdir / "meshes"),
              "scene_dir": str(workdir / "scenes"), "diagnostics_period_s": 0.5,
              # Swapped meshes reach the subscriber through the arrays of the swapped objects alone: no periodic
              # snapshot of every object's markers (test_the_subscriber_ends_with_every_object_s_current_fused_mesh).
              "marker_snapshot_period_s": 1000000.0, "marker_max_triangles": MARKER_MAX_TRIANGLES}
    with running_node(namespace, params=params, log_path=log_path) as (process, client):
        yield process, client, log_path, workdir


RESULTS: dict = {}  # F1 of the saved meshes, single-view and fused, for the completeness check below


def test_a_camera_moving_around_the_objects_saves_fused_meshes_in_the_target_frame(fusion_node):
    process, client, log_path, workdir = fusion_node
    tf_publisher = client.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    assert client.wait_for(lambda: tf_publisher.get_subscription_count() > 0, 10.0)
    intrinsics = default_intrinsics()
    single = None
    stamp = 0
    key = "/it_fusion/sam3d_perception: fusion"

    def views_integrated() -> int:
        return int(client.diagnostic_values().get(key, {}).get("views integrated", 0))
    for k in range(FRAMES):
        T_cam_world = look_at_camera(0.65, 35.0, 200.0 + SWEEP_DEG * k / (FRAMES - 1))
        scene = render_scene(PLACEMENTS, T_cam_world, intrinsics, rng=k)
        stamp = _stamp_ns()
        tf_publisher.publish(TFMessage(transforms=[_transform_msg("world", FRAME_ID, invert_transform(T_cam_world), stamp)]))
        out = client.publish_rgbd_until_outputs(stamp, FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics, 2,
                                                15.0 if k == 0 else 10.0, labels=scene.labels)
        assert out is not None, f"frame {k}: no output; node log:\n{log_path.read_text()}"
        if k == 0:  # the single-view meshes, as the node had them before any other view
            ok, message = client.call_service("save_scene")
            assert ok, message
            single_dir = next((workdir / "scenes").iterdir())
            single, single_saved = _saved_f1(single_dir)
        else:  # the fusion process runs at low priority: give it the time to take this view (a slow machine)
            before = views_integrated()
            client.wait_for(lambda: views_integrated() > before, 10.0)
    # The fusion thread may still be at a frame: a few more frames of the last view let it catch up.
    for _ in range(6):
        stamp = _stamp_ns()
        tf_publisher.publish(TFMessage(transforms=[_transform_msg("world", FRAME_ID, invert_transform(T_cam_world), stamp)]))
        assert client.publish_rgbd_until_outputs(stamp, FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics, 2,
                                                 labels=scene.labels) is not None
    ok, message = client.call_service("save_scene")
    assert ok, message
    fused_dir = max((workdir / "scenes").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    fused, saved = _saved_f1(fused_dir)
    assert saved["frame_id"] == "world" and saved["stamp_ns"] == stamp
    diagnostics = client.diagnostic_values().get("/it_fusion/sam3d_perception: fusion", {})
    print(f"single-view F1 {single}, fused F1 {fused}, fusion diagnostics {diagnostics}")
    grasp_errors = {"single": _saved_grasp_errors_mm(single_saved), "fused": _saved_grasp_errors_mm(saved)}
    print(f"grasp contacts' distance from the true surface (mm): {grasp_errors}")
    assert sorted(fused) == ["1", "2"]
    # The saved meshes lie where the true objects are in `world` (a pose in the wrong frame scores about 0).
    RESULTS.update(single=single, fused=fused, grasp_errors=grasp_errors)
    for object_id in fused:
        assert fused[object_id] >= 0.3, (single, fused)
    assert int(diagnostics.get("fused meshes installed", 0)) >= 2
    assert 0 < float(diagnostics.get("memory MB (all objects)", 0)) <= 2 * 500000 * BYTES_PER_VOXEL / 1e6
    meshes = {p.name for p in (workdir / "meshes").iterdir()}
    assert any(name.startswith("1_v") and not name.startswith("1_v1.") for name in meshes), meshes  # fused files


def test_the_fused_meshes_are_complete_after_the_sweep():
    # Measured (README, multi-view fusion): single-view 0.49 / 0.57, fused 0.71 / 0.67. Fused at poses without
    # tracking error (the first pose moved by the true camera motion) the same views give 0.71 / 0.73: what a 120
    # degree sweep never sees keeps the one-view completion. Since the hull fill (README, "A completion thinner than
    # the object"): fused 0.96 / 0.83. The bar: a clear gain over the single view. (With no free core the SCHED_IDLE
    # fusion process integrates no view and this fails: fusion_cpu_priority idle, as documented.)
    assert RESULTS, "the sweep test above did not get to save its meshes"
    for object_id, f1 in RESULTS["fused"].items():
        assert f1 >= 0.6 and f1 >= RESULTS["single"][object_id] + 0.05, RESULTS


def test_the_fused_meshes_grasps_close_on_the_true_objects():
    # Measured: the saved grasps' farther contact lies 17-26 mm from the true surface on the single-view meshes (box
    # 23 mm median: its one-view completion is 41 mm deep, the box 72 mm), 0.6-9.7 mm on the fused ones (median
    # 0.9 / 0.8 mm): each fused mesh comes with grasps planned on it.
    assert RESULTS, "the sweep test above did not get to save its meshes"
    errors = RESULTS["grasp_errors"]
    for object_id, fused in errors["fused"].items():
        assert fused, f"object {object_id}: no grasps saved with its fused mesh ({errors})"
        assert float(np.median(fused)) <= 5.0, errors


def _fingerprint(points) -> tuple[int, np.ndarray]:
    """Triangle corners of a TRIANGLE_LIST marker's points: how many, and their mean (a changed mesh changes it)."""
    return len(points), np.array([[p.x, p.y, p.z] for p in points]).mean(axis=0)


def _current_meshes(mesh_dir) -> dict[str, tuple[int, np.ndarray]]:
    """Object TF frame -> fingerprint of the marker of its newest mesh file (the node's current mesh)."""
    newest: dict[str, tuple[int, object]] = {}
    for path in mesh_dir.glob("*_v*.ply"):
        object_id, version = path.stem.rsplit("_v", 1)
        if int(version) > newest.get(object_id, (0, None))[0]:
            newest[object_id] = (int(version), path)
    try:
        return {frame_name("sam3d_object_", object_id):
                _fingerprint(make_triangle_list(trimesh.load(path, process=False), MARKER_MAX_TRIANGLES)[0])
                for object_id, (_, path) in newest.items()}
    except FileNotFoundError:  # pruned by a newer version meanwhile: ask again with the next frame
        return {}


def _same(shown: dict, current: dict) -> bool:
    return shown.keys() == current.keys() and all(
        shown[k][0] == current[k][0] and np.allclose(shown[k][1], current[k][1], atol=1e-6) for k in shown)


def test_the_subscriber_ends_with_every_object_s_current_fused_mesh(fusion_node):
    """Through the sweep's fused swaps (each sent as the swapped objects' markers, no periodic snapshot here), the
    subscriber that watched from the start shows every object's current mesh."""
    process, client, log_path, workdir = fusion_node
    assert RESULTS, "the sweep test above did not run"
    T_cam_world = look_at_camera(0.65, 35.0, 200.0 + SWEEP_DEG)
    scene = render_scene(PLACEMENTS, T_cam_world, default_intrinsics(), rng=FRAMES)
    tf_publisher = client.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    assert client.wait_for(lambda: tf_publisher.get_subscription_count() > 0, 10.0)

    def shown() -> dict[str, tuple[int, np.ndarray]]:
        with client._lock:
            return {m.header.frame_id: _fingerprint(m.points) for m in client.markers.values()
                    if m.type == Marker.TRIANGLE_LIST and m.action == Marker.ADD}
    current = {}
    # A swap installed after the last frame is sent with the next one, and the fusion process (idle CPU priority) may
    # still be working off the sweep's views, each a later swap: frames until the swaps have stopped and every
    # object's marker is its current mesh (10 frames were not always enough under CI's load), 120 s at most.
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        stamp = _stamp_ns()
        tf_publisher.publish(TFMessage(transforms=[_transform_msg("world", FRAME_ID, invert_transform(T_cam_world), stamp)]))
        assert client.publish_rgbd_until_outputs(stamp, FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics, 2,
                                                 labels=scene.labels) is not None
        current = _current_meshes(workdir / "meshes")
        if client.wait_for(lambda: _same(shown(), current), 2.0):
            break
    with client._lock:
        arrays = [sum(m.type == Marker.TRIANGLE_LIST for m in a.markers) for a in client.marker_arrays]
    print(f"mesh markers per array received: {arrays}; shown {shown()}, current meshes {current}")
    assert len(current) == 2 and _same(shown(), current)
    assert len(arrays) >= 3  # the first reconstruction and fused swaps, each sent when it came
