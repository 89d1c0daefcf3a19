"""`sam3d-ros eval-tracking`: pose tracking accuracy of the node's tracker on seeded rendered sequences.

Each sequence shows one YCB object sliding and turning on a table (`synthetic.moving_object_sequence`, noisy depth,
ground-truth masks). The node's `ObjectTracker` gets the object's mesh once, from the first frame, then tracks it
through every later frame. Meshes: the backend's reconstruction (what the node does), or `exact`: the true YCB mesh
at its true first pose, which separates tracking error from completion error.

Error of a frame (the measure of the tests): the estimated motion since the first frame applied to the object's true
first centre, against the true motion (cm); and the angle between the estimated and the true rotation since the
first frame (degrees), and the tilt part of that error (how far the estimated motion tips the table's normal).
A rotationally symmetric object (a can) has no observable turn about its axis, so its rotation error measures only
that; its tilt error still counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam3d_ros.geometry.transforms import invert_transform, rotation_angle_between, transform_points
from sam3d_ros.geometry.types import ObjectReconstruction, RGBDFrame
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.tools.synthetic import SyntheticScene, moving_object_sequence
from sam3d_ros.tracking.tracker import ObjectTracker, TrackerConfig

NS_PER_FRAME = 33_333_333  # 30 Hz
MESH_SOURCES = ("backend", "exact")


@dataclass
class SequenceResult:
    """Per-frame errors of one tracked sequence (frames 1..n-1; frame 0 is where the mesh came from)."""

    name: str
    seed: int
    centre_error_cm: list[float] = field(default_factory=list)
    rotation_error_deg: list[float] = field(default_factory=list)
    tilt_error_deg: list[float] = field(default_factory=list)
    lost_frames: int = 0  # frames in which the tracker did not report the object as seen
    reconstructions: int = 0
    travel_cm: float = 0.0  # how far the true centre moved from the first frame to the last

    def within(self, max_cm: float, max_deg: float) -> bool:
        """Every frame tracked within `max_cm` and `max_deg`."""
        return (self.lost_frames == 0 and max(self.centre_error_cm, default=0.0) <= max_cm
                and max(self.rotation_error_deg, default=0.0) <= max_deg)


def _exact_reconstruction(scene: SyntheticScene, object_id: str) -> ObjectReconstruction:
    truth = scene.objects[0]
    mesh = truth.mesh_model.copy()
    return ObjectReconstruction(object_id, truth.name, 1.0, truth.T_cam_obj.copy(), truth.size_model, mesh,
                                scene.mask(truth.object_id), backend="exact")


def track_sequence(
    sequence: list[SyntheticScene], seed: int, pipeline: PerceptionPipeline | None, config: TrackerConfig | None = None,
) -> SequenceResult:
    """Track the single object of `sequence` with a mesh from its first frame (`pipeline` None: the exact mesh)."""
    truth0 = sequence[0].objects[0]
    result = SequenceResult(truth0.name, seed)
    tracker = ObjectTracker(config or TrackerConfig(lost_timeout_s=10.0))

    def observe(scene: SyntheticScene):
        prompts = labels_to_prompts(scene.labels)
        return tracker.observe(scene.depth_m, scene.intrinsics, prompts, [p.mask for p in prompts], [True] * len(prompts))

    update = tracker.update(0, observe(sequence[0]))
    request = tracker.make_request(0, update.to_reconstruct)
    if pipeline is None:
        objects = [_exact_reconstruction(sequence[0], p.object_id) for p in request.prompts]
    else:
        frame = RGBDFrame(sequence[0].rgb, sequence[0].depth_m, sequence[0].intrinsics, "camera", 0)
        objects = pipeline.process(frame, request.prompts).objects
    done = {o.object_id for o in objects}
    tracker.apply_reconstruction(request, objects, [p.object_id for p in request.prompts if p.object_id not in done])
    track_id = str(truth0.object_id)
    if track_id not in tracker.tracks or tracker.tracks[track_id].reconstruction is None:
        result.lost_frames = len(sequence) - 1
        return result
    T_cam_obj0_est = tracker.tracks[track_id].T_cam_obj.copy()
    centre0_cam = truth0.center_cam
    up_cam = sequence[0].support_plane_cam[:3]  # the table's normal
    for k, scene in enumerate(sequence[1:], start=1):
        tracker.update(k * NS_PER_FRAME, observe(scene))
        track = tracker.tracks.get(track_id)
        if track is None or not track.seen_in_last_frame or track.reconstruction is None:
            result.lost_frames += 1
            continue
        truth = scene.objects[0]
        motion_est = track.T_cam_obj @ invert_transform(T_cam_obj0_est)
        motion_true = truth.T_cam_obj @ invert_transform(truth0.T_cam_obj)
        centre_est = transform_points(motion_est, centre0_cam[None])[0]
        result.centre_error_cm.append(float(np.linalg.norm(centre_est - truth.center_cam)) * 100.0)
        result.rotation_error_deg.append(float(np.degrees(rotation_angle_between(motion_est[:3, :3], motion_true[:3, :3]))))
        up_true, up_est = motion_true[:3, :3] @ up_cam, motion_est[:3, :3] @ up_cam
        result.tilt_error_deg.append(float(np.degrees(np.arccos(np.clip(up_true @ up_est, -1.0, 1.0)))))
    track = tracker.tracks.get(track_id)
    result.reconstructions = track.mesh_version if track is not None else 0
    result.travel_cm = float(np.linalg.norm(sequence[-1].objects[0].center_cam - centre0_cam)) * 100.0
    return result


def run_tracking_evaluation(
    names: tuple[str, ...] | list[str], seeds: int = 6, n_frames: int = 30,
    mesh_sources: tuple[str, ...] | list[str] = MESH_SOURCES, backend: str = "depth", progress=None,
) -> dict[str, list[SequenceResult]]:
    """Track every object of `names` on `seeds` sequences of `n_frames` frames each (seeds 0..seeds-1), once per
    mesh source (each sequence is rendered once); returns the results by mesh source."""
    unknown = [source for source in mesh_sources if source not in MESH_SOURCES]
    if unknown or not mesh_sources:
        raise ValueError(f"mesh sources must be some of {MESH_SOURCES}, got {list(mesh_sources)}")
    if seeds < 1 or n_frames < 2:
        raise ValueError("at least 1 seed and 2 frames are needed")
    pipeline = PerceptionPipeline(create_backend(backend)) if "backend" in mesh_sources else None
    results: dict[str, list[SequenceResult]] = {source: [] for source in mesh_sources}
    for name in names:
        for seed in range(seeds):
            sequence = moving_object_sequence([name], n_frames=n_frames, seed=seed)
            for source in mesh_sources:
                results[source].append(track_sequence(sequence, seed, pipeline if source == "backend" else None))
                if progress is not None:
                    progress(source, results[source][-1])
    return results


def format_tracking_evaluation(results: list[SequenceResult], mesh_source: str, max_cm: float = 1.0, max_deg: float = 2.0) -> str:
    """Per object: centre and rotation error over all tracked frames (median, p90, max), sequences within bounds."""
    header = (f"{'object':24s} {'seqs':>4s} {'travel':>7s} {'ctr med':>8s} {'ctr p90':>8s} {'ctr max':>8s} "
              f"{'rot med':>8s} {'rot p90':>8s} {'rot max':>8s} {'tilt max':>8s} {'lost':>5s} {'within':>7s}")
    units = (f"{'':24s} {'':>4s} {'cm':>7s} {'cm':>8s} {'cm':>8s} {'cm':>8s} {'deg':>8s} {'deg':>8s} {'deg':>8s} "
             f"{'deg':>8s} {'frames':>5s}")
    lines = [f"pose tracking, meshes: {mesh_source}; errors of the motion since the first frame, all frames",
             header, units]
    groups: dict[str, list[SequenceResult]] = {}
    for result in results:
        groups.setdefault(result.name, []).append(result)
    groups["all"] = results
    for name, group in groups.items():
        centre = np.concatenate([r.centre_error_cm for r in group if r.centre_error_cm] or [np.array([np.nan])])
        rotation = np.concatenate([r.rotation_error_deg for r in group if r.rotation_error_deg] or [np.array([np.nan])])
        tilt = np.concatenate([r.tilt_error_deg for r in group if r.tilt_error_deg] or [np.array([np.nan])])
        within = sum(r.within(max_cm, max_deg) for r in group)
        lines.append(
            f"{name:24s} {len(group):4d} {np.median([r.travel_cm for r in group]):7.1f} "
            f"{np.median(centre):8.2f} {np.percentile(centre, 90):8.2f} {np.max(centre):8.2f} "
            f"{np.median(rotation):8.2f} {np.percentile(rotation, 90):8.2f} {np.max(rotation):8.2f} {np.max(tilt):8.2f} "
            f"{sum(r.lost_frames for r in group):5d} {within:3d}/{len(group):<3d}"
        )
    lines.append(f"within: sequences tracked in every frame within {max_cm:g} cm and {max_deg:g} degrees; "
                 "travel: median distance the object's centre moved; tilt: the part of the rotation error that tips "
                 "the table's normal (all a rotationally symmetric object's error can show)")
    return "\n".join(lines)
