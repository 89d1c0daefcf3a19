"""FusedModels: which views are taken, when a fused mesh is due, and how mesh versions restart a model."""
from dataclasses import replace

import numpy as np
import open3d as o3d
import pytest
import trimesh
from scipy.spatial import cKDTree

from sam3d_ros.geometry.grasps import GraspPlanner, SceneMeshes
from sam3d_ros.geometry.transforms import make_transform
from sam3d_ros.reconstruction.fusion import FusionConfig
from sam3d_ros.tools.synthetic import (
    default_intrinsics, load_ycb_mesh, look_at_camera, render_scene, stretched_model_box, upright_pose,
)
from sam3d_ros.tracking.fused_models import FusedModels, FusionFrame, FusionProcess, FusionView
from sam3d_ros.tracking.pose_tracking import ObjectModel

NAME = "004_sugar_box"  # a tuning object
INTRINSICS = default_intrinsics(320, 240)


@pytest.fixture(scope="module")
def scenes():
    placements = [(NAME, upright_pose(NAME, 0.0, 0.0, 0.4))]
    azimuths = [10.0, 11.0, 40.0, 70.0, 100.0]  # the second is almost the first view
    return [render_scene(placements, look_at_camera(0.55, 35.0, a), INTRINSICS) for a in azimuths]


def _prior() -> trimesh.Trimesh:
    return stretched_model_box(NAME, (1.0, 2.0, 0.8))


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


def test_after_the_clock_went_back_a_fused_mesh_is_due_at_once(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=1.0, min_changed_voxels=10)
    prior = _prior()
    assert len(models.integrate(_frame(scenes[0], 1, prior), now_s=100.0)) == 1
    due = models.integrate(_frame(scenes[2], 1, prior), now_s=3.0)  # a simulator reset: not stuck until 101 s
    assert len(due) == 1 and due[0].views == 2
    assert models.integrate(_frame(scenes[3], 1, prior), now_s=3.5) == []  # the interval counts from 3 s


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


def _contact_error_mm(grasps) -> list[float]:
    """Per grasp, how far (mm) its farther jaw contact lies from the true object's surface (object frame)."""
    tree = cKDTree(trimesh.sample.sample_surface(load_ycb_mesh(NAME), 100_000, seed=0)[0])
    return [float(tree.query(g.contacts_obj())[0].max() * 1e3) for g in grasps]


def test_each_fused_mesh_comes_with_grasps_planned_on_it(scenes):
    # The prior is twice as deep as the sugar box: grasps planned on it close on air. The fused mesh's grasps must
    # close on the true object's surface.
    planner = GraspPlanner(max_grasps=5)
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10,
                         grasp_planner=planner)
    prior = _prior()
    for k in (0, 2, 3, 4):
        due = models.integrate(_frame(scenes[k], 1, prior), now_s=float(k))
        assert len(due) == 1 and due[0].grasp_error == ""
    fused = due[0]
    assert fused.grasps_obj, "no grasp on the fused mesh"
    scene = scenes[4]
    prior_grasps = SceneMeshes([prior], [scene.objects[0].T_cam_obj]).plan(planner, 0, scene.support_plane_cam)
    fused_error, prior_error = _contact_error_mm(fused.grasps_obj), _contact_error_mm(prior_grasps)
    assert max(prior_error) > 20, prior_error  # the test can tell: the prior's grasps miss the true surface
    assert max(fused_error) < 8, (fused_error, prior_error)
    # The grasps are checked against the table: no jaw contact below it.
    plane_obj = scene.support_plane_cam @ scene.objects[0].T_cam_obj
    for grasp in fused.grasps_obj:
        assert (grasp.contacts_obj() @ plane_obj[:3] + plane_obj[3] > 0).all()


def test_without_a_planner_fused_meshes_come_without_grasps(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10)
    due = models.integrate(_frame(scenes[0], 1, _prior()), now_s=0.0)
    assert len(due) == 1 and due[0].grasps_obj is None


def test_a_fused_mesh_over_the_frames_display_budget_comes_with_its_decimated_coloured_copy(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10)
    prior = _prior()
    frame = _frame(scenes[0], 1, prior)
    (fused,) = models.integrate(frame, now_s=0.0)
    assert fused.display_mesh_obj is None  # none asked (display_max_triangles 0)
    budget = len(fused.mesh_obj.faces) // 3
    frame = replace(_frame(scenes[2], 1, prior), display_max_triangles=budget)
    (fused,) = models.integrate(frame, now_s=1.0)
    shown = fused.display_mesh_obj
    assert shown is not None and 0.8 * budget <= len(shown.faces) <= budget and shown.is_watertight
    # The same surface (every shown vertex within 2 mm of the fused mesh) and the fused mesh's own colours.
    surface = o3d.t.geometry.RaycastingScene()
    surface.add_triangles(o3d.core.Tensor(fused.mesh_obj.vertices, o3d.core.float32),
                          o3d.core.Tensor(fused.mesh_obj.faces, o3d.core.uint32))
    assert surface.compute_distance(o3d.core.Tensor(shown.vertices, o3d.core.float32)).numpy().max() < 0.002
    fused_rgba = {tuple(c) for c in np.asarray(fused.mesh_obj.visual.vertex_colors)}
    assert {tuple(c) for c in np.asarray(shown.visual.vertex_colors)} <= fused_rgba
    frame = replace(_frame(scenes[3], 1, prior), display_max_triangles=10 * len(fused.mesh_obj.faces))
    (fused,) = models.integrate(frame, now_s=2.0)
    assert fused.display_mesh_obj is None  # within the budget: the fused mesh itself is shown


def test_the_support_plane_is_estimated_only_for_frames_that_bring_a_new_view(scenes, monkeypatch):
    # The node hands over frames without a plane; a still camera's frames mostly bring no new view, and estimating the
    # plane was most of what such a frame cost the fusion process.
    from sam3d_ros.tracking import fused_models

    estimates = []
    real = fused_models.support_plane_around
    monkeypatch.setattr(fused_models, "support_plane_around", lambda *a: estimates.append(1) or real(*a))
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10)
    prior = _prior()
    unplaned = [replace(_frame(scene, 1, prior), support_plane_cam=None) for scene in scenes]
    assert len(models.integrate(unplaned[0], now_s=0.0)) == 1 and len(estimates) == 1
    for k in range(5):  # nearly the first view, again and again: nothing taken, nothing estimated
        assert models.integrate(unplaned[1 if k % 2 else 0], now_s=1.0 + k) == []
    assert len(estimates) == 1 and models.views_integrated == 1
    assert len(models.integrate(unplaned[2], now_s=9.0)) == 1 and len(estimates) == 2  # a new view: estimated


def test_a_meshs_collision_model_is_built_once_while_the_mesh_stays(scenes, monkeypatch):
    # Grasps of each fused mesh are planned among the frame's other objects: their collision models are kept while
    # their meshes stay, and the grasps are those planned with every model built anew.
    from sam3d_ros.geometry import grasps

    built = []
    real = grasps.collision_model
    monkeypatch.setattr(grasps, "collision_model", lambda mesh: built.append(mesh) or real(mesh))
    planner = GraspPlanner(max_grasps=3)
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10,
                         grasp_planner=planner)
    prior = _prior()
    # "b" stands beside "a" and is never seen well (an empty mask): its view is skipped every frame, so its mesh
    # stays its prior while "a" gets fused meshes.
    T_still = scenes[0].objects[0].T_cam_obj @ make_transform(np.eye(3), [0.0, 0.3, 0.0])

    def frame(k):
        base = _frame(scenes[k], 1, prior)
        hidden = replace(base.views[0], track_id="b", T_cam_obj=T_still, mask=np.zeros_like(base.views[0].mask))
        return replace(base, views=[base.views[0], hidden])

    assert [d.track_id for d in models.integrate(frame(0), now_s=0.0)] == ["a"]
    assert len(built) == 2  # "a"'s fused mesh and "b"'s prior
    for k in (2, 3):
        (fused,) = models.integrate(frame(k), now_s=float(k))  # "a" seen anew, "b" not: only "a"'s new mesh is built
        assert fused.track_id == "a" and fused.grasps_obj
        assert len(built) == 2 + (k - 1)
    fresh = grasps.SceneMeshes([models._models["a"].mesh_obj, models._models["b"].mesh_obj],
                               [scenes[3].objects[0].T_cam_obj, T_still])
    expected = fresh.plan(planner, 0, scenes[3].support_plane_cam)
    assert [g.T_obj_grasp.tolist() for g in fused.grasps_obj] == [g.T_obj_grasp.tolist() for g in expected]


def test_a_wrong_view_is_counted_not_fused(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000), min_interval_s=0.0, min_changed_voxels=10)
    prior = _prior()
    for k in (0, 2, 3):
        models.integrate(_frame(scenes[k], 1, prior), now_s=float(k))
    T_wrong = scenes[4].objects[0].T_cam_obj @ make_transform(np.eye(3), [0.06, 0.04, 0.0])
    assert models.integrate(_frame(scenes[4], 1, prior, T_wrong), now_s=9.0) == []
    assert models.views_skipped == 1 and "disagrees" in models.last_skip_reason


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def test_the_fusion_process_frees_the_meshes_every_frame_brings(scenes):
    # Every frame with a new mesh version carries its prior mesh; unpickled, each is cyclic garbage in the child. They used to pile up
    # between the garbage collector's rare full collections (the child grew by hundreds of MB in a minute).
    prior = trimesh.creation.icosphere(subdivisions=6, radius=0.05)  # 40962 vertices: about 3 MB pickled
    prior.apply_translation(load_ycb_mesh(NAME).bounds.mean(axis=0))
    process = FusionProcess(FusionConfig(voxel_budget=20_000), min_interval_s=1e9)
    try:
        frame = _frame(scenes[0], 1, prior)
        for _ in range(10):  # warm-up: imports, the model, its first view
            process.integrate(frame, 0.0, {"a"})
        before = _rss_mb(process._process.pid)
        for _ in range(80):  # the same view again: not fused, only received and answered
            process._sent_versions = {}  # the mesh goes through the pipe every time (as after every new version)
            process.integrate(frame, 0.0, {"a"})
        growth = _rss_mb(process._process.pid) - before
    finally:
        process.close()
    print(f"fusion process RSS growth over 80 frames with a 3 MB prior mesh each: {growth:+.1f} MB")
    assert growth < 40.0  # 80 frames of garbage would be about 240 MB


def test_the_fusion_process_is_sent_each_mesh_version_once_and_fuses_the_views_that_come_without_it(scenes):
    prior = _prior()
    process = FusionProcess(FusionConfig(voxel_budget=100_000), min_interval_s=1e9)
    try:
        sent = process._without_sent_meshes(_frame(scenes[0], 1, prior), {"a"})
        assert sent.views[0].prior_mesh_obj is prior
        assert process._without_sent_meshes(_frame(scenes[2], 1, prior), {"a"}).views[0].prior_mesh_obj is None
        assert process._without_sent_meshes(_frame(scenes[2], 2, prior), {"a"}).views[0].prior_mesh_obj is prior
        process._without_sent_meshes(_frame(scenes[2], 1, prior), set())  # "a" no longer tracked: forgotten
        assert process._without_sent_meshes(_frame(scenes[2], 2, prior), {"a"}).views[0].prior_mesh_obj is prior
        process._sent_versions = {}
        (fused,) = process.integrate(_frame(scenes[0], 1, prior), 0.0, {"a"})
        # The fused mesh comes with the tracker's model of it, sampled in the child as the node would sample it.
        expected = ObjectModel.from_mesh(fused.mesh_obj)
        assert fused.tracking_model.points_obj.tobytes() == expected.points_obj.tobytes()
        for scene in scenes[2:]:  # new views of version 1: their frames come without the mesh, and are fused
            process.integrate(_frame(scene, 1, prior), 0.0, {"a"})
        assert process.views_integrated == 1 + len(scenes[2:]), process.last_skip_reason
    finally:
        process.close()


def test_a_model_cannot_start_without_its_mesh_and_says_so(scenes):
    models = FusedModels(FusionConfig(voxel_budget=100_000))
    assert models.integrate(_frame(scenes[0], 1, None), now_s=0.0) == []
    assert models.views_skipped == 1 and "no mesh of version 1" in models.last_skip_reason


def test_a_mask_goes_to_the_fusion_process_as_its_bounding_box_and_comes_back_whole(scenes):
    from sam3d_ros.tracking.fused_models import CroppedMask

    mask = scenes[0].mask(1)
    cropped = CroppedMask.of(mask)
    assert cropped.crop.size < mask.size / 4 and np.array_equal(cropped.full(), mask)
    edge = np.zeros((6, 8), bool)
    edge[5, 0] = edge[0, 7] = True  # touching two image corners: the box is the whole image
    assert np.array_equal(CroppedMask.of(edge).full(), edge) and CroppedMask.of(edge).crop.shape == (6, 8)
    empty = CroppedMask.of(np.zeros((6, 8), bool))
    assert empty.full().shape == (6, 8) and not empty.full().any()


def test_the_fusion_process_fuses_as_fused_models_do_in_process(scenes):
    # Its views' masks travel cropped (CroppedMask); what the child fuses must be what FusedModels fuses here.
    prior, config = _prior(), FusionConfig(voxel_budget=20_000)
    models, process = FusedModels(config, min_interval_s=0.0), FusionProcess(config, min_interval_s=0.0)
    try:
        due = 0
        for views, k in enumerate((0, 2, 3, 4), start=1):
            here = models.integrate(_frame(scenes[k], 1, prior), now_s=float(k))
            there = process.integrate(_frame(scenes[k], 1, prior), float(k), {"a"})
            assert len(here) == len(there) and process.views_integrated == models.views_integrated == views
            for a, b in zip(here, there):
                assert np.array_equal(a.mesh_obj.vertices, b.mesh_obj.vertices) and np.array_equal(a.mesh_obj.faces, b.mesh_obj.faces)
                due += 1
        assert due >= 1
    finally:
        process.close()


def test_the_fusion_process_gives_way_to_tracking(scenes):
    # Each of its threads (Open3D's workers too) at SCHED_IDLE: it never takes a core a normal process wants.
    import os

    process = FusionProcess(FusionConfig(voxel_budget=20_000), min_interval_s=1e9)
    try:
        process.integrate(_frame(scenes[0], 1, _prior()), 0.0, {"a"})  # its worker threads exist now
        pid = process._process.pid
        policies = {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}
    finally:
        process.close()
    assert policies == {os.SCHED_IDLE}
    with pytest.raises(ValueError, match="fusion priority must be one of idle, low, got 'lowest'"):
        FusionProcess(priority="lowest")
    low = FusionProcess(FusionConfig(voxel_budget=20_000), priority="low")  # nice 10, the normal policy
    try:
        low.integrate(_frame(scenes[0], 1, _prior()), 0.0, {"a"})
        assert os.sched_getscheduler(low._process.pid) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, low._process.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)
    finally:
        low.close()
