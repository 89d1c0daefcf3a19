"""One object the backend fails on costs that object only in the node: the others are published and written.

`PerceptionNode` runs in this process (its own rclpy context), as in test_node_reconstruction_outputs.py; the
request is made through the node's own tracker and finished through `_reconstruct` / `_on_reconstructed`, the calls
its scheduler makes. The depth backend raises a plain library error (trimesh's "max_iter exceeded!") for one object.
"""
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter

from sam3d_ros.geometry.types import RGBDFrame
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
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


def test_a_backend_failure_of_one_object_keeps_the_others_outputs(node, monkeypatch):
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
