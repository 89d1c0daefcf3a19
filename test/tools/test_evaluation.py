"""The evaluation behind `sam3d-ros eval`: metrics on constructed cases, the baseline, a short run and its report."""
import math
import re

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from sam3d_ros.reconstruction.backends.base import ReconstructionBackend
from sam3d_ros.reconstruction.backends.base import ReconstructionError
from sam3d_ros.tools import evaluation, object_split
from sam3d_ros.tools.evaluation import (
    ObjectScore,
    baseline_reconstruction,
    chamfer_and_fscore,
    format_report,
    oriented_box_iou,
    oriented_box_iou_monte_carlo,
    run_evaluation,
    summarize,
    surface_samples,
    true_box,
    true_centre_in_axes,
)
from sam3d_ros.geometry.transforms import invert_transform, make_transform, transform_points
from sam3d_ros.geometry.types import RGBDFrame
from sam3d_ros.tools.synthetic import NoiseModel, default_intrinsics, random_tabletop_scene


def _pose(rotvec=(0.0, 0.0, 0.0), t=(0.0, 0.0, 0.0)) -> np.ndarray:
    return make_transform(Rotation.from_rotvec(rotvec).as_matrix(), t)


# ----------------------------------------------------------------------------------------------------------------
# Oriented-box IoU


def test_box_iou_constructed_cases():
    size = np.array([0.2, 0.1, 0.05])
    T = _pose((0.3, -0.2, 0.5), (0.1, 0.2, 0.8))
    assert oriented_box_iou(T, size, T, size) == pytest.approx(1.0, abs=1e-9)
    # Shifted by half its length along its own x: intersection 1/2, union 3/2.
    shifted = T @ _pose(t=(0.1, 0.0, 0.0))
    assert oriented_box_iou(T, size, shifted, size) == pytest.approx(1 / 3, abs=1e-9)
    # Disjoint, and touching along a face: no volume in common.
    assert oriented_box_iou(T, size, T @ _pose(t=(0.5, 0.0, 0.0)), size) == 0.0
    assert oriented_box_iou(T, size, T @ _pose(t=(0.2, 0.0, 0.0)), size) == pytest.approx(0.0, abs=1e-9)
    # A box with a square cross-section turned by 90 degrees about its long axis is the same box.
    square = np.array([0.1, 0.1, 0.3])
    assert oriented_box_iou(T, square, T @ _pose((0.0, 0.0, np.pi / 2)), square) == pytest.approx(1.0, abs=1e-9)
    # A cube turned by 45 degrees: the intersection is a regular octagon prism, IoU = 1/sqrt(2).
    cube = np.array([0.1, 0.1, 0.1])
    assert oriented_box_iou(T, cube, T @ _pose((0.0, 0.0, np.pi / 4)), cube) == pytest.approx(2**-0.5, abs=1e-9)
    # A box inside another: IoU is the volume ratio, in either order.
    assert oriented_box_iou(T, size, T, size / 2) == pytest.approx(1 / 8, abs=1e-9)
    assert oriented_box_iou(T, size / 2, T, size) == pytest.approx(1 / 8, abs=1e-9)


def test_exact_box_iou_agrees_with_monte_carlo():
    rng = np.random.default_rng(4)
    for _ in range(12):
        size_a, size_b = rng.uniform(0.03, 0.2, 3), rng.uniform(0.03, 0.2, 3)
        T_a = _pose(rng.normal(size=3), rng.uniform(-0.02, 0.02, 3))
        T_b = _pose(rng.normal(size=3), rng.uniform(-0.04, 0.04, 3))
        exact = oriented_box_iou(T_a, size_a, T_b, size_b)
        estimate = oriented_box_iou_monte_carlo(T_a, size_a, T_b, size_b, n_samples=40000, seed=1)
        assert exact == pytest.approx(estimate, abs=0.02)
    # The Monte-Carlo estimate itself on the half-shift case.
    size = np.array([0.2, 0.1, 0.05])
    assert oriented_box_iou_monte_carlo(np.eye(4), size, _pose(t=(0.1, 0, 0)), size) == pytest.approx(1 / 3, abs=0.02)


def test_box_iou_rejects_bad_boxes():
    with pytest.raises(ValueError):
        oriented_box_iou(np.eye(4), [0.1, 0.1, np.nan], np.eye(4), [0.1, 0.1, 0.1])
    with pytest.raises(ValueError):
        oriented_box_iou(np.eye(3), [0.1, 0.1, 0.1], np.eye(4), [0.1, 0.1, 0.1])
    assert oriented_box_iou(np.eye(4), [0.1, 0.1, 0.0], np.eye(4), [0.1, 0.1, 0.1]) == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Ground truth, samples, Chamfer and F-score


@pytest.fixture(scope="module")
def small_scene():
    """A small noisy rendered scene with two objects."""
    return random_tabletop_scene(
        7, n_objects=2, distance_range=(0.5, 0.7), intrinsics=default_intrinsics(320, 240), noise=NoiseModel()
    )


def test_true_box_holds_the_true_mesh(small_scene):
    for obj in small_scene.objects:
        T_cam_box, size = true_box(obj)
        np.testing.assert_allclose(T_cam_box[:3, 3], obj.center_cam)
        np.testing.assert_allclose(T_cam_box[:3, :3], obj.T_cam_obj[:3, :3])
        vertices_cam = transform_points(obj.T_cam_obj, obj.mesh_model.vertices)
        in_box = transform_points(invert_transform(T_cam_box), vertices_cam)
        np.testing.assert_allclose(in_box.min(axis=0), -size / 2, atol=1e-9)  # tight on every side
        np.testing.assert_allclose(in_box.max(axis=0), size / 2, atol=1e-9)


def _exact_reconstruction_along(obj, R_model_axes: np.ndarray):
    """The true mesh itself, expressed along other axes and centred on its box along them, as a backend would."""
    vertices_axes = obj.mesh_model.vertices @ R_model_axes  # rows: R_model_axes.T @ v
    centre_axes = (vertices_axes.min(axis=0) + vertices_axes.max(axis=0)) / 2
    mesh_obj = trimesh.Trimesh(vertices_axes - centre_axes, obj.mesh_model.faces, process=False)
    T_cam_obj = obj.T_cam_obj @ make_transform(R_model_axes, R_model_axes @ centre_axes)
    return T_cam_obj, mesh_obj


def test_the_centre_error_compares_boxes_along_the_same_axes():
    """An exact drill along axes turned 40 degrees about the vertical scores no centre error; along the model's axes
    its box centre lies over a centimetre from the model-axes box's; a real 2 cm shift scores 2 cm either way."""
    scene = random_tabletop_scene(3, n_objects=1, names=["035_power_drill"], intrinsics=default_intrinsics(160, 120))
    obj = scene.objects[0]
    R_model_axes = Rotation.from_rotvec([0.0, 0.0, np.radians(40.0)]).as_matrix()  # YCB models stand on z
    T_cam_obj, mesh_obj = _exact_reconstruction_along(obj, R_model_axes)
    true_points = surface_samples(obj.mesh_model, obj.T_cam_obj)
    score = evaluation._score(obj, 0, "exact", T_cam_obj, mesh_obj.extents, mesh_obj, true_points)
    assert score.centre_error_m < 1e-6
    assert score.centre_error_model_axes_m > 0.01  # what the earlier metric charged for the choice of axes alone
    assert score.fscore > 0.95
    np.testing.assert_allclose(true_centre_in_axes(obj, obj.T_cam_obj), obj.center_cam, atol=1e-9)  # model axes
    shifted = T_cam_obj.copy()
    shifted[:3, 3] += [0.02, 0.0, 0.0]
    moved = evaluation._score(obj, 0, "exact", shifted, mesh_obj.extents, mesh_obj, true_points)
    assert abs(moved.centre_error_m - 0.02) < 1e-6


def test_surface_samples_lie_on_the_posed_surface_and_are_seeded():
    box = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    T = _pose((0.1, 0.2, 0.3), (0.0, 0.1, 0.9))
    points = surface_samples(box, T, n=3000, seed=3)
    assert points.shape == (3000, 3)
    local = np.abs(transform_points(invert_transform(T), points))
    half = np.array([0.1, 0.05, 0.025])
    assert np.all(local <= half + 1e-9)
    np.testing.assert_allclose(np.max(local / half, axis=1), 1.0, atol=1e-9)  # on a face, not inside
    np.testing.assert_array_equal(points, surface_samples(box, T, n=3000, seed=3))
    assert not np.array_equal(points, surface_samples(box, T, n=3000, seed=4))


def test_chamfer_and_fscore_exact_values():
    a = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.0, 0.001], [1.0, 0.0, 0.01]])
    chamfer, fscore = chamfer_and_fscore(a, b, threshold_m=0.005)
    assert chamfer == pytest.approx(0.0055)
    assert fscore == pytest.approx(0.5)  # P = R = 1/2
    # Asymmetric: one predicted point, three true ones. P = 1, R = 2/3, F = 0.8.
    pred = np.array([[0.0, 0.0, 0.0]])
    true = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.003], [0.0, 0.0, 0.1]])
    chamfer, fscore = chamfer_and_fscore(pred, true, threshold_m=0.005)
    assert chamfer == pytest.approx((0.0 + 0.103 / 3) / 2)
    assert fscore == pytest.approx(0.8)
    assert chamfer_and_fscore(true, true) == (0.0, 1.0)
    assert chamfer_and_fscore(pred, pred + 1.0)[1] == 0.0
    with pytest.raises(ValueError):
        chamfer_and_fscore(np.zeros((0, 3)), true)


# ----------------------------------------------------------------------------------------------------------------
# Baseline


def test_baseline_on_a_rendered_scene(small_scene):
    frame = RGBDFrame(small_scene.rgb, small_scene.depth_m, small_scene.intrinsics)
    for obj in small_scene.objects:
        T_cam_obj, size_obj, mesh_obj = baseline_reconstruction(frame, small_scene.mask(obj.object_id))
        error = np.linalg.norm(T_cam_obj[:3, 3] - obj.center_cam)
        assert np.isfinite(error) and error < 0.05, (obj.name, error)
        R = T_cam_obj[:3, :3]
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)
        assert mesh_obj.is_watertight and mesh_obj.volume > 0
        np.testing.assert_allclose(mesh_obj.bounds.mean(axis=0), 0.0, atol=1e-6)  # origin at the box centre
        np.testing.assert_allclose(np.sort(mesh_obj.extents), np.sort(size_obj), atol=1e-6)
        # The hull only covers what is visible: never larger than the true box's diagonal.
        assert np.linalg.norm(size_obj) < np.linalg.norm(obj.size_model) + 0.03
        # Without outlier removal it still runs on the same points.
        _, size_raw, mesh_raw = baseline_reconstruction(frame, small_scene.mask(obj.object_id), remove_outliers=False)
        assert mesh_raw.is_watertight and np.prod(size_raw) >= np.prod(size_obj) * 0.99


def test_baseline_needs_points_in_the_mask(small_scene):
    frame = RGBDFrame(small_scene.rgb, small_scene.depth_m, small_scene.intrinsics)
    mask = np.zeros(small_scene.labels.shape, bool)
    mask[0, :3] = True
    with pytest.raises(ReconstructionError):
        baseline_reconstruction(frame, mask)


# ----------------------------------------------------------------------------------------------------------------
# Running, summarising, reporting


@pytest.fixture(scope="module")
def short_run():
    lines: list[str] = []
    scores = run_evaluation(n_scenes=2, seed=0, objects_range=(2, 3), progress=lines.append)
    return scores, lines


def test_short_run_scores_both_methods_for_every_object(short_run):
    scores, lines = short_run
    assert len(lines) == 2 and lines[0].startswith("scene 1/2")
    by_method: dict[str, set] = {"depth": set(), "baseline": set()}
    for s in scores:
        by_method[s.method].add((s.seed, s.object_id, s.name))
        assert s.ok and s.error == "", s
        for value in (s.centre_error_m, s.iou, s.chamfer_m, s.fscore, s.distance_m, s.visible_fraction):
            assert np.isfinite(value), s
        assert 0 <= s.iou <= 1 and 0 <= s.fscore <= 1 and s.centre_error_m < 0.1
    assert by_method["depth"] == by_method["baseline"]
    assert {seed for seed, _, _ in by_method["depth"]} == {0, 1}
    for seed in (0, 1):
        ids = sorted(i for sd, i, _ in by_method["depth"] if sd == seed)
        assert ids == list(range(1, len(ids) + 1)) and 2 <= len(ids) <= 3  # every object of the scene
    assert all(s.watertight for s in scores)


def test_summary_and_report_of_a_short_run(short_run):
    scores, _ = short_run
    summary = summarize(scores)
    assert summary["method"] == "depth"
    assert set(summary["methods"]) == {"depth", "baseline"}
    n = len(scores) // 2
    for stats in summary["methods"].values():
        assert stats["n"] == n and stats["failures"] == 0
        assert stats["watertight_fraction"] == 1.0
        assert 0 < stats["centre_median_cm"] <= stats["centre_p90_cm"] < 10
        assert 0 < stats["chamfer_median_mm"] < 50 and 0 < stats["fscore_median"] <= 1
    assert len(summary["targets"]) == 7
    report = format_report(scores)
    for name, value, threshold, passed in summary["targets"]:
        assert f"{'PASS' if passed else 'FAIL'}  {name} {threshold:g}: {value:.3g}" in report
    for heading in ("depth by object", "depth by distance z", "depth by visible fraction", "failures: 0"):
        assert heading in report
    for method in ("depth", "baseline"):  # one statistics row per method
        assert len(re.findall(rf"^{method} +{n} +0 ", report, flags=re.M)) == 1


def _score(method: str, k: int, centre_cm: float, ok: bool = True, name: str = "025_mug") -> ObjectScore:
    return ObjectScore(
        seed=k, name=name, object_id=1, distance_m=0.7, visible_fraction=1.0, method=method,
        centre_error_m=centre_cm / 100 if ok else math.nan, iou=0.8 if ok else math.nan,
        chamfer_m=0.003 if ok else math.nan, fscore=0.8 if ok else math.nan, watertight=ok, ok=ok,
        error="" if ok else "boom",
    )  # fmt: skip


def test_summary_targets_and_failures_on_constructed_scores():
    good = [_score("depth", k, 0.5) for k in range(10)]
    worse_baseline = [
        ObjectScore(**{**vars(_score("baseline", k, 1.5)), "iou": 0.5, "chamfer_m": 0.008, "fscore": 0.5})
        for k in range(10)
    ]
    summary = summarize(good + worse_baseline)
    assert all(passed for *_, passed in summary["targets"]), summary["targets"]
    assert summary["methods"]["depth"]["centre_median_cm"] == pytest.approx(0.5)
    # The baseline equal on the centre error: "better on every metric" fails, the rest still pass.
    equal_centre = [ObjectScore(**{**vars(s), "centre_error_m": 0.005}) for s in worse_baseline]
    targets = {name: passed for name, _, _, passed in summarize(good + equal_centre)["targets"]}
    assert not targets["metrics better than the baseline >="] and targets["centre error median (cm) <="]
    assert "not better than the baseline on: centre error median" in format_report(good + equal_centre)
    # Two failures of ten: counted with the worst values, never dropped.
    failed = good[:8] + [_score("depth", 8, 0.5, ok=False), _score("depth", 9, 0.5, ok=False)]
    summary = summarize(failed + worse_baseline)
    stats = summary["methods"]["depth"]
    assert stats["failures"] == 2 and stats["centre_p90_cm"] == math.inf and stats["centre_median_cm"] == 0.5
    assert stats["watertight_fraction"] == pytest.approx(0.8)
    targets = {name: passed for name, _, _, passed in summary["targets"]}
    assert not targets["centre error p90 (cm) <="] and not targets["watertight meshes (fraction) >="]
    report = format_report(failed + worse_baseline)
    assert "failures: 2" in report and "depth: seed 9 object 1 025_mug: boom" in report


class _FailingBackend(ReconstructionBackend):
    name = "failing"

    def reconstruct(self, frame, mask, scene, object_id="", label="", score=1.0):
        raise ReconstructionError("nothing to see")


def test_a_failing_backend_is_reported_not_dropped(monkeypatch):
    monkeypatch.setattr(evaluation, "create_backend", lambda name: _FailingBackend())
    scores = run_evaluation(n_scenes=1, seed=3, objects_range=(2, 2))
    failing = [s for s in scores if s.method == "failing"]
    baseline = [s for s in scores if s.method == "baseline"]
    assert len(failing) == len(baseline) == 2
    assert all(not s.ok and s.error == "nothing to see" and math.isnan(s.centre_error_m) for s in failing)
    assert all(s.ok for s in baseline)
    report = format_report(scores)
    assert "FAIL  centre error median (cm) <=" in report and "failures: 2" in report


def test_border_cut_runs_score_every_object_on_its_own_cut_view(monkeypatch):
    """`border_cut`: each object reconstructed from a crop whose border cuts it (its mask then touches the image edge),
    scored against its whole true mesh; the same objects as the whole-frame run."""
    seen: list[bool] = []
    original = evaluation.PerceptionPipeline.process

    def process(self, frame, prompts):
        seen.append(any(p.mask[[0, -1]].any() or p.mask[:, [0, -1]].any() for p in prompts))
        return original(self, frame, prompts)

    monkeypatch.setattr(evaluation.PerceptionPipeline, "process", process)
    cut = run_evaluation(n_scenes=1, seed=3, objects_range=(2, 2), border_cut=0.3)
    cut_frames = len(seen)
    assert len(cut) == 4 and cut_frames == 2 and all(seen) and all(s.ok for s in cut)
    whole = run_evaluation(n_scenes=1, seed=3, objects_range=(2, 2))
    assert len(seen) == cut_frames + 1 and not seen[-1]
    assert [(s.method, s.object_id) for s in cut] == [(s.method, s.object_id) for s in whole]
    with pytest.raises(ValueError, match="border_cut"):
        run_evaluation(n_scenes=1, border_cut=1.0)


def test_box_mask_evaluation_scores_every_object():
    from sam3d_ros.tools.evaluation import evaluate_box_masks, format_box_mask_report

    ious = evaluate_box_masks(["depth"], n_scenes=1, seed=3)
    assert len(ious["depth"]) == 4 and min(ious["depth"]) > 0.85
    assert format_box_mask_report(ious).splitlines()[1].startswith("depth         4")


def test_split_evaluation_reports_tuning_held_out_and_regression_apart():
    scores = evaluation.run_split_evaluation(n_scenes=1, seed=5)
    parts = {s.part for s in scores}
    assert parts == {object_split.TUNING, object_split.HELD_OUT, evaluation.REGRESSION}
    for s in scores:
        if s.part != evaluation.REGRESSION:  # the split's objects, never the other set's
            assert object_split.SPLIT[s.name] == s.part and s.category == object_split.category_of(s.name)
    held = [s for s in scores if s.part == object_split.HELD_OUT]
    assert {s.method for s in held} == {"depth", "baseline"} and all(0.3 < s.distance_m < 2.0 for s in held)
    report = evaluation.format_split_report(scores)
    assert "targets, stated on this set (depth, held-out):" in report
    assert "targets (informative only here) (depth, tuning):" in report
    assert "by object (tuning)" in report and "by object (held-out)" not in report  # no held-out rows per object
    assert "== regression:" in report
    for category in {s.category for s in held}:
        assert re.search(rf"^{re.escape(category)} baseline ", report, flags=re.M)
    with pytest.raises(ValueError, match="unknown parts"):
        evaluation.run_split_evaluation(n_scenes=1, parts=("tuning", "test"))


def test_the_stretched_part_scores_stretched_tuning_objects_per_ycb_object():
    scores = evaluation.run_split_evaluation(n_scenes=1, seed=2, parts=(object_split.STRETCHED,))
    assert scores and {s.part for s in scores} == {object_split.STRETCHED}
    stretched = set(object_split.stretched_objects())
    for s in scores:
        assert s.name in stretched and "@" in s.name and s.category == object_split.category_of(s.name)
    report = evaluation.format_split_report(scores)
    assert "== stretched:" in report and "targets (informative only here) (depth, stretched):" in report
    for name in {s.name for s in scores}:  # per object rows by the YCB object stretched
        assert re.search(rf"^{re.escape(name.split('@')[0])} ", report, flags=re.M)
