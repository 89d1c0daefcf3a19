"""Pose tracking of reconstructed objects through rendered moving sequences (reconstruct once, track always)."""
from __future__ import annotations

import cv2
import numpy as np
import open3d as o3d
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from sam3d_ros.reconstruction.backends.depth import DepthBackend
from sam3d_ros.tracking.pose_tracking import (
    ObjectModel,
    TrackResult,
    centroid_motion_prior,
    observed_tracking_points,
    track_pose,
    upright_motion,
)
from sam3d_ros.geometry.transforms import invert_transform, make_transform, rotation_angle_between, transform_points
from sam3d_ros.geometry.types import RGBDFrame, SceneContext
from sam3d_ros.tools.synthetic import SyntheticScene, load_ycb_mesh, moving_object_sequence

NAMES = ("003_cracker_box", "006_mustard_bottle")
N_FRAMES = 21  # the reconstruction frame and 20 tracked frames (2/3 s at 30 Hz)
MAX_ERROR_M = 0.01
MAX_ERROR_DEG = 2.0


@pytest.fixture(scope="module")
def sequence() -> list[SyntheticScene]:
    """Cracker box and mustard bottle sliding and turning, 0.5-0.7 m camera, evaluation depth noise."""
    return moving_object_sequence(NAMES, N_FRAMES, seed=0, distance_range=(0.5, 0.7))


@pytest.fixture(scope="module")
def reconstructions(sequence):
    """{object id: (reconstruction from frame 0 with the depth backend, its tracking model)}."""
    first = sequence[0]
    frame = RGBDFrame(first.rgb, first.depth_m, first.intrinsics)
    backend = DepthBackend()
    result = {}
    for truth in first.objects:
        scene_context = SceneContext(support_plane_cam=first.support_plane_cam)
        reconstruction = backend.reconstruct(frame, first.mask(truth.object_id), scene_context, str(truth.object_id))
        result[truth.object_id] = (reconstruction, ObjectModel.from_mesh(reconstruction.mesh_obj))
    return result


def _track(
    sequence: list[SyntheticScene],
    object_id: int,
    model: ObjectModel,
    T_cam_obj_start: np.ndarray,
    *,
    upright: bool = False,
    spill_px: int = 0,
    outlier_fraction: float = 0.0,
) -> list[TrackResult]:
    """Track one object from frame 0 (its reconstruction frame) on, as the node does: observed points of the
    mask, centroid prior, track_pose from the previous pose. Optionally the masks spill `spill_px` onto the table
    and background, and `outlier_fraction` extra random points within 10 cm of the object are added."""
    rng = np.random.default_rng(7)
    results: list[TrackResult] = []
    T_cam_obj, centroid_prev = T_cam_obj_start, None
    for scene in sequence:
        mask = scene.mask(object_id)
        if spill_px:
            kernel = np.ones((2 * spill_px + 1, 2 * spill_px + 1), np.uint8)
            mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & np.isin(scene.labels, [0, object_id])
        points_cam = observed_tracking_points(scene.depth_m, scene.intrinsics, mask, max_points=800)
        if outlier_fraction:
            n = int(outlier_fraction * len(points_cam))
            points_cam = np.vstack([points_cam, points_cam.mean(axis=0) + rng.uniform(-0.1, 0.1, (n, 3))])
        plane = scene.support_plane_cam if upright else None
        if centroid_prev is not None:
            T_cam_obj = centroid_motion_prior(T_cam_obj, centroid_prev, points_cam, support_plane_cam=plane)
        result = track_pose(model, points_cam, T_cam_obj, support_plane_cam=plane)
        results.append(result)
        T_cam_obj, centroid_prev = result.T_cam_obj, points_cam.mean(axis=0)
    return results


def _motion_errors(
    sequence: list[SyntheticScene], object_id: int, results: list[TrackResult]
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (distance in metres between where the tracked and the true motion since frame 0 take the
    object's true frame-0 centre, angle in degrees between the two motions' rotations)."""
    truth0 = sequence[0].objects[object_id - 1]
    T_est0 = results[0].T_cam_obj
    distances, angles = [], []
    for scene, result in zip(sequence, results):
        truth = scene.objects[object_id - 1]
        motion_est = result.T_cam_obj @ invert_transform(T_est0)  # camera frame at 0 -> camera frame at t
        motion_true = truth.T_cam_obj @ invert_transform(truth0.T_cam_obj)
        moved_est, moved_true = (transform_points(M, truth0.center_cam)[0] for M in (motion_est, motion_true))
        distances.append(np.linalg.norm(moved_est - moved_true))
        angles.append(np.degrees(rotation_angle_between(motion_est[:3, :3], motion_true[:3, :3])))
    return np.array(distances), np.array(angles)


def test_sequence_moves_objects_on_the_table_with_stable_ids(sequence):
    assert len(sequence) == N_FRAMES
    camera = sequence[0].T_cam_world
    total_turn = {name: 0.0 for name in NAMES}
    total_slide = {name: 0.0 for name in NAMES}
    for previous, scene in zip(sequence, sequence[1:]):
        np.testing.assert_array_equal(scene.T_cam_world, camera)  # fixed camera
        assert [(o.object_id, o.name) for o in scene.objects] == [(1, NAMES[0]), (2, NAMES[1])]
        for before, now in zip(previous.objects, scene.objects):
            assert (scene.labels == now.object_id).sum() >= 400
            slide = np.linalg.norm(now.center_cam - before.center_cam)
            turn = rotation_angle_between(before.T_cam_obj[:3, :3], now.T_cam_obj[:3, :3])
            assert slide <= 0.01 + 1e-9 and np.degrees(turn) <= 2.0 + 1e-9
            # Upright on the table: the model z axis stays along the table normal, the base stays on the table.
            np.testing.assert_allclose(now.T_cam_obj[:3, 2], scene.support_plane_cam[:3], atol=1e-9)
            base_cam = transform_points(now.T_cam_obj, [0.0, 0.0, now.mesh_model.bounds[0, 2]])[0]
            assert abs(scene.support_plane_cam[:3] @ base_cam + scene.support_plane_cam[3]) < 1e-9
            total_turn[now.name] += np.degrees(turn)
            total_slide[now.name] += slide
    assert all(total_slide[name] > 0.03 and total_turn[name] > 5.0 for name in NAMES), (total_slide, total_turn)
    assert not np.array_equal(sequence[0].depth_m, sequence[1].depth_m)


def test_sequence_is_reproducible_and_exact_without_noise():
    first, again = (moving_object_sequence(["025_mug"], 3, seed=4, noise=None) for _ in range(2))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.depth_m, b.depth_m)
        np.testing.assert_array_equal(a.objects[0].T_cam_obj, b.objects[0].T_cam_obj)
    # Exact depth: the mug's pixels lie on its posed mesh.
    scene = first[-1]
    truth = scene.objects[0]
    points_cam, _ = scene.intrinsics.backproject(scene.depth_m, scene.mask(1))
    points_obj = transform_points(invert_transform(truth.T_cam_obj), points_cam)
    surface = o3d.t.geometry.RaycastingScene()
    surface.add_triangles(o3d.core.Tensor(truth.mesh_model.vertices.astype(np.float32)),
                          o3d.core.Tensor(truth.mesh_model.faces.astype(np.uint32)))
    distance = surface.compute_distance(o3d.core.Tensor(points_obj.astype(np.float32))).numpy()
    assert len(points_obj) > 400 and distance.max() < 1e-4
    with pytest.raises(ValueError, match="unknown YCB object"):
        moving_object_sequence(["999_nothing"], 2, seed=0)


@pytest.mark.parametrize("upright", [False, True], ids=["6dof", "upright-on-plane"])
@pytest.mark.parametrize("object_id", [1, 2], ids=list(NAMES))
def test_tracks_reconstructed_objects_within_1cm_and_2deg(sequence, reconstructions, object_id, upright):
    reconstruction, model = reconstructions[object_id]
    results = _track(sequence, object_id, model, reconstruction.T_cam_obj, upright=upright)
    assert all(r.ok and r.fitness > 0.8 and r.n_points == 800 for r in results)
    # On its own frame the tracked pose stays near the reconstructed one (the model fits its own data).
    assert results[0].step_m < 0.015 and np.degrees(results[0].step_rad) < 10.0
    distances, angles = _motion_errors(sequence, object_id, results)
    assert distances.max() <= MAX_ERROR_M and angles.max() <= MAX_ERROR_DEG, (
        f"worst {distances.max() * 1000:.1f} mm, {angles.max():.2f} deg"
    )
    R_0 = sequence[0].objects[object_id - 1].T_cam_obj[:3, :3]
    turns = [rotation_angle_between(R_0, scene.objects[object_id - 1].T_cam_obj[:3, :3]) for scene in sequence]
    assert np.degrees(max(turns)) > 5.0  # it did have to follow a turn


@pytest.mark.parametrize("object_id", [1, 2], ids=list(NAMES))
def test_tracks_exact_meshes_within_1cm_and_2deg(sequence, object_id):
    """With the exact YCB mesh (as a better reconstruction would give), from the true first pose."""
    truth0 = sequence[0].objects[object_id - 1]
    results = _track(sequence, object_id, ObjectModel.from_mesh(load_ycb_mesh(truth0.name)), truth0.T_cam_obj)
    distances, angles = _motion_errors(sequence, object_id, results)
    assert distances.max() <= MAX_ERROR_M and angles.max() <= MAX_ERROR_DEG
    # Absolute poses stay on the truth too (the exact mesh has the true object frame).
    for scene, result in zip(sequence, results):
        truth = scene.objects[object_id - 1]
        assert np.linalg.norm(result.T_cam_obj[:3, 3] - truth.T_cam_obj[:3, 3]) <= MAX_ERROR_M
        assert np.degrees(rotation_angle_between(result.T_cam_obj[:3, :3], truth.T_cam_obj[:3, :3])) <= MAX_ERROR_DEG


def test_tracking_the_same_points_again_gives_bit_identical_poses(sequence, reconstructions):
    """open3d's ICP sums its correspondences on several threads in a varying order; on one thread the same points
    and start give the same pose, bit for bit (before: poses differed by ~1e-16 from call to call, and such
    differences later flip a threshold). All of each mask's points (up to 4000), so that a second thread has work to
    take even on a busy machine."""
    for object_id, (reconstruction, model) in reconstructions.items():
        for scene in sequence[::4]:
            points_cam = observed_tracking_points(scene.depth_m, scene.intrinsics, scene.mask(object_id), max_points=4000)
            first = track_pose(model, points_cam, reconstruction.T_cam_obj).T_cam_obj
            for _ in range(3):
                again = track_pose(model, points_cam, reconstruction.T_cam_obj).T_cam_obj
                assert again.tobytes() == first.tobytes(), f"object {object_id}: {np.abs(again - first).max():.1e} apart"


def test_a_model_pickled_to_another_process_tracks_bit_identically(sequence, reconstructions):
    """The fusion process samples each fused mesh's model and sends it to the node: it arrives as its samples, with
    its ICP cloud and KD-tree built again, and tracks exactly as the model sampled in the node would."""
    import pickle

    reconstruction, model = reconstructions[1]
    received = pickle.loads(pickle.dumps(model))
    assert received.points_obj.tobytes() == model.points_obj.tobytes()
    assert np.asarray(received.cloud_obj.normals).tobytes() == model.normals_obj.tobytes()
    assert received.tree_obj.query(model.points_obj[:5])[1].tolist() == list(range(5))
    for scene in sequence[::5]:
        points_cam = observed_tracking_points(scene.depth_m, scene.intrinsics, scene.mask(1))
        assert track_pose(received, points_cam, reconstruction.T_cam_obj).T_cam_obj.tobytes() == \
            track_pose(model, points_cam, reconstruction.T_cam_obj).T_cam_obj.tobytes()


def test_masks_spilling_onto_the_table_and_outliers(sequence, reconstructions):
    """Masks dilated by 5 px onto table and background, plus 20 % random points within 10 cm of the object."""
    reconstruction, model = reconstructions[1]
    results = _track(sequence, 1, model, reconstruction.T_cam_obj, spill_px=5, outlier_fraction=0.2)
    assert all(r.ok for r in results)
    assert max(r.fitness for r in results) < 0.9  # the outliers are not explained away
    distances, angles = _motion_errors(sequence, 1, results)
    assert distances.max() <= MAX_ERROR_M and angles.max() <= MAX_ERROR_DEG


def test_support_plane_drops_mask_spill(sequence):
    scene = sequence[0]
    mask = scene.mask(1)
    spilled = cv2.dilate(mask.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    spilled &= np.isin(scene.labels, [0, 1])
    plane = scene.support_plane_cam
    raw = observed_tracking_points(scene.depth_m, scene.intrinsics, spilled, max_points=100_000)
    kept = observed_tracking_points(scene.depth_m, scene.intrinsics, spilled, max_points=100_000,
                                    support_plane_cam=plane)
    heights_raw, heights_kept = raw @ plane[:3] + plane[3], kept @ plane[:3] + plane[3]
    assert (heights_raw < 0.006).sum() > 200  # the spill is there
    assert heights_kept.min() > 0.006 and len(kept) > 0.95 * (heights_raw > 0.006).sum()
    # Subsampling: evenly without a generator, a reproducible random subset with one.
    even = observed_tracking_points(scene.depth_m, scene.intrinsics, mask, max_points=500)
    assert even.shape == (500, 3)
    a, b = (observed_tracking_points(scene.depth_m, scene.intrinsics, mask, max_points=500, rng=3) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, even)


def test_too_few_points_is_not_ok_and_keeps_the_pose(sequence, reconstructions):
    reconstruction, model = reconstructions[1]
    T_init = reconstruction.T_cam_obj
    few = transform_points(T_init, model.points_obj[:10])
    nan = np.full((100, 3), np.nan)
    for points_cam, n_finite in ((np.zeros((0, 3)), 0), (few, 10), (nan, 0), (np.vstack([few, nan]), 10)):
        result = track_pose(model, points_cam, T_init)
        assert not result.ok and result.fitness == 0.0 and result.n_points == n_finite
        np.testing.assert_array_equal(result.T_cam_obj, T_init)
    scene = sequence[0]
    no_depth = np.full_like(scene.depth_m, np.nan)
    assert observed_tracking_points(no_depth, scene.intrinsics, scene.mask(1)).shape == (0, 3)
    assert observed_tracking_points(scene.depth_m, scene.intrinsics, np.zeros_like(scene.mask(1))).shape == (0, 3)
    with pytest.raises(ValueError, match="finite 4x4"):
        track_pose(model, few, np.full((4, 4), np.nan))


def test_wrong_model_or_far_init_gives_low_fitness(sequence, reconstructions):
    scene = sequence[10]
    reconstruction, model = reconstructions[1]
    _, mustard_model = reconstructions[2]
    tracked = _track(sequence[:11], 1, model, reconstruction.T_cam_obj)[-1]
    points_cam = observed_tracking_points(scene.depth_m, scene.intrinsics, scene.mask(1), max_points=800)
    right = track_pose(model, points_cam, tracked.T_cam_obj)
    assert right.ok and right.fitness > 0.95 and right.rmse_m < 0.006
    # The mustard bottle's model cannot explain the cracker box's points from the box's pose.
    wrong = track_pose(mustard_model, points_cam, tracked.T_cam_obj)
    assert not wrong.ok and wrong.fitness < right.fitness - 0.3
    # A start 30 cm off (along the table) finds nothing to pair with.
    offset = np.cross(scene.support_plane_cam[:3], [1.0, 0.0, 0.0])
    far_init = make_transform(tracked.T_cam_obj[:3, :3],
                              tracked.T_cam_obj[:3, 3] + 0.3 * offset / np.linalg.norm(offset))
    far = track_pose(model, points_cam, far_init)
    assert not far.ok and far.fitness < 0.1


def test_object_model_samples_with_outward_normals():
    box = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    model = ObjectModel.from_mesh(box, n_points=600)
    assert 400 <= len(model.points_obj) <= 600
    np.testing.assert_allclose(np.abs(model.points_obj).max(axis=0), [0.1, 0.05, 0.025], atol=1e-9)
    assert (np.einsum("ij,ij->i", model.normals_obj, model.points_obj) > 0).all()  # outward on a convex solid
    np.testing.assert_array_equal(np.asarray(model.cloud_obj.points), model.points_obj)
    inside_out = trimesh.Trimesh(box.vertices, box.faces[:, ::-1], process=False)
    flipped = ObjectModel.from_mesh(inside_out, n_points=600)
    assert (np.einsum("ij,ij->i", flipped.normals_obj, flipped.points_obj) > 0).all()
    with pytest.raises(ValueError, match="no surface"):
        ObjectModel.from_mesh(trimesh.Trimesh())


def test_upright_motion_keeps_only_a_slide_and_a_turn_about_the_normal():
    rng = np.random.default_rng(1)
    for _ in range(20):
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        plane = np.append(normal, 0.7)
        R0 = Rotation.random(random_state=rng).as_matrix()
        T_from = make_transform(R0, rng.normal(size=3))
        twist = Rotation.from_rotvec(normal * rng.uniform(-3.0, 3.0)).as_matrix()
        swing_axis = np.cross(normal, rng.normal(size=3))  # any axis in the plane
        swing = Rotation.from_rotvec(swing_axis / np.linalg.norm(swing_axis) * rng.uniform(-1.0, 1.0)).as_matrix()
        slide = rng.normal(size=3)
        T_to = make_transform(swing @ twist @ R0, T_from[:3, 3] + slide)
        projected = upright_motion(T_from, T_to, plane)
        np.testing.assert_allclose(projected[:3, :3], twist @ R0, atol=1e-9)
        np.testing.assert_allclose(projected[:3, 3], T_from[:3, 3] + slide - normal * (slide @ normal), atol=1e-12)


def test_centroid_prior_shifts_along_the_table_and_is_clipped():
    T_prev = make_transform(np.eye(3), [0.0, 0.0, 1.0])
    points = np.random.default_rng(0).normal(size=(50, 3)) * 0.01 + [0.0, 0.0, 1.0]
    centroid = points.mean(axis=0)
    moved = centroid_motion_prior(T_prev, centroid, points + [0.02, 0.01, 0.0])
    np.testing.assert_allclose(moved[:3, 3], [0.02, 0.01, 1.0], atol=1e-12)
    np.testing.assert_array_equal(moved[:3, :3], np.eye(3))
    clipped = centroid_motion_prior(T_prev, centroid, points + [0.3, 0.0, 0.0], max_shift_m=0.05)
    np.testing.assert_allclose(clipped[:3, 3], [0.05, 0.0, 1.0], atol=1e-12)
    on_plane = centroid_motion_prior(T_prev, centroid, points + [0.02, 0.03, 0.0],
                                     support_plane_cam=[0.0, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(on_plane[:3, 3], [0.02, 0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(centroid_motion_prior(T_prev, centroid, np.zeros((0, 3))), T_prev)
