"""FusedModels: which views are taken, when a fused mesh is due, and how mesh versions restart a model."""
import numpy as np
import pytest
import trimesh

from sam3d_ros.geometry.transforms import make_transform
from sam3d_ros.reconstruction.fusion import FusionConfig
from sam3d_ros.tools.synthetic import default_intrinsics, load_ycb_mesh, look_at_camera, render_scene, upright_pose
from sam3d_ros.tracking.fused_models import FusedModels, FusionFrame, FusionView

NAME = "004_sugar_box"  # a tuning object
INTRINSICS = default_intrinsics(320, 240)


@pytest.fixture(scope="module")
def scenes():
    placements = [(NAME, upright_pose(NAME, 0.0, 0.0, 0.4))]
    azimuths = [10.0, 11.0, 40.0, 70.0, 100.0]  # the second is almost the first view
    return [render_scene(placements, look_at_camera(0.55, 35.0, a), INTRINSICS) for a in azimuths]


def _prior() -> trimesh.Trimesh:
    bounds = load_ycb_mesh(NAME).bounds
    extents = (bounds[1] - bounds[0]) * np.array([1.0, 2.0, 0.8])
    centre = bounds.mean(axis=0)
    centre[2] = bounds[0, 2] + extents[2] / 2
    return trimesh.creation.box(extents=extents, transform=make_transform(np.eye(3), centre))


def _frame(scene, version: int, prior: trimesh.Trimesh, T_cam_obj=None) -> FusionFrame:
    obj = scene.objects[0]
    view = FusionView("a", version, prior, obj.T_cam_obj if T_cam_obj is None else T_cam_obj, scene.mask(1), 0.95, 0.002)
    return FusionFrame(0, scene.depth_m, scene.rgb, scene.intrinsics, scene.support_plane_cam, [view])


def test_new_views_are_fused_and_meshes_come_at_a_bounded_rate(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=1.0, min_changed_voxels=10)
    prior = _prior()
    due = models.integrate(_frame(scenes[0], 1, prior), now_s=0.0)
    assert [d.track_id for d in due] == ["a"] and due[0].mesh_version == 1 and due[0].mesh_obj.is_watertight
    assert models.integrate(_frame(scenes[1], 1, prior), now_s=5.0) == []  # nearly the same direction: not taken
    assert models.views_integrated == 1
    assert models.integrate(_frame(scenes[2], 1, prior), now_s=0.5) == []  # taken, but less than 1 s since the last mesh
    assert models.views_integrated == 2
    due = models.integrate(_frame(scenes[3], 1, prior), now_s=1.5)
    assert len(due) == 1 and due[0].views == 3
    assert 0 < models.bytes_by_object()["a"] <= 100_000 * 12


def test_installed_meshes_keep_the_model_and_a_new_reconstruction_restarts_it(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10)
    prior = _prior()
    models.integrate(_frame(scenes[0], 1, prior), now_s=0.0)
    models.installed("a", 2)  # the tracker installed the fused mesh as version 2: same object frame
    models.integrate(_frame(scenes[2], 2, prior), now_s=1.0)
    assert models.views_integrated == 2 and models._models["a"].fusion.views_integrated == 2
    models.integrate(_frame(scenes[3], 7, prior), now_s=2.0)  # reconstructed again (version 7): a fresh model
    assert models._models["a"].fusion.views_integrated == 1 and models._models["a"].base_version == 7
    models.integrate(_frame(scenes[4], 2, prior), now_s=3.0)  # a late view in the old frame is not fused
    assert models._models["a"].fusion.views_integrated == 1
    models.forget(set())
    assert models.bytes_by_object() == {}


def test_a_wrong_view_is_counted_not_fused(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10)
    prior = _prior()
    for k in (0, 2, 3):
        models.integrate(_frame(scenes[k], 1, prior), now_s=float(k))
    T_wrong = scenes[4].objects[0].T_cam_obj @ make_transform(np.eye(3), [0.06, 0.04, 0.0])
    assert models.integrate(_frame(scenes[4], 1, prior, T_wrong), now_s=9.0) == []
    assert models.views_skipped == 1 and "disagrees" in models.last_skip_reason
