"""ObjectTracker on rendered sequences: stable ids, pose tracking from one reconstruction, removal, re-reconstruction."""
import numpy as np
import pytest
import trimesh

from sam3d_ros.geometry.transforms import invert_transform, rotation_angle_between
from sam3d_ros.geometry.types import ObjectPrompt, RGBDFrame
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.tools.synthetic import moving_object_sequence
from sam3d_ros.tracking.tracker import ObjectTracker, Observation, TrackerConfig

NS_PER_FRAME = 33_333_333  # 30 Hz
# Boxes: the depth backend completes them exactly, so the 1 cm / 2 deg bound tests the tracking. A near-symmetric
# completion of an asymmetric object (mustard) leaves its turn poorly constrained: see test_pose_tracking and the README.
NAMES = ["003_cracker_box", "004_sugar_box"]


@pytest.fixture(scope="module")
def sequence():
    return moving_object_sequence(NAMES, n_frames=16, seed=3)


@pytest.fixture(scope="module")
def pipeline():
    return PerceptionPipeline(create_backend("depth"))


def _observe(tracker, scene, relabel=None, drop=()):
    labels = scene.labels.copy()
    for object_id in drop:
        labels[labels == object_id] = 0
    if relabel:
        labels = np.vectorize(lambda v: relabel.get(int(v), int(v)))(labels).astype(labels.dtype)
    prompts = labels_to_prompts(labels)
    return tracker.observe(scene.depth_m, scene.intrinsics, prompts, [p.mask for p in prompts])


def _reconstruct(tracker, pipeline, scene, stamp_ns, update):
    request = tracker.make_request(stamp_ns, update.to_reconstruct)
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics, "cam", stamp_ns)
    result = pipeline.process(frame, request.prompts)
    done = {o.object_id for o in result.objects}
    return tracker.apply_reconstruction(request, result.objects, [p.object_id for p in request.prompts if p.object_id not in done])


def test_moving_objects_keep_their_ids_and_poses_follow_the_truth_from_one_reconstruction(sequence, pipeline):
    tracker = ObjectTracker(TrackerConfig())
    first = sequence[0]
    update = tracker.update(0, _observe(tracker, first))
    assert sorted(t.track_id for t in update.new) == ["1", "2"]
    assert sorted(t.track_id for t in update.to_reconstruct) == ["1", "2"] and not update.seen
    assert len(_reconstruct(tracker, pipeline, first, 0, update)) == 2
    T0_est = {tid: tracker.tracks[tid].T_cam_obj.copy() for tid in ("1", "2")}
    T0_true = {str(o.object_id): o.T_cam_obj for o in first.objects}
    for k, scene in enumerate(sequence[1:], start=1):
        update = tracker.update(k * NS_PER_FRAME, _observe(tracker, scene))
        assert not update.new and not update.removed and not update.to_reconstruct
        assert sorted(t.track_id for t in update.seen) == ["1", "2"]
        for obj in scene.objects:
            track = tracker.tracks[str(obj.object_id)]
            motion_est = track.T_cam_obj @ invert_transform(T0_est[track.track_id])
            motion_true = obj.T_cam_obj @ invert_transform(T0_true[track.track_id])
            # Compare where the motion takes the object's true centre (independent of the object frame chosen).
            centre0 = T0_true[track.track_id][:3, 3]
            error_m = np.linalg.norm((motion_est[:3, :3] @ centre0 + motion_est[:3, 3]) - (motion_true[:3, :3] @ centre0 + motion_true[:3, 3]))
            error_deg = np.degrees(rotation_angle_between(motion_est[:3, :3], motion_true[:3, :3]))
            assert error_m < 0.01 and error_deg < 2.0, f"frame {k} {obj.name}: {error_m * 100:.2f} cm, {error_deg:.2f} deg"
    assert all(t.mesh_version == 1 for t in tracker.tracks.values())  # reconstructed exactly once each
    moved = np.linalg.norm(sequence[-1].objects[0].T_cam_obj[:3, 3] - first.objects[0].T_cam_obj[:3, 3])
    assert moved > 0.02, "the sequence must actually move the objects for this test to mean anything"


def test_label_values_that_swap_between_frames_do_not_swap_identities(sequence, pipeline):
    tracker = ObjectTracker(TrackerConfig(association="overlap"))
    update = tracker.update(0, _observe(tracker, sequence[0]))
    _reconstruct(tracker, pipeline, sequence[0], 0, update)
    update = tracker.update(NS_PER_FRAME, _observe(tracker, sequence[1], relabel={1: 2, 2: 1}))
    assert not update.new
    for track in update.seen:  # track "1" still follows the object that was 1 in the first frame
        observed = track.last_observation.prompt.object_id
        assert observed != track.track_id


def test_detector_ids_are_trusted_in_auto_mode():
    tracker = ObjectTracker(TrackerConfig(association="auto"))
    mask_left = np.zeros((48, 64), bool)
    mask_left[10:20, 5:15] = True
    mask_right = np.zeros((48, 64), bool)
    mask_right[10:20, 45:55] = True
    obs = lambda oid, mask: Observation(ObjectPrompt(oid), mask, np.zeros((0, 3)), stable_id=True)
    tracker.update(0, [obs("a", mask_left), obs("b", mask_right)])
    update = tracker.update(NS_PER_FRAME, [obs("a", mask_right), obs("b", mask_left)])  # ids say they crossed over
    assert not update.new
    assert np.array_equal(tracker.tracks["a"].last_observation.mask, mask_right)


def test_an_object_that_leaves_is_removed_after_the_timeout_and_not_before(sequence, pipeline):
    tracker = ObjectTracker(TrackerConfig(lost_timeout_s=0.2))
    update = tracker.update(0, _observe(tracker, sequence[0]))
    _reconstruct(tracker, pipeline, sequence[0], 0, update)
    removed_at = None
    for k, scene in enumerate(sequence[1:12], start=1):
        update = tracker.update(k * NS_PER_FRAME, _observe(tracker, scene, drop=(2,)))
        if update.removed:
            assert [t.track_id for t in update.removed] == ["2"] and removed_at is None
            removed_at = k
        elif removed_at is None:  # kept at its last pose while lost, but no longer "seen"
            assert "2" in {t.track_id for t in update.kept} and "2" not in {t.track_id for t in update.seen}
    assert removed_at == 7, "0.2 s at 30 Hz: unseen since frame 0, removed in the first frame more than 0.2 s later"
    assert set(tracker.tracks) == {"1"}


def test_a_degraded_fit_asks_for_a_new_reconstruction(sequence, pipeline):
    tracker = ObjectTracker(TrackerConfig(degraded_frames=3))
    update = tracker.update(0, _observe(tracker, sequence[0]))
    _reconstruct(tracker, pipeline, sequence[0], 0, update)
    from sam3d_ros.tracking.pose_tracking import ObjectModel

    tracker.tracks["1"].model = ObjectModel.from_mesh(trimesh.creation.icosphere(radius=0.5))  # far too big
    asked = []
    for k, scene in enumerate(sequence[1:6], start=1):
        update = tracker.update(k * NS_PER_FRAME, _observe(tracker, scene))
        asked.append([t.track_id for t in update.to_reconstruct])
    assert asked[:2] == [[], []] and asked[2] == ["1"]
    assert tracker.tracks["1"].reconstruction_reason.startswith("fit degraded")


def test_requests_in_flight_are_not_repeated_and_cancelled_ones_come_back(sequence):
    tracker = ObjectTracker()
    update = tracker.update(0, _observe(tracker, sequence[0]))
    request = tracker.make_request(0, update.to_reconstruct)
    assert sorted(p.object_id for p in request.prompts) == ["1", "2"]
    update = tracker.update(NS_PER_FRAME, _observe(tracker, sequence[1]))
    assert not update.to_reconstruct  # in flight
    tracker.cancel_request(request)  # a newer request replaced it in the queue
    update = tracker.update(2 * NS_PER_FRAME, _observe(tracker, sequence[2]))
    assert sorted(t.track_id for t in update.to_reconstruct) == ["1", "2"]
    tracker.apply_reconstruction(tracker.make_request(2 * NS_PER_FRAME, update.to_reconstruct), [], ["1", "2"])
    update = tracker.update(3 * NS_PER_FRAME, _observe(tracker, sequence[3]))
    assert not update.to_reconstruct, "a failed reconstruction is retried after 1 s, not every frame"
    assert tracker.request_reconstruction(None) == 2 and tracker.clear() and not tracker.tracks


def test_a_new_object_whose_input_id_is_taken_gets_a_fresh_id():
    tracker = ObjectTracker(TrackerConfig(association="overlap"))
    mask_a = np.zeros((48, 64), bool)
    mask_a[0:10, 0:10] = True
    mask_b = np.zeros((48, 64), bool)
    mask_b[30:40, 50:60] = True
    tracker.update(0, [Observation(ObjectPrompt("1"), mask_a, np.array([[0.0, 0.0, 1.0]] * 3))])
    update = tracker.update(NS_PER_FRAME, [
        Observation(ObjectPrompt("1"), mask_b, np.array([[0.5, 0.5, 1.0]] * 3)),
        Observation(ObjectPrompt("2"), mask_a, np.array([[0.0, 0.0, 1.0]] * 3)),
    ])
    assert [t.track_id for t in update.new] == ["1_2"]
    assert tracker.tracks["1"].input_id == "2"


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="association"):
        ObjectTracker(TrackerConfig(association="magic"))
    with pytest.raises(ValueError, match="lost_timeout_s"):
        ObjectTracker(TrackerConfig(lost_timeout_s=0))


def _camera_sweep(n_frames: int) -> list:
    """Two boxes standing still on the table, seen by a camera that circles them by 2 degrees per frame."""
    from sam3d_ros.tools.synthetic import look_at_camera, render_scene, upright_pose

    placements = [("003_cracker_box", upright_pose("003_cracker_box", 0.05, -0.08, 0.4)),
                  ("004_sugar_box", upright_pose("004_sugar_box", -0.06, 0.1, 1.1))]
    intrinsics = moving_object_sequence(NAMES, n_frames=1, seed=3)[0].intrinsics
    return [render_scene(placements, look_at_camera(0.7, 40.0, 20.0 + 2.0 * k), intrinsics, rng=k) for k in range(n_frames)]


@pytest.mark.parametrize("camera_pose_known", [True, False])
def test_with_the_camera_pose_a_lost_object_stays_put_in_the_fixed_frame(pipeline, camera_pose_known):
    scenes = _camera_sweep(11)
    tracker = ObjectTracker(TrackerConfig(lost_timeout_s=1.0))
    T_world_cam = [invert_transform(scene.T_cam_world) for scene in scenes]
    update = tracker.update(0, _observe(tracker, scenes[0]), T_fixed_cam=T_world_cam[0])
    _reconstruct(tracker, pipeline, scenes[0], 0, update)
    T_world_obj0 = {tid: T_world_cam[0] @ tracker.tracks[tid].T_cam_obj for tid in ("1", "2")}
    for k, scene in enumerate(scenes[1:], start=1):
        update = tracker.update(k * NS_PER_FRAME, _observe(tracker, scene, drop=(2,)),
                                T_fixed_cam=T_world_cam[k] if camera_pose_known else None)
        assert [t.track_id for t in update.seen] == ["1"] and {t.track_id for t in update.kept} == {"1", "2"}
    T_world_obj = {tid: T_world_cam[-1] @ tracker.tracks[tid].T_cam_obj for tid in ("1", "2")}
    lost_moved_m = np.linalg.norm(T_world_obj["2"][:3, 3] - T_world_obj0["2"][:3, 3])
    seen_moved_m = np.linalg.norm(T_world_obj["1"][:3, 3] - T_world_obj0["1"][:3, 3])
    seen_turned_deg = np.degrees(rotation_angle_between(T_world_obj["1"][:3, :3], T_world_obj0["1"][:3, :3]))
    # The tracked object stands still in the world while the camera circles it by 20 degrees, with or without.
    assert seen_moved_m < 0.01 and seen_turned_deg < 2.0, f"{seen_moved_m * 100:.2f} cm, {seen_turned_deg:.2f} deg"
    if camera_pose_known:
        assert lost_moved_m < 1e-9 and np.allclose(T_world_obj["2"], T_world_obj0["2"], atol=1e-9)
    else:  # without the camera's pose the lost object rides along with the camera
        assert lost_moved_m > 0.03  # it turned 20 degrees about the table centre with the camera


# The sweep of test/ros/test_node_fusion.py: a wrist camera circles a cracker box and a mustard bottle (tuning objects)
# by 120 degrees, 6 degrees per frame; here its first 78 degrees, where the box hides the bottle in frames 7-13 (57 %
# to 4 % of it visible; 9 % or less in 9-12).
WRIST_PLACEMENTS = [("003_cracker_box", (0.0, -0.1, 0.4)), ("006_mustard_bottle", (0.0, 0.1, 1.1))]


@pytest.fixture(scope="module")
def wrist_sweep():
    from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, render_scene, upright_pose

    placements = [(name, upright_pose(name, *where)) for name, where in WRIST_PLACEMENTS]
    return [render_scene(placements, look_at_camera(0.65, 35.0, 200.0 + 6.0 * k), default_intrinsics(), rng=k)
            for k in range(14)]


def _world_pose_errors(tracker, pipeline, scenes):
    """Per frame, per object: how far (mm, degrees) its tracked pose in the world moved from the first frame's (the
    objects stand still), tracked with the single-view meshes of the depth backend and the camera's pose known."""
    T_world_cam = [invert_transform(scene.T_cam_world) for scene in scenes]
    update = tracker.update(0, _observe(tracker, scenes[0]), T_fixed_cam=T_world_cam[0])
    _reconstruct(tracker, pipeline, scenes[0], 0, update)
    T_world_obj0 = {tid: T_world_cam[0] @ track.T_cam_obj for tid, track in tracker.tracks.items()}
    errors = []
    for k, scene in enumerate(scenes[1:], start=1):
        tracker.update(k * NS_PER_FRAME, _observe(tracker, scene), T_fixed_cam=T_world_cam[k])
        T_world_obj = {tid: T_world_cam[k] @ track.T_cam_obj for tid, track in tracker.tracks.items()}
        errors.append({tid: (1000 * np.linalg.norm(T_world_obj[tid][:3, 3] - T_world_obj0[tid][:3, 3]),
                             np.degrees(rotation_angle_between(T_world_obj[tid][:3, :3], T_world_obj0[tid][:3, :3])))
                       for tid in T_world_obj})
    return errors


def test_with_the_camera_pose_known_a_still_object_does_not_drift_on_its_approximate_mesh(wrist_sweep, pipeline):
    # The single-view box is too shallow: each newly seen face pulls its fit by a few mm; over 66 degrees of sweep
    # that adds up to 11 mm in the world (20-25 mm over the whole sweep; fused views landed off). Held, it stays
    # where it is. (Further on, the still pose fits the points far worse than the slid fit and the slide is followed:
    # see the next test; with fusion the installed fused mesh has the seen faces right by then.)
    scenes = wrist_sweep[:12]  # 0-66 degrees
    errors = _world_pose_errors(ObjectTracker(TrackerConfig()), pipeline, scenes)
    worst_box = max(frame["1"][0] for frame in errors)
    assert worst_box < 3.0, str([round(float(frame["1"][0]), 1) for frame in errors])
    moving = _world_pose_errors(ObjectTracker(TrackerConfig(static_hold_m=0.0, hidden_area_fraction=0.0)), pipeline,
                                scenes)
    assert max(frame["1"][0] for frame in moving) > 5.0  # without the hold it drifts: the sweep is a real test


def test_with_the_camera_pose_known_a_slide_beyond_the_hold_that_fits_no_better_is_held_too(pipeline):
    # 66 degrees of the sweep: from 36 degrees on, the too shallow single-view box's fit slides just beyond the 1 cm
    # hold (10.7-10.9 mm), yet the still pose fits the points not much worse (fitness 0.78 down to 0.48 against
    # 0.98 down to 0.89): held. Following every slide that fits better puts it 10 mm off from 36 degrees on. (At 72
    # degrees this one-view mesh is so wrong that the still pose fits far worse, 0.35 against 0.87, and the slide is
    # followed; with fusion the installed fused mesh has the newly seen faces by then. On the depth backend's mesh
    # before its handle-aware revolution, 2-3 mm larger, the fit first left the hold at 84 degrees.)
    from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, render_scene, upright_pose

    placements = [(name, upright_pose(name, *where)) for name, where in WRIST_PLACEMENTS[:1]]
    scenes = [render_scene(placements, look_at_camera(0.65, 35.0, 200.0 + 6.0 * k), default_intrinsics(), rng=k)
              for k in range(12)]
    errors = [round(float(frame["1"][0]), 1) for frame in _world_pose_errors(ObjectTracker(TrackerConfig()), pipeline, scenes)]
    assert max(errors) < 3.0, str(errors)
    followed = [round(float(frame["1"][0]), 1) for frame in
                _world_pose_errors(ObjectTracker(TrackerConfig(static_hold_fitness=0.0)), pipeline, scenes)]
    assert max(followed) > 8.0, str(followed)  # the slides beyond the hold are real: followed, they are 1 cm off


def test_with_the_camera_pose_known_a_real_move_beyond_the_hold_is_followed(pipeline):
    # The camera circles as above; from the fourth frame the box stands 3 cm further along the table: the still pose
    # is off the points, the fit is followed.
    from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, render_scene, upright_pose

    name, (x, y, yaw) = WRIST_PLACEMENTS[0]
    scenes = [render_scene([(name, upright_pose(name, x + (0.03 if k >= 3 else 0.0), y, yaw))],
                           look_at_camera(0.65, 35.0, 200.0 + 6.0 * k), default_intrinsics(), rng=k) for k in range(6)]
    errors = [round(float(frame["1"][0]), 1) for frame in _world_pose_errors(ObjectTracker(TrackerConfig()), pipeline, scenes)]
    assert max(errors[:2]) < 3.0 and all(abs(mm - 30.0) < 5.0 for mm in errors[2:]), str(errors)


def test_with_the_camera_pose_known_a_mostly_hidden_object_keeps_its_pose(wrist_sweep, pipeline):
    # Behind the box only a sliver of the bottle is seen; a fit to it turned the bottle by 50-80 degrees and moved it
    # by 5-7 cm (with a fitness near 1). Mostly hidden, it stays where the camera's motion puts it.
    errors = _world_pose_errors(ObjectTracker(TrackerConfig()), pipeline, wrist_sweep)
    bottle = [(round(float(frame["2"][0]), 1), round(float(frame["2"][1]), 1)) for frame in errors]
    assert max(mm for mm, _ in bottle) < 10.0 and max(deg for _, deg in bottle) < 10.0, str(bottle)
    # Without the holds it turns, fitted to the sliver: the sweep is a real test. (The static hold alone now keeps it
    # too: the still pose fits the sliver about as well as the turned one.)
    unheld = _world_pose_errors(ObjectTracker(TrackerConfig(hidden_area_fraction=0.0, static_hold_m=0.0)), pipeline,
                                wrist_sweep)
    assert max(frame["2"][1] for frame in unheld) > 30.0
    static_only = _world_pose_errors(ObjectTracker(TrackerConfig(hidden_area_fraction=0.0)), pipeline, wrist_sweep)
    assert max(frame["2"][1] for frame in static_only) < 10.0


def test_the_holds_need_the_camera_pose():
    with pytest.raises(ValueError, match="hidden_area_fraction"):
        ObjectTracker(TrackerConfig(hidden_area_fraction=1.0))
    with pytest.raises(ValueError, match="static_hold"):
        ObjectTracker(TrackerConfig(static_hold_m=-1.0))


# -- time that jumps back (looping bags, driver restarts, simulator resets)

S = 1_000_000_000


def _two_objects(drop=()):
    """Observations of two still objects ('1' left, '2' right), without the ones in `drop`."""
    observations = []
    for object_id, cols, x in (("1", slice(5, 15), -0.2), ("2", slice(45, 55), 0.2)):
        if object_id in drop:
            continue
        mask = np.zeros((48, 64), bool)
        mask[10:20, cols] = True
        observations.append(Observation(ObjectPrompt(object_id), mask, np.array([[x, 0.0, 1.0]] * 3)))
    return observations


def test_time_jumping_back_keeps_the_objects_and_the_lost_timeout_runs_on():
    tracker = ObjectTracker(TrackerConfig(lost_timeout_s=0.2))
    stamps = [k * NS_PER_FRAME for k in range(6)] + [k * NS_PER_FRAME - 60 * S for k in range(6, 16)]  # a 60 s loop
    removed_at = None
    for k, stamp in enumerate(stamps):
        update = tracker.update(stamp, _two_objects(drop=("2",) if k >= 3 else ()))
        assert not update.new or k == 0, f"frame {k}: object re-created"
        assert "1" in tracker.tracks and tracker.tracks["1"].seen_in_last_frame
        if update.removed:
            assert [t.track_id for t in update.removed] == ["2"] and removed_at is None
            removed_at = k
    # Unseen since frame 2; the jump joins frame 6 to frame 5 (no time between them): 7 frames unseen at frame 10.
    assert removed_at == 10, f"object 2 removed at frame {removed_at}"
    assert tracker.time_epoch == 1


def test_a_reconstruction_requested_before_time_jumped_back_is_mapped_into_the_new_time():
    tracker = ObjectTracker()
    update = tracker.update(100 * S, _two_objects())
    request = tracker.make_request(100 * S, update.to_reconstruct)
    tracker.update(100 * S + NS_PER_FRAME, _two_objects())
    tracker.update(40 * S, _two_objects())  # 60 s back while the request runs
    tracker.apply_reconstruction(request, [], ["1", "2"])  # it failed: retry 1 s (image time) after its frame
    assert tracker.tracks["1"].failed_ns == 40 * S - NS_PER_FRAME
    retried = [k for k in range(1, 40) if tracker.update(40 * S + k * NS_PER_FRAME, _two_objects()).to_reconstruct]
    # Frame k is k + 1 frames after the request's (mapped) frame; 31 frames of 33.333333 ms are the first >= 1 s.
    assert retried and retried[0] == 30, f"retried at frames {retried[:3]}, not 1 s after the request's frame (30)"


def test_an_installed_mesh_brings_its_grasps_or_keeps_the_old_ones(sequence, pipeline):
    tracker = ObjectTracker(TrackerConfig())
    scene = sequence[0]
    update = tracker.update(0, _observe(tracker, scene))
    _reconstruct(tracker, pipeline, scene, 0, update)
    track = tracker.tracks["1"]
    old_grasps = ["grasp of the single-view mesh"]
    track.reconstruction.grasps_obj = old_grasps
    refined = trimesh.creation.box(extents=track.reconstruction.size_obj)
    version = track.mesh_version
    assert tracker.install_mesh(track.track_id, refined, version) is track  # no grasps given: the old ones stay
    assert track.reconstruction.grasps_obj is old_grasps and track.mesh_version == version + 1
    new_grasps = ["grasp of the refined mesh"]
    assert tracker.install_mesh(track.track_id, refined, version + 1, grasps_obj=new_grasps) is track
    assert track.reconstruction.grasps_obj is new_grasps and track.reconstruction.mesh_obj is refined
    assert tracker.install_mesh(track.track_id, refined, version, grasps_obj=[]) is None  # an old frame: nothing changes
    assert track.reconstruction.grasps_obj is new_grasps


def test_an_installed_mesh_off_the_origin_brings_its_box_centre(sequence, pipeline):
    """A fused mesh keeps the tracked frame, so its box need not be centred on the origin (the grid grew toward
    surface first seen later): the size box follows the mesh, the pose stays."""
    tracker = ObjectTracker(TrackerConfig())
    scene = sequence[0]
    update = tracker.update(0, _observe(tracker, scene))
    _reconstruct(tracker, pipeline, scene, 0, update)
    track = tracker.tracks["1"]
    T_cam_obj = track.T_cam_obj.copy()
    grown = trimesh.creation.box(extents=(0.1, 0.05, 0.2))
    grown.apply_translation((0.03, 0.0, -0.01))
    assert tracker.install_mesh(track.track_id, grown, track.mesh_version) is track
    np.testing.assert_allclose(track.reconstruction.size_obj, (0.1, 0.05, 0.2), atol=1e-9)
    np.testing.assert_allclose(track.reconstruction.box_centre_obj, (0.03, 0.0, -0.01), atol=1e-9)
    np.testing.assert_allclose(track.T_cam_obj, T_cam_obj)
