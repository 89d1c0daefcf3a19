"""~/markers over real DDS: a new mesh sends that object's markers alone; a subscriber that was there all along ends
with every object's marker, and one that joins while the latched array holds only some objects gets them all (a
snapshot sent because it joined: marker_snapshot_period_s is far too long here to help)."""
import itertools

import pytest
from visualization_msgs.msg import Marker

from sam3d_ros.ros.ros_client import PerceptionClient, running_node
from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, render_scene, upright_pose

FRAME_ID = "camera_color_optical_frame"
NAMESPACE = "/it_markers"
PLACEMENTS = [(name, upright_pose(name, x, y, yaw)) for name, x, y, yaw in
              (("003_cracker_box", 0.0, -0.15, 0.4), ("006_mustard_bottle", 0.0, 0.0, 1.1),
               ("004_sugar_box", 0.0, 0.15, 0.2))]
_stamps = itertools.count()


def _stamp_ns() -> int:
    return 1_770_000_000_000_000_000 + next(_stamps) * 33_333_333


def _scene(n_objects: int):
    return render_scene(PLACEMENTS[:n_objects], look_at_camera(0.8, 40.0, 180.0), default_intrinsics(), rng=n_objects)


def _send(client: PerceptionClient, scene, n_objects: int) -> None:
    out = client.publish_rgbd_until_outputs(_stamp_ns(), FRAME_ID, scene.rgb, scene.depth_m, scene.intrinsics, n_objects,
                                            15.0, labels=scene.labels)
    assert out is not None, f"no outputs for {n_objects} objects"


def _meshes(markers) -> dict[str, int]:
    """Object frame -> triangle corners of its mesh marker, of the markers shown now or of one array."""
    return {m.header.frame_id: len(m.points) for m in markers if m.type == Marker.TRIANGLE_LIST and m.action == Marker.ADD}


@pytest.fixture(scope="module")
def markers_node(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("markers")
    log_path = workdir / "node.log"
    # Fusion off: the meshes change only when an object is reconstructed (here: when it first appears).
    params = {"fusion": False, "marker_snapshot_period_s": 1000000.0, "mesh_cache_dir": str(workdir / "meshes"),
              "publish_grasps": False}
    with running_node(NAMESPACE, params=params, log_path=log_path) as (process, client):
        yield process, client, log_path


def test_a_new_mesh_goes_alone_and_late_subscribers_still_get_every_object(markers_node):
    process, client, log_path = markers_node
    _send(client, _scene(2), 2)
    assert client.wait_for(lambda: len(_meshes(client.markers.values())) == 2, 10.0), log_path.read_text()
    arrays_before = len(client.marker_arrays)
    # A third object appears: only its mesh is new, and only its markers are sent.
    _send(client, _scene(3), 3)
    assert client.wait_for(lambda: len(_meshes(client.markers.values())) == 3, 10.0), log_path.read_text()
    with client._lock:
        new_arrays = [_meshes(a.markers) for a in client.marker_arrays[arrays_before:]]
        live = _meshes(client.markers.values())
    assert new_arrays and all(len(a) == 1 for a in new_arrays), new_arrays
    assert all(corners > 0 and corners % 3 == 0 for corners in live.values()), live

    # A viewer joining now gets the latched array (the third object alone), then every object's markers.
    late = PerceptionClient(NAMESPACE)
    try:
        assert late.wait_for(lambda: late.marker_arrays, 10.0), "the latched MarkerArray never came"
        with late._lock:
            assert len(_meshes(late.marker_arrays[0].markers)) == 1  # partial: DDS alone would leave it there
        for _ in range(5):  # the node sees the new subscriber with its next tracked frame
            _send(client, _scene(3), 3)
            if late.wait_for(lambda: len(_meshes(late.markers.values())) == 3, 3.0):
                break
        with late._lock:
            assert _meshes(late.markers.values()) == live
            assert any(len(_meshes(a.markers)) == 3 for a in late.marker_arrays)
            assert {m.header.frame_id for m in late.markers.values() if m.type == Marker.TEXT_VIEW_FACING} == set(live)
    finally:
        late.close()
    with client._lock:  # the live subscriber got the same snapshot: nothing changed for it
        assert _meshes(client.markers.values()) == live
