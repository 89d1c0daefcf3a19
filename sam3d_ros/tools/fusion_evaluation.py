"""`sam3d-ros eval-fusion`: how multi-view fusion completes object meshes, on rendered sequences, per object.

Two kinds of sequence of one YCB object each (noisy depth, ground-truth masks), `views` frames:
- `sweep`: the object stands still; the camera circles it by `sweep_deg` (150) at 0.6 m, 35 degrees up; the tracker
  gets the camera's pose in the world each frame (what TF gives the node for a wrist camera or a moving base);
- `turntable`: the camera stands still; the object turns by `sweep_deg` about its vertical axis; no camera pose.

The node's pipeline reconstructs the first frame (the single-view result); the node's `ObjectTracker` then tracks the
object through every frame with its current mesh; each frame's masked depth is fused (`ObjectFusion`) at the
*tracked* pose (not the true one: tracking error counts), with the tracker's fit and the support plane estimated
from the frame, like the node. The tracker's mesh is swapped for the fused one every `swap_every` views (the node
swaps at most once a second). After 1, 5, 15 and 45 views, fused and single-view meshes are scored at the tracked
pose against the true mesh in that frame: F1@5mm and Chamfer (`evaluation.chamfer_and_fscore`, 5000 samples each)
and the centre error of the mesh's bounding box: its distance to the true mesh's bounding-box centre along the same
axes (`evaluation.true_centre_in_axes`; the box along the YCB model's axes is kept beside it, `centre_model_axes_cm`).

Beside them, what the sequence's views could show at all (`observability`, from the true mesh): the fraction of the
true surface some view sees, and the F1 of the views' hull (the true mesh with every place no view saw taken as the
object's: what fusing exactly what was seen, with a "solid" guess for the rest, would score). Where the fused F1 is
near the hull's, what is left is the guess about space no view saw.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import trimesh

from sam3d_ros.geometry.transforms import transform_points
from sam3d_ros.geometry.types import RGBDFrame
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.fusion import FusionConfig, ObjectFusion
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline, support_plane_around
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.tools.evaluation import chamfer_and_fscore, surface_samples, true_centre_in_axes
from sam3d_ros.tools.observability import CameraView, Observability
from sam3d_ros.tools.synthetic import SyntheticScene, camera_sweep_sequence, turntable_sequence
from sam3d_ros.tracking.tracker import ObjectTracker, TrackerConfig

MODES = ("sweep", "turntable")
CHECKPOINTS = (1, 5, 15, 45)
NS_PER_FRAME = 33_333_333
TARGET_F1_MEDIAN = 0.85
TARGET_F1_MIN = 0.70
TARGET_CENTRE_CM = 1.0


@dataclass
class Score:
    f1: float = math.nan
    chamfer_mm: float = math.nan
    centre_cm: float = math.nan  # box centre to the true box's centre along the same axes
    centre_model_axes_cm: float = math.nan  # box centre to the true box's centre along the YCB model's axes


@dataclass
class FusionRun:
    """One object in one sequence: scores by number of views, fused and single-view."""

    name: str
    mode: str
    fused: dict[int, Score] = field(default_factory=dict)
    single: dict[int, Score] = field(default_factory=dict)
    skipped_views: int = 0
    lost_frames: int = 0
    bytes_used: int = 0
    watertight: bool = False
    seen_fraction: float = math.nan  # of the true surface, seen by some view of the sequence
    hull_f1: float = math.nan  # F1@5mm of the views' hull (see the module docstring)
    error: str = ""


def _score(mesh_obj: trimesh.Trimesh, T_cam_obj: np.ndarray, scene: SyntheticScene) -> Score:
    truth = scene.objects[0]
    chamfer, f1 = chamfer_and_fscore(surface_samples(mesh_obj, T_cam_obj), surface_samples(truth.mesh_model, truth.T_cam_obj))
    T_cam_box = np.asarray(T_cam_obj, dtype=np.float64).copy()
    T_cam_box[:3, 3] = transform_points(T_cam_obj, mesh_obj.bounds.mean(axis=0)[None])[0]
    centre_cam = T_cam_box[:3, 3]
    return Score(f1, chamfer * 1000.0, float(np.linalg.norm(centre_cam - true_centre_in_axes(truth, T_cam_box))) * 100.0,
                 float(np.linalg.norm(centre_cam - truth.center_cam)) * 100.0)


def fuse_sequence(
    sequence: list[SyntheticScene], mode: str, pipeline: PerceptionPipeline, config: FusionConfig | None = None,
    swap_every: int = 5, checkpoints: tuple[int, ...] = CHECKPOINTS,
) -> FusionRun:
    """Reconstruct the first frame, then track and fuse every frame (see the module docstring)."""
    run = FusionRun(sequence[0].objects[0].name, mode)
    tracker = ObjectTracker(TrackerConfig(lost_timeout_s=10.0))
    use_camera_pose = mode == "sweep"

    def observe(scene: SyntheticScene):
        prompts = labels_to_prompts(scene.labels)
        return prompts, tracker.observe(scene.depth_m, scene.intrinsics, prompts, [p.mask for p in prompts], [True] * len(prompts))

    first = sequence[0]
    T_fixed_cam = (lambda scene: np.linalg.inv(scene.T_cam_world)) if use_camera_pose else (lambda scene: None)
    _, observations = observe(first)
    update = tracker.update(0, observations, T_fixed_cam=T_fixed_cam(first))
    request = tracker.make_request(0, update.to_reconstruct)
    objects = pipeline.process(RGBDFrame(first.rgb, first.depth_m, first.intrinsics, "camera", 0), request.prompts).objects
    tracker.apply_reconstruction(request, objects, [p.object_id for p in request.prompts if p.object_id not in {o.object_id for o in objects}])
    track_id = str(first.objects[0].object_id)
    track = tracker.tracks.get(track_id)
    if track is None or track.reconstruction is None:
        run.error = "no single-view reconstruction"
        return run
    single_mesh = track.reconstruction.mesh_obj
    fusion = ObjectFusion(single_mesh, config)
    for k, scene in enumerate(sequence):
        prompts, observations = observe(scene)
        if k > 0:
            tracker.update(k * NS_PER_FRAME, observations, T_fixed_cam=T_fixed_cam(scene))
        track = tracker.tracks.get(track_id)
        if track is None or track.reconstruction is None or (k > 0 and not track.seen_in_last_frame):
            run.lost_frames += 1
            continue
        plane_cam = support_plane_around(scene.depth_m, scene.intrinsics, prompts)
        result = fusion.integrate(scene.depth_m, scene.mask(1), scene.intrinsics, track.T_cam_obj, rgb=scene.rgb,
                                  fitness=track.fitness if k > 0 else None, rmse_m=track.rmse_m if k > 0 else None,
                                  support_plane_cam=plane_cam)
        run.skipped_views += not result.accepted
        views = k + 1
        if views in checkpoints or views % swap_every == 0:
            fused = fusion.mesh()
            if views % swap_every == 0:
                tracker.install_mesh(track_id, fused, track.mesh_version)
            if views in checkpoints:
                run.fused[views] = _score(fused, track.T_cam_obj, scene)
                run.single[views] = _score(single_mesh, track.T_cam_obj, scene)
                run.watertight = bool(fused.is_watertight)
    run.bytes_used = fusion.bytes_used
    run.seen_fraction, run.hull_f1 = _observability(sequence)
    return run


def _observability(sequence: list[SyntheticScene]) -> tuple[float, float]:
    """(fraction of the true surface some view of `sequence` sees, F1@5mm of the views' hull)."""
    truth = sequence[0].objects[0]
    views = [CameraView(scene.objects[0].T_cam_obj, scene.intrinsics, scene.support_plane_cam) for scene in sequence]
    observability = Observability(truth.mesh_model, views)
    hull_f1 = _score(observability.views_hull(), truth.T_cam_obj, sequence[0]).f1
    return observability.seen_surface_fraction(), hull_f1


def run_fusion_evaluation(
    names: tuple[str, ...] | list[str], modes: tuple[str, ...] | list[str] = MODES, views: int = 45,
    sweep_deg: float = 150.0, seed: int = 0, backend: str = "depth", config: FusionConfig | None = None,
    progress: Callable[[FusionRun], None] | None = None,
) -> list[FusionRun]:
    """One sequence per object and mode (seeded); the runs in order."""
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be some of {MODES}, got {list(modes)}")
    if views < 1:
        raise ValueError("at least one view is needed")
    pipeline = PerceptionPipeline(create_backend(backend))
    checkpoints = tuple(c for c in CHECKPOINTS if c <= views) + ((views,) if views not in CHECKPOINTS else ())
    runs = []
    for index, name in enumerate(names):
        for mode in modes:
            if mode == "sweep":
                sequence = camera_sweep_sequence([name], views, sweep_deg, seed=seed + index)
            else:
                sequence = turntable_sequence(name, views, sweep_deg, seed=seed + index)
            try:
                run = fuse_sequence(sequence, mode, pipeline, config, checkpoints=checkpoints)
            except Exception as exc:  # one object's failure is reported, never loses the others
                run = FusionRun(name, mode, error=f"{type(exc).__name__}: {exc}")
            runs.append(run)
            if progress is not None:
                progress(run)
    return runs


def format_fusion_evaluation(runs: list[FusionRun], part: str) -> str:
    """Per mode: one row per object (F1, Chamfer, centre at each checkpoint, fused vs single), then the median."""
    lines = []
    for mode in MODES:
        group = [r for r in runs if r.mode == mode]
        if not group:
            continue
        checkpoints = sorted({c for r in group for c in r.fused})
        lines.append(f"eval-fusion, {part} objects, {mode}: F1@5mm / Chamfer mm / centre cm after N views "
                     "(fused; single-view in brackets), tracked poses; centre: to the true box along the mesh's axes")
        header = (f"{'object':26s}" + "".join(f" {'N=' + str(c):>24s}" for c in checkpoints)
                  + f" {'skip':>4s} {'MB':>5s} {'seen':>4s} {'hull':>4s}")
        lines.append(header)
        for r in group:
            if r.error:
                lines.append(f"{r.name:26s} failed: {r.error}")
                continue
            cells = "".join(
                f" {r.fused[c].f1:4.2f}({r.single[c].f1:4.2f}) {r.fused[c].chamfer_mm:4.1f} {r.fused[c].centre_cm:4.1f}cm"
                if c in r.fused else f" {'lost':>24s}" for c in checkpoints
            )
            lines.append(f"{r.name:26s}{cells} {r.skipped_views:4d} {r.bytes_used / 1e6:5.1f} {r.seen_fraction:4.2f} "
                         f"{r.hull_f1:4.2f}")
        last = checkpoints[-1] if checkpoints else None
        if last is not None:
            f1 = [r.fused[last].f1 if last in r.fused else 0.0 for r in group]
            f1_single = [r.single[last].f1 if last in r.single else 0.0 for r in group]
            chamfer = [r.fused[last].chamfer_mm if last in r.fused else math.inf for r in group]
            centre = [r.fused[last].centre_cm if last in r.fused else math.inf for r in group]
            centre_model = [r.fused[last].centre_model_axes_cm if last in r.fused else math.inf for r in group]
            lines.append(
                f"{mode} after {last} views, {len(group)} objects: F1 median {np.median(f1):.2f} (single-view "
                f"{np.median(f1_single):.2f}), min {min(f1):.2f}; Chamfer median {np.median(chamfer):.1f} mm; centre "
                f"median {np.median(centre):.2f} cm, max {max(centre):.2f} cm; objects with F1 >= {TARGET_F1_MIN}: "
                f"{sum(f >= TARGET_F1_MIN for f in f1)}/{len(f1)}, centre <= {TARGET_CENTRE_CM:g} cm: "
                f"{sum(c <= TARGET_CENTRE_CM for c in centre)}/{len(centre)} (along the YCB model's axes, the "
                f"earlier metric: {sum(c <= TARGET_CENTRE_CM for c in centre_model)}/{len(centre)}, max "
                f"{max(centre_model):.2f} cm)"
            )
            scored = [r for r in group if not r.error and last in r.fused]
            if scored:
                hull_below = [r.name for r in scored if r.hull_f1 < TARGET_F1_MIN]
                room = [f"{r.name} {r.fused[last].f1:.2f}/{r.hull_f1:.2f}" for r in scored
                        if r.fused[last].f1 < r.hull_f1 - 0.05]
                lines.append(
                    f"what the views could show: true surface seen by some view, median "
                    f"{np.median([r.seen_fraction for r in scored]):.2f}; views' hull F1 median "
                    f"{np.median([r.hull_f1 for r in scored]):.2f} (the true mesh with all space no view saw taken as "
                    f"the object's); views' hull F1 < {TARGET_F1_MIN}: {', '.join(hull_below) or 'none'}; fused F1 more "
                    f"than 0.05 below the views' hull (fused/hull): {', '.join(room) or 'none'}"
                )
        lines.append("")
    return "\n".join(lines)
