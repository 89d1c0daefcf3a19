"""Stable object ids across frames: association, pose tracking of reconstructed meshes, lost-object removal.

"Reconstruct once, track always": a new object is queued for reconstruction; once its mesh arrives its pose is
updated every frame by ICP of the mesh against the masked depth points; it is reconstructed again only when asked,
when the fit degrades for several frames, or after `reconstruct_interval_s`. All times are image stamps (ns).

Time that jumps back (a stamp more than `time_jump_s` before the newest frame's: a looping bag, a driver restart, a
simulator reset) starts a new epoch: every stored stamp is moved by the jump, so the new timeline continues the old
one (an object unseen for 0.3 s is still unseen for 0.3 s, a failed reconstruction is still retried after 1 s), and
the objects are kept. Requests made before the jump are mapped into the new epoch when they come back.

Poses are in the camera's optical frame. When the camera's pose in a fixed frame is known for each frame
(`T_fixed_cam`, e.g. from TF), every object is first moved by the camera's motion since the previous frame: a lost
object then stays where it was in the fixed frame while the camera moves, and tracking starts from where a static
object would now be seen. While the camera moves, a fit that moves an object only a little from there (less than
`static_hold_m` and `static_hold_deg`) is taken as the error of an approximate mesh, not motion, and so is any fit to
an object mostly hidden (its mask below `hidden_area_fraction` of its largest): the object stays put in the fixed
frame. A one-view mesh otherwise slides along the surfaces the moving camera newly sees (25 mm over a 120 degree
sweep), and a sliver behind another object turned the fit by 50-80 degrees; multi-view fusion took those poses.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.transforms import invert_transform, rotation_angle_between, transform_points
from sam3d_ros.geometry.types import ObjectPrompt, ObjectReconstruction
from sam3d_ros.tracking.pose_tracking import (
    ObjectModel, centroid_motion_prior, observed_tracking_points, pose_fit, track_pose,
)

ASSOCIATION_MODES = ("auto", "input_id", "overlap")
_NS_PER_S = 1_000_000_000
_MASK_STRIDE = 8  # masks are compared on an 8x coarser grid


@dataclass
class TrackerConfig:
    """How objects are associated, tracked, re-reconstructed and forgotten."""

    association: str = "auto"  # 'auto': detector ids when given, else overlap; 'input_id': always; 'overlap': never
    max_association_distance_m: float = 0.10  # observed centroids further apart are never the same object
    min_association_iou: float = 0.05  # ... unless their masks overlap at least this much
    lost_timeout_s: float = 2.0  # an object unseen for longer is removed
    reconstruct_interval_s: float = 0.0  # > 0: reconstruct every object again after this long
    min_fitness: float = 0.5  # fraction of observed points on the mesh surface below which a fit is degraded
    max_rmse_m: float = 0.008  # ICP residual above which a fit is degraded
    degraded_frames: int = 5  # consecutive degraded fits before the object is reconstructed again
    tracking_points: int = 600  # observed depth points per object and frame used by ICP
    time_jump_s: float = 1.0  # a frame stamped this much before the newest one means time jumped back (as tf2_ros)
    # While the camera moves with its pose known (T_fixed_cam), a fit that moves an object less than this from where a
    # still object would now be is taken as model error, not motion: the pose stays put in the fixed frame (0: never).
    static_hold_m: float = 0.01
    static_hold_deg: float = 5.0
    # ... and a fit that moves it further is followed only when it fits the observed points clearly better than the
    # still pose does (by at least this much fitness): a mesh that is only approximate slides beyond the hold too,
    # while the still pose fits as well as the slid one; a real motion leaves the still pose off the points.
    static_hold_fitness: float = 0.5
    # While the camera moves with its pose known, an object whose mask shrank below this fraction of the largest it
    # had (as seen from 1 m) is taken as mostly hidden: a fit to the sliver left is not trusted, the pose stays put.
    hidden_area_fraction: float = 0.3

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        if self.association not in ASSOCIATION_MODES:
            raise ValueError(f"association must be one of {ASSOCIATION_MODES}, got '{self.association}'")
        for name in ("max_association_distance_m", "lost_timeout_s", "max_rmse_m", "time_jump_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.reconstruct_interval_s < 0 or self.degraded_frames < 1 or self.tracking_points < 10:
            raise ValueError("reconstruct_interval_s >= 0, degraded_frames >= 1 and tracking_points >= 10 are required")
        if self.static_hold_m < 0 or self.static_hold_deg < 0 or not 0 <= self.hidden_area_fraction < 1:
            raise ValueError("static_hold_m and static_hold_deg must be >= 0, hidden_area_fraction in [0, 1)")
        if not 0 <= self.static_hold_fitness <= 1:
            raise ValueError(f"static_hold_fitness must be in [0, 1], got {self.static_hold_fitness}")


@dataclass
class Observation:
    """One object seen in one frame: the prompt it came from, its mask and its depth points."""

    prompt: ObjectPrompt
    mask: np.ndarray  # (H, W) bool
    points_cam: np.ndarray  # (N, 3) subsampled valid depth inside the mask, optical frame
    stable_id: bool = False  # the prompt's id identifies the object across frames (a detector's tracking id)
    centroid_cam: np.ndarray | None = field(init=False)  # mean of points_cam, None without depth
    mask_small: np.ndarray = field(init=False)  # the mask on the coarse association grid
    area_px_at_1m: float = field(init=False)  # mask pixels times the centroid's depth squared (0 without depth)

    def __post_init__(self) -> None:
        self.centroid_cam = self.points_cam.mean(axis=0) if len(self.points_cam) else None
        self.mask_small = _small(self.mask)
        depth = 0.0 if self.centroid_cam is None else float(self.centroid_cam[2])
        self.area_px_at_1m = float(np.count_nonzero(self.mask)) * depth * depth


@dataclass
class Track:
    """An object the tracker knows: identity, latest mesh and pose, and its history."""

    track_id: str
    input_id: str
    label: str
    score: float
    last_seen_ns: int
    mask_small: np.ndarray  # last mask on the coarse grid
    centroid_cam: np.ndarray | None  # last observed centroid
    reconstruction: ObjectReconstruction | None = None  # latest mesh; its T_cam_obj is the current pose
    model: ObjectModel | None = None
    mesh_version: int = 0
    reconstructed_ns: int = 0  # stamp of the frame the current mesh was reconstructed from
    pose_ns: int = 0  # stamp of the frame the current pose comes from
    needs_reconstruction: bool = True
    reconstruction_reason: str = "new object"
    in_flight: bool = False
    failed_ns: int | None = None  # stamp of the frame whose reconstruction last failed (retried after 1 s)
    degraded_count: int = 0
    fitness: float = 0.0
    rmse_m: float = float("nan")
    last_observation: Observation | None = None  # this frame's observation (None when not seen in it)
    T_cam_obj_reconstructed: np.ndarray | None = None  # pose at the frame of the latest reconstruction
    largest_area_px_at_1m: float = 0.0  # the largest observed mask (Observation.area_px_at_1m)

    @property
    def seen_in_last_frame(self) -> bool:
        """Observed in the latest frame the tracker was given."""
        return self.last_observation is not None

    @property
    def T_cam_obj(self) -> np.ndarray | None:
        """Current pose of the object frame in the optical frame (None before the first reconstruction)."""
        return None if self.reconstruction is None else self.reconstruction.T_cam_obj


@dataclass
class ReconstructionRequest:
    """Objects of one frame to reconstruct: prompts whose object_id is the track id."""

    stamp_ns: int
    prompts: list[ObjectPrompt]
    observations: dict[str, Observation]  # track id -> what was observed of it in this frame
    T_fixed_cam: np.ndarray | None = None  # the camera's pose in the fixed frame at this frame, when known
    epoch: int = 0  # the tracker's time epoch when it was made (see ObjectTracker.time_epoch)


@dataclass
class FrameUpdate:
    """What one frame changed."""

    seen: list[Track] = field(default_factory=list)  # tracks observed in this frame that have a pose
    kept: list[Track] = field(default_factory=list)  # every track with a pose (seen or lost within the timeout)
    removed: list[Track] = field(default_factory=list)  # tracks removed in this frame (they had a pose or not)
    new: list[Track] = field(default_factory=list)  # tracks created in this frame
    to_reconstruct: list[Track] = field(default_factory=list)  # tracks that need a reconstruction, not in flight


def _small(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask, dtype=bool)[::_MASK_STRIDE, ::_MASK_STRIDE]


def mask_iou(a_small: np.ndarray, b_small: np.ndarray) -> float:
    """Intersection over union of two (coarse) masks of the same shape; 0 when shapes differ or both are empty."""
    if a_small.shape != b_small.shape:
        return 0.0
    union = np.count_nonzero(a_small | b_small)
    return float(np.count_nonzero(a_small & b_small)) / union if union else 0.0


class ObjectTracker:
    """Keeps the frame-to-frame identity and pose of every object (ROS-free; one instance per node)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self.tracks: dict[str, Track] = {}
        self._rng = np.random.default_rng(0)
        self._T_fixed_cam: np.ndarray | None = None  # camera pose in the fixed frame at the latest frame
        self._camera_moved = False  # the camera's pose is known and it moved since the previous frame
        self.newest_stamp_ns: int | None = None  # of the frames given to update(), in the current epoch
        self.time_epoch = 0  # number of times time jumped back
        self._epoch_shift_ns: list[int] = [0]  # per epoch: added to its stamps to express them in the current one

    # -- observations ------------------------------------------------------------------------------------------
    def observe(
        self, depth_m: np.ndarray | None, intrinsics: CameraIntrinsics, prompts: list[ObjectPrompt],
        masks: list[np.ndarray | None], stable_ids: list[bool] | None = None,
    ) -> list[Observation]:
        """Observations of a frame from its prompts and their masks (None masks are skipped)."""
        stable_ids = stable_ids or [False] * len(prompts)
        observations = []
        for prompt, mask, stable in zip(prompts, masks, stable_ids):
            if mask is None or not mask.any():
                continue
            points_cam = (
                observed_tracking_points(depth_m, intrinsics, mask, self.config.tracking_points)
                if depth_m is not None else np.zeros((0, 3))
            )
            observations.append(Observation(prompt, mask, points_cam, stable))
        return observations

    # -- association -------------------------------------------------------------------------------------------
    def _uses_input_id(self, observation: Observation) -> bool:
        mode = self.config.association
        return mode == "input_id" or (mode == "auto" and observation.stable_id)

    def associate(self, observations: list[Observation]) -> tuple[list[tuple[Track, Observation]], list[Observation]]:
        """(track, observation) pairs and the observations of new objects.

        Observations with a trusted input id match the track of that id; the rest are matched by the Hungarian
        method on a cost mixing mask overlap and centroid distance, gated by `max_association_distance_m` and
        `min_association_iou`; a track and an observation with different non-empty labels never match."""
        pairs: list[tuple[Track, Observation]] = []
        new: list[Observation] = []
        free = dict(self.tracks)
        rest: list[Observation] = []
        for observation in observations:
            if self._uses_input_id(observation):
                track = next((t for t in free.values() if t.input_id == observation.prompt.object_id), None)
                if track is not None:
                    del free[track.track_id]
                    pairs.append((track, observation))
                    continue
                if self.config.association == "input_id":
                    new.append(observation)
                    continue
            rest.append(observation)
        candidates = [] if self.config.association == "input_id" else list(free.values())
        if not candidates or not rest:
            return pairs, new + rest
        gate_m = self.config.max_association_distance_m
        cost = np.full((len(candidates), len(rest)), np.inf)
        for i, track in enumerate(candidates):
            for j, observation in enumerate(rest):
                if track.label and observation.prompt.label and track.label != observation.prompt.label:
                    continue
                centroid = observation.centroid_cam
                distance_m = (
                    float(np.linalg.norm(centroid - track.centroid_cam))
                    if centroid is not None and track.centroid_cam is not None else np.inf
                )
                if np.isfinite(distance_m) and distance_m > 3 * gate_m:
                    continue  # far apart in 3D (even if they overlap in the image)
                iou = mask_iou(track.mask_small, observation.mask_small)
                if iou < self.config.min_association_iou and distance_m > gate_m:
                    continue  # neither overlapping nor near
                cost[i, j] = (1.0 - iou) + min(distance_m, gate_m) / gate_m
        finite = np.where(np.isfinite(cost), cost, 1e6)
        matched: set[int] = set()
        for i, j in zip(*linear_sum_assignment(finite)):
            if np.isfinite(cost[i, j]):
                pairs.append((candidates[i], rest[j]))
                matched.add(j)
        return pairs, new + [o for j, o in enumerate(rest) if j not in matched]

    def _new_track_id(self, input_id: str) -> str:
        if input_id not in self.tracks:
            return input_id
        k = 2
        while f"{input_id}_{k}" in self.tracks:
            k += 1
        return f"{input_id}_{k}"

    # -- per frame ---------------------------------------------------------------------------------------------
    def update(self, stamp_ns: int, observations: list[Observation], T_fixed_cam: np.ndarray | None = None) -> FrameUpdate:
        """Remove lost objects, associate, track the pose of every matched object with a mesh, create new tracks.

        `T_fixed_cam`: the camera's pose at this frame in a frame fixed in the world (None when unknown); with it
        and the previous frame's, every object is first moved by the camera's motion (see the module docstring)."""
        update = FrameUpdate()
        newest = self.newest_stamp_ns
        if newest is not None and stamp_ns < newest - int(self.config.time_jump_s * _NS_PER_S):
            self._time_jumped_back(stamp_ns - newest)
            newest = None
        self.newest_stamp_ns = stamp_ns if newest is None else max(newest, stamp_ns)
        self._camera_moved = False
        if T_fixed_cam is not None and self._T_fixed_cam is not None:
            T_cam_previous = invert_transform(T_fixed_cam) @ self._T_fixed_cam  # previous camera in the current one
            if not np.allclose(T_cam_previous, np.eye(4), atol=1e-9):
                self._camera_moved = True
                for track in self.tracks.values():
                    _move_with_camera(track, T_cam_previous)
        self._T_fixed_cam = None if T_fixed_cam is None else np.array(T_fixed_cam, dtype=float)
        timeout_ns = int(self.config.lost_timeout_s * _NS_PER_S)
        for track_id, track in list(self.tracks.items()):
            track.last_observation = None
            if stamp_ns - track.last_seen_ns > timeout_ns:
                update.removed.append(self.tracks.pop(track_id))
        pairs, new_observations = self.associate(observations)
        for track, observation in pairs:
            self._track(track, observation, stamp_ns)
        for observation in new_observations:
            track_id = self._new_track_id(observation.prompt.object_id)
            track = Track(
                track_id, observation.prompt.object_id, observation.prompt.label, observation.prompt.score,
                stamp_ns, observation.mask_small, observation.centroid_cam, last_observation=observation,
            )
            self.tracks[track_id] = track
            update.new.append(track)
        interval_ns = int(self.config.reconstruct_interval_s * _NS_PER_S)
        for track in self.tracks.values():
            if interval_ns > 0 and track.reconstruction is not None and stamp_ns - track.reconstructed_ns >= interval_ns:
                self.request_reconstruction(track.track_id, "interval")
            if track.reconstruction is not None:
                update.kept.append(track)
                if track.seen_in_last_frame:
                    update.seen.append(track)
            retry_ok = track.failed_ns is None or stamp_ns - track.failed_ns >= _NS_PER_S
            if track.needs_reconstruction and not track.in_flight and track.last_observation is not None and retry_ok:
                update.to_reconstruct.append(track)
        return update

    def _time_jumped_back(self, delta_ns: int) -> None:
        """Start a new epoch: stored stamps move by `delta_ns` (< 0), so the newest frame's becomes this frame's."""
        for track in self.tracks.values():
            track.last_seen_ns += delta_ns
            track.reconstructed_ns += delta_ns
            track.pose_ns += delta_ns
            if track.failed_ns is not None:
                track.failed_ns += delta_ns
        self._epoch_shift_ns = [shift + delta_ns for shift in self._epoch_shift_ns] + [0]
        self.time_epoch += 1

    def current_stamp_ns(self, stamp_ns: int, epoch: int) -> int:
        """A stamp of time epoch `epoch` expressed in the current epoch (unchanged when time never jumped since)."""
        return stamp_ns + self._epoch_shift_ns[epoch]

    def _track(self, track: Track, observation: Observation, stamp_ns: int) -> None:
        centroid = observation.centroid_cam
        track.last_seen_ns = stamp_ns
        track.last_observation = observation
        track.input_id = observation.prompt.object_id
        track.score = observation.prompt.score
        track.label = observation.prompt.label or track.label
        track.mask_small = observation.mask_small
        if track.reconstruction is not None and track.model is not None and centroid is not None:
            T_cam_obj_init = T_cam_obj_still = track.reconstruction.T_cam_obj  # where it is if it did not move
            if track.centroid_cam is not None:  # the last pose moved with the observed centroid
                T_cam_obj_init = centroid_motion_prior(T_cam_obj_init, track.centroid_cam, observation.points_cam)
            result = track_pose(track.model, observation.points_cam, T_cam_obj_init, min_fitness=self.config.min_fitness)
            good = result.ok and result.rmse_m <= self.config.max_rmse_m
            track.fitness, track.rmse_m = result.fitness, result.rmse_m
            hidden = observation.area_px_at_1m < self.config.hidden_area_fraction * track.largest_area_px_at_1m
            if self._camera_moved and (hidden or (good and self._holds_still(
                    track.model, observation.points_cam, T_cam_obj_still, result.T_cam_obj, result.fitness))):
                result.T_cam_obj = T_cam_obj_still  # a still object where the camera's motion puts it
                good = good or hidden  # a sliver's poor fit says nothing of the model: no new reconstruction for it
            if good:
                track.reconstruction = replace(track.reconstruction, T_cam_obj=result.T_cam_obj, mask=observation.mask)
                track.pose_ns = stamp_ns
                track.degraded_count = 0
            else:
                track.degraded_count += 1
                if result.ok:  # keep following the object while the fit is poor
                    track.reconstruction = replace(track.reconstruction, T_cam_obj=result.T_cam_obj)
                    track.pose_ns = stamp_ns
                if track.degraded_count >= self.config.degraded_frames:
                    self.request_reconstruction(
                        track.track_id, f"fit degraded (fitness {result.fitness:.2f}, rmse {result.rmse_m * 1000:.1f} mm)"
                    )
        track.centroid_cam = centroid if centroid is not None else track.centroid_cam
        track.largest_area_px_at_1m = max(track.largest_area_px_at_1m, observation.area_px_at_1m)

    def _holds_still(self, model: ObjectModel, points_cam: np.ndarray, T_cam_obj_still: np.ndarray,
                     T_cam_obj_fitted: np.ndarray, fitness_fitted: float) -> bool:
        """The fit moved the object less than the static hold from where it would be had it not moved (the camera's
        motion is known), or further but without fitting the points clearly better than that still pose: a model
        that is only approximate (one view's completion) slides along the surfaces a moving camera newly sees, frame
        after frame, and once past the hold it jumped there; holding it keeps the pose in the fixed frame, so it
        neither drifts nor feeds drifted views to multi-view fusion. A real motion beyond the hold is followed."""
        c = self.config
        moved_m = float(np.linalg.norm(T_cam_obj_fitted[:3, 3] - T_cam_obj_still[:3, 3]))
        turned_rad = rotation_angle_between(T_cam_obj_fitted[:3, :3], T_cam_obj_still[:3, :3])
        if moved_m < c.static_hold_m and turned_rad < np.radians(c.static_hold_deg):
            return True
        if c.static_hold_m == 0 or c.static_hold_deg == 0:  # the hold is off
            return False
        fitness_still, _ = pose_fit(model, points_cam, T_cam_obj_still)
        return fitness_still >= fitness_fitted - c.static_hold_fitness

    # -- reconstruction ----------------------------------------------------------------------------------------
    def request_reconstruction(self, track_id: str | None = None, reason: str = "requested") -> int:
        """Mark one track (or every track with None) for reconstruction; the number of tracks marked."""
        tracks = list(self.tracks.values()) if track_id is None else [self.tracks[track_id]] if track_id in self.tracks else []
        for track in tracks:
            track.needs_reconstruction = True
            track.reconstruction_reason = reason
        return len(tracks)

    def make_request(self, stamp_ns: int, tracks: list[Track]) -> ReconstructionRequest:
        """A request to reconstruct `tracks` from this frame's observations; those tracks are marked in flight."""
        prompts, observations = [], {}
        for track in tracks:
            observation = track.last_observation
            if observation is None:
                continue
            prompts.append(replace(observation.prompt, object_id=track.track_id))
            observations[track.track_id] = observation
            track.in_flight = True
            track.needs_reconstruction = False
        return ReconstructionRequest(stamp_ns, prompts, observations, self._T_fixed_cam, self.time_epoch)

    def apply_reconstruction(self, request: ReconstructionRequest, objects: list[ObjectReconstruction], failed_ids: list[str]) -> list[Track]:
        """Install new meshes from a finished request; the tracks that got one (tracks removed meanwhile are skipped).

        The reconstructed pose belongs to the request's frame; it is moved by the camera's motion since then (when
        both camera poses are known) and by the observed centroid's motion, and the next frame's ICP refines it."""
        stamp_ns = self.current_stamp_ns(request.stamp_ns, request.epoch)  # time may have jumped back since
        T_cam_requested = np.eye(4)  # the request's camera in the latest frame's camera
        if request.T_fixed_cam is not None and self._T_fixed_cam is not None:
            T_cam_requested = invert_transform(self._T_fixed_cam) @ request.T_fixed_cam
        updated = []
        for track_id in failed_ids:
            track = self.tracks.get(track_id)
            if track is not None:
                track.in_flight, track.needs_reconstruction, track.failed_ns = False, True, stamp_ns
        for obj in objects:
            track = self.tracks.get(obj.object_id)
            if track is None:
                continue
            track.in_flight = False
            model = ObjectModel.from_mesh(obj.mesh_obj)
            # The mesh fitted to its own frame's points first: the pose tracking then continues from exactly where a
            # registration of this mesh lands, so the first tracked frame does not jump (up to 1 cm / 3 degrees).
            T_cam_obj = obj.T_cam_obj.copy()
            then = request.observations.get(track.track_id)
            if then is not None and len(then.points_cam):
                fitted = track_pose(model, then.points_cam, T_cam_obj, min_fitness=self.config.min_fitness)
                if fitted.ok and fitted.rmse_m <= self.config.max_rmse_m:
                    T_cam_obj = fitted.T_cam_obj
            track.T_cam_obj_reconstructed = T_cam_obj
            T_cam_obj = T_cam_requested @ T_cam_obj
            if then is not None and then.centroid_cam is not None and track.centroid_cam is not None \
                    and track.last_seen_ns > stamp_ns:
                T_cam_obj[:3, 3] += track.centroid_cam - transform_points(T_cam_requested, then.centroid_cam[None])[0]
            track.reconstruction = replace(obj, object_id=track.track_id, label=track.label or obj.label, T_cam_obj=T_cam_obj)
            track.model = model
            track.mesh_version += 1  # counts reconstructions and installed refined meshes
            track.reconstructed_ns = stamp_ns
            track.pose_ns = max(track.pose_ns, stamp_ns)
            track.degraded_count = 0
            track.failed_ns = None
            updated.append(track)
        return updated

    def install_mesh(self, track_id: str, mesh_obj, based_on_version: int, model: ObjectModel | None = None,
                     grasps_obj: list | None = None) -> Track | None:
        """Replace a track's mesh by a refined one in the same object frame (a fused multi-view model): the pose is
        kept, the tracking model (`model`, built from the mesh when None) replaced, `mesh_version` counts up; the
        grasps become `grasps_obj` (planned on the refined mesh) unless it is None (the old ones are kept). None
        (nothing changed) when the track is gone, has no mesh, or was reconstructed again since `based_on_version`
        (the refined mesh is in an old frame)."""
        track = self.tracks.get(track_id)
        if track is None or track.reconstruction is None or track.mesh_version != based_on_version:
            return None
        model = model or ObjectModel.from_mesh(mesh_obj)
        bounds_obj = np.asarray(mesh_obj.bounds, dtype=np.float64)
        track.reconstruction = replace(track.reconstruction, mesh_obj=mesh_obj, size_obj=bounds_obj[1] - bounds_obj[0],
                                       box_centre_obj=bounds_obj.mean(axis=0))
        if grasps_obj is not None:
            track.reconstruction.grasps_obj = grasps_obj
        track.model = model
        track.mesh_version += 1
        return track

    def cancel_request(self, request: ReconstructionRequest) -> None:
        """A request that will not run (replaced by a newer one): its tracks wait for the next request."""
        for prompt in request.prompts:
            track = self.tracks.get(prompt.object_id)
            if track is not None:
                track.in_flight, track.needs_reconstruction = False, True

    def clear(self) -> list[Track]:
        """Forget every object; the tracks that were known."""
        tracks = list(self.tracks.values())
        self.tracks.clear()
        return tracks


def _move_with_camera(track: Track, T_cam_previous: np.ndarray) -> None:
    """Re-express a track's pose and centroid, which were in the previous frame's camera, in the current camera
    (the object assumed static in the fixed frame until this frame's observation says otherwise)."""
    if track.reconstruction is not None:
        track.reconstruction = replace(track.reconstruction, T_cam_obj=T_cam_previous @ track.reconstruction.T_cam_obj)
    if track.centroid_cam is not None:
        track.centroid_cam = transform_points(T_cam_previous, track.centroid_cam[None])[0]


__all__ = [
    "ASSOCIATION_MODES", "FrameUpdate", "ObjectTracker", "Observation", "ReconstructionRequest", "Track", "TrackerConfig",
    "mask_iou",
]
