"""The node installs a new reconstruction without holding its lock for the heavy parts.

`PerceptionNode` runs in this process (its own rclpy context); a reconstruction request is made from a rendered
frame through the node's own tracker and finished through the node's own `_reconstruct` / `_on_reconstructed`, the
calls its scheduler makes. Mesh files are written, and collision meshes and marker triangle lists are converted,
while the node lock is free, so the tracking thread is never held up by them; an object removed while its files
were being written leaves no files behind; one object the backend fails on costs that object only.
"""
import threading

import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from sam3d_ros.geometry.types import RGBDFrame
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.ros import conversions
from sam3d_ros.ros.perception_node import PerceptionNode
from sam3d_ros.tools.synthetic import random_tabletop_scene
from sam3d_ros.tracking.scheduler import Job


@pytest.fixture
def node(tmp_path):
    context = Context()
    rclpy.init(context=context)
    made = PerceptionNode(context=context, parameter_overrides=[
        Parameter("mesh_cache_dir", value=str(tmp_path / "meshes")), Parameter("box_segmentation", value="depth")])
    try:
        yield made
    finally:
        made.destroy_node()
        rclpy.shutdown(context=context)


def _request(node):
    """A reconstruction request for the 2 objects of a rendered frame, made as the tracking thread makes it."""
    scene = random_tabletop_scene(seed=5, n_objects=2)
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics, "camera", stamp_ns=1)
    prompts = labels_to_prompts(scene.labels)
    observations = node.tracker.observe(frame.depth_m, frame.intrinsics, prompts, [p.mask for p in prompts])
    with node._lock:
        update = node.tracker.update(1, observations)
        request = node.tracker.make_request(1, update.to_reconstruct)
    assert len(request.prompts) == 2
    return request, frame


def _record_lock(monkeypatch, node, module, name, calls):
    original = getattr(module, name)

    def recording(*args, **kwargs):
        calls.append((name, node._lock._is_owned()))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)


def test_files_and_mesh_conversions_happen_without_the_node_lock(node, monkeypatch):
    request, frame = _request(node)
    calls = []
    for name in ("make_triangle_list", "make_shape_mesh"):
        _record_lock(monkeypatch, node, conversions, name, calls)
    _record_lock(monkeypatch, node, node.mesh_cache, "write", calls)
    published = []
    monkeypatch.setattr(node.markers_pub, "publish", published.append)
    result = node._reconstruct((request, frame))
    node._on_reconstructed(Job((request, frame)), result, None, 0.1)
    assert sorted(name for name, _ in calls) == sorted(["make_triangle_list", "make_shape_mesh", "write"] * 2)
    assert not any(owned for _, owned in calls), calls
    assert set(node._mesh_files) == {p.object_id for p in request.prompts}
    assert all(path.is_file() for files in node._mesh_files.values() for path in files.values())
    # The markers carry the prepared triangle lists: 3 corners per triangle of each mesh (of its decimated copy when
    # over the budget).
    meshes = [m for m in published[-1].markers if m.ns == "sam3d"]
    assert len(meshes) == 2
    budget = int(node.params["marker_max_triangles"])
    for marker in meshes:
        faces = len(node.tracker.tracks[next(k for k, v in node._marker_ids.items() if v == marker.id)].reconstruction.mesh_obj.faces)
        if faces <= budget:
            assert len(marker.points) == 3 * faces
        else:
            assert 3 * 0.8 * budget <= len(marker.points) <= 3 * budget


def test_an_object_removed_while_its_files_are_written_leaves_none(node, monkeypatch):
    request, frame = _request(node)
    writing, release = threading.Event(), threading.Event()
    original = node.mesh_cache.write

    def slow_write(*args):
        writing.set()
        assert release.wait(30)
        return original(*args)

    monkeypatch.setattr(node.mesh_cache, "write", slow_write)
    result = node._reconstruct((request, frame))
    finishing = threading.Thread(target=node._on_reconstructed, args=(Job((request, frame)), result, None, 0.1))
    finishing.start()
    try:
        assert writing.wait(30)
        # The node lock is free while the file is written: ~/clear (which takes it) completes meanwhile.
        cleared = []
        clearing = threading.Thread(target=lambda: cleared.append(node._on_clear(Trigger.Request(), Trigger.Response())))
        clearing.start()
        clearing.join(timeout=10)
        assert not clearing.is_alive(), "~/clear waited for the mesh file write"
        assert cleared[0].message == "forgot 2 object(s)"
    finally:
        release.set()
        finishing.join(timeout=30)
    assert not finishing.is_alive()
    assert node._mesh_files == {} and node._marker_meshes == {} and node._collision_shapes == {}
    assert list(node.mesh_cache.directory.iterdir()) == []


def test_a_reconstruction_requested_before_time_jumped_back_is_published_at_the_new_time(node, monkeypatch):
    """A bag looped back while a reconstruction ran: its frame's stamp belongs to the old timeline, which TF
    listeners forgot (a sample there would even read as another jump), so it is published at the newest frame's."""
    s = 1_000_000_000
    scene = random_tabletop_scene(seed=5, n_objects=2)
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics, "camera", stamp_ns=100 * s)
    prompts = labels_to_prompts(scene.labels)
    with node._lock:
        observe = lambda: node.tracker.observe(frame.depth_m, frame.intrinsics, prompts, [p.mask for p in prompts])
        update = node.tracker.update(100 * s, observe())
        request = node.tracker.make_request(100 * s, update.to_reconstruct)
        node.tracker.update(40 * s, observe())  # 60 s back
    detections, transforms = [], []
    monkeypatch.setattr(node.detections_pub, "publish", detections.append)
    monkeypatch.setattr(node.tf_broadcaster, "sendTransform", transforms.append)
    result = node._reconstruct((request, frame))
    node._on_reconstructed(Job((request, frame)), result, None, 0.1)
    assert len(detections) == 1 and len(detections[0].detections) == 2
    assert conversions.stamp_to_ns(detections[0].header.stamp) == 40 * s
    stamps = {conversions.stamp_to_ns(tf.header.stamp) for message in transforms for tf in message}
    assert stamps == {40 * s}


def test_a_backend_failure_of_one_object_keeps_the_others_outputs(node, monkeypatch):
    """The depth backend raises a plain library error (trimesh's "max_iter exceeded!") for one object of three: the
    other two are published (markers) and written (mesh files), and only they get a reconstruction."""
    scene = random_tabletop_scene(seed=5, n_objects=3)
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics, "camera", stamp_ns=1)
    prompts = labels_to_prompts(scene.labels)
    observations = node.tracker.observe(frame.depth_m, frame.intrinsics, prompts, [p.mask for p in prompts])
    with node._lock:
        request = node.tracker.make_request(1, node.tracker.update(1, observations).to_reconstruct)
    assert len(request.prompts) == 3
    bad = request.prompts[1].object_id
    backend = node.pipeline.backend
    original = backend.reconstruct

    def fragile(frame, mask, scene, object_id="", label="", score=1.0):
        if object_id == bad:
            raise ValueError("max_iter exceeded!")
        return original(frame, mask, scene, object_id, label, score)

    monkeypatch.setattr(backend, "reconstruct", fragile)
    published = []
    monkeypatch.setattr(node.markers_pub, "publish", published.append)
    result = node._reconstruct((request, frame))
    node._on_reconstructed(Job((request, frame)), result, None, 0.1)
    good = {p.object_id for p in request.prompts} - {bad}
    assert set(node._mesh_files) == good
    assert all(path.is_file() for files in node._mesh_files.values() for path in files.values())
    assert len([m for m in published[-1].markers if m.ns == "sam3d"]) == 2
    reconstructed = {track_id for track_id, track in node.tracker.tracks.items() if track.reconstruction is not None}
    assert reconstructed == good
