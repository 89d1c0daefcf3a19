"""`sam3d-ros eval-grasps`: grasps planned on reconstructed meshes, executed in MuJoCo on the true YCB meshes.

Scenes are rendered (tools/synthetic.py) with objects of one part of the tuning / held-out split (tools/object_split.py)
only; the pipeline (depth backend + grasp planner, exactly as `sam3d-ros reconstruct` runs it) sees the noisy RGB-D
and the ground-truth masks; each object's top grasps go to `grasp_sim.GraspSimulation` on the true meshes at their
true poses, the scene's other objects included. A baseline in the same run: one top-down grasp at the reconstructed
box's centre, closing across its narrower horizontal side (what a planner without the mesh would do).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sam3d_ros.geometry.grasps import GraspPlanner
from sam3d_ros.geometry.gripper import GripperParams
from sam3d_ros.geometry.transforms import invert_transform, make_transform
from sam3d_ros.geometry.types import ObjectReconstruction, RGBDFrame
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.tools import object_split
from sam3d_ros.tools.grasp_sim import GraspSimulation
from sam3d_ros.tools.synthetic import NoiseModel, load_ycb_mesh, random_tabletop_scene

TARGET_TOP1 = 0.90
OUTCOMES = ("success", "collision", "miss", "slip", "no grasp", "not reconstructed")


@dataclass
class ObjectTrials:
    """The simulated grasps of one object instance."""

    part: str
    name: str
    category: str
    seed: int
    graspable: bool  # some extent of the true mesh is below the gripper's max opening
    fits_from_table: bool = False  # its resting footprint's narrowest width is below it: jaws closing parallel to the table fit
    outcomes: list[str] = field(default_factory=list)  # of the top grasps, best first ("no grasp" when none)
    baseline: str = "no grasp"
    n_grasps: int = 0
    details: list[str] = field(default_factory=list)  # what a collision hit, per simulated grasp

    @property
    def top1(self) -> bool:
        return bool(self.outcomes) and self.outcomes[0] == "success"

    @property
    def top5(self) -> bool:
        return "success" in self.outcomes[:5]


def baseline_grasp(obj: ObjectReconstruction, up_cam: np.ndarray, gripper: GripperParams) -> tuple[np.ndarray, float] | None:
    """(T_cam_grasp, width) from above at the oriented box's centre across its narrower horizontal side; None when
    that side is wider than the opening."""
    R = obj.T_cam_obj[:3, :3]
    vertical = int(np.argmax(np.abs(R.T @ up_cam)))
    horizontal = [a for a in range(3) if a != vertical]
    across = min(horizontal, key=lambda a: obj.size_obj[a])
    width = float(obj.size_obj[across])
    if width > gripper.max_opening_m:
        return None
    z = -up_cam / np.linalg.norm(up_cam)
    y = R[:, across] - (R[:, across] @ z) * z
    y /= np.linalg.norm(y)
    height = float(obj.size_obj[vertical])
    depth = min(gripper.finger_length_m - gripper.pad_length_m, height / 2)  # TCP this far below the top
    centre = obj.T_cam_obj[:3, 3]  # depth backend: object frame at the box centre
    position = centre + (height / 2 - depth) * (-z)
    return make_transform(np.column_stack([np.cross(y, z), y, z]), position), width


def footprint_width(vertices_obj: np.ndarray, T_cam_obj: np.ndarray, plane_cam: np.ndarray) -> float:
    """Narrowest width (m) of the object's footprint as it rests: its vertices projected onto the support plane,
    the smallest distance between two parallel lines that enclose them (over the convex hull's edge directions).
    Jaws that close parallel to the table can take the object only if this is below their opening."""
    from scipy.spatial import ConvexHull

    points_cam = vertices_obj @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
    normal = np.asarray(plane_cam[:3], dtype=float) / np.linalg.norm(plane_cam[:3])
    a = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    points_ab = np.column_stack([points_cam @ a, points_cam @ np.cross(normal, a)])
    hull = points_ab[ConvexHull(points_ab).vertices]
    edges = np.roll(hull, -1, axis=0) - hull
    edges /= np.linalg.norm(edges, axis=1, keepdims=True)
    across = np.column_stack([-edges[:, 1], edges[:, 0]])  # unit normals of the hull's edges
    spans = hull @ across.T  # (points, edges)
    return float(np.min(spans.max(axis=0) - spans.min(axis=0)))


def run_grasp_evaluation(
    part: str, n_scenes: int = 10, seed: int = 0, objects_per_scene: int = 3, top_k: int = 5,
    gripper: GripperParams | None = None, backend: str = "depth",
    progress: Callable[[str], None] | None = None,
) -> list[ObjectTrials]:
    """Simulate the top `top_k` grasps (and the baseline) of every object of `n_scenes` scenes of `part`."""
    gripper = gripper or GripperParams()
    names = object_split.objects(part)
    pipeline = PerceptionPipeline(create_backend(backend), grasp_planner=GraspPlanner(gripper, max_grasps=top_k))
    rows: list[ObjectTrials] = []
    for k in range(n_scenes):
        scene_seed = seed + k
        start = time.perf_counter()
        n_objects = objects_per_scene
        while True:
            try:
                scene = random_tabletop_scene(scene_seed, n_objects, (0.5, 0.9), names=names, noise=NoiseModel(),
                                              max_occlusion=0.4)
                break
            except RuntimeError:
                if n_objects <= 1:
                    raise
                n_objects -= 1
        result = pipeline.process(RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), labels_to_prompts(scene.labels))
        reconstructed = {o.object_id: o for o in result.objects}
        T_world_cam = invert_transform(scene.T_cam_world)
        placed = [(o.name, T_world_cam @ o.T_cam_obj) for o in scene.objects]
        sim = GraspSimulation(placed, gripper)
        plane = result.support_plane_cam if result.support_plane_cam is not None else scene.support_plane_cam
        for index, truth in enumerate(scene.objects):
            extents = load_ycb_mesh(truth.name).extents
            row = ObjectTrials(part, truth.name, object_split.category_of(truth.name), scene_seed,
                               bool(min(extents) < gripper.max_opening_m),
                               bool(footprint_width(truth.mesh_model.vertices, truth.T_cam_obj, scene.support_plane_cam)
                                    < gripper.max_opening_m))
            rec = reconstructed.get(str(truth.object_id))
            if rec is None:
                row.outcomes = ["not reconstructed"]
                row.baseline = "not reconstructed"
                rows.append(row)
                continue
            grasps = rec.grasps_in(T_world_cam @ rec.T_cam_obj)
            row.n_grasps = len(grasps)
            trials = [sim.run(index, T, width) for T, width, _ in grasps[:top_k]]
            row.outcomes = [t.outcome for t in trials] or ["no grasp"]
            row.details = [t.detail for t in trials]
            base = baseline_grasp(rec, plane[:3], gripper)
            if base is not None:
                row.baseline = sim.run(index, T_world_cam @ base[0], base[1]).outcome
            rows.append(row)
        if progress is not None:
            line = ", ".join(f"{r.name} {r.outcomes[0]}" for r in rows[-len(scene.objects):])
            progress(f"{part} scene {k + 1}/{n_scenes} (seed {scene_seed}): {line} ({time.perf_counter() - start:.1f} s)")
    return rows


def _rate(flags: list[bool]) -> str:
    return f"{100 * np.mean(flags):5.1f} %" if flags else "    -  "


def format_grasp_report(rows: list[ObjectTrials]) -> str:
    """Per part and category: top-1, best-of-top-5 and baseline success, failure causes of the top-1 grasp."""
    lines = []
    for part in (object_split.HELD_OUT, object_split.TUNING):
        in_part = [r for r in rows if r.part == part]
        if not in_part:
            continue
        graspable = [r for r in in_part if r.graspable]
        fitting = [r for r in graspable if r.fits_from_table]
        lines.append(f"{part}: {len(in_part)} object instances; {len(fitting)} fit the jaws as they rest (footprint "
                     f"narrower than the max opening: the target's set), {len(graspable)} have some extent below it")
        lines.append(f"  {'category':<12} {'n':>4} {'top-1':>8} {'top-5':>8} {'baseline':>9}   top-1 failures")
        groups = [(c, [r for r in fitting if r.category == c]) for c in object_split.CATEGORIES]
        for category, group in groups + [("all fitting", fitting), ("some extent", graspable)]:
            if not group:
                continue
            causes = {o: sum(r.outcomes[0] == o for r in group) for o in OUTCOMES[1:]}
            cause_text = ", ".join(f"{o} {n}" for o, n in causes.items() if n) or "-"
            lines.append(f"  {category:<12} {len(group):>4} {_rate([r.top1 for r in group]):>8} "
                         f"{_rate([r.top5 for r in group]):>8} {_rate([r.baseline == 'success' for r in group]):>9}   {cause_text}")
        if part == object_split.HELD_OUT and fitting:
            top1 = float(np.mean([r.top1 for r in fitting]))
            lines.append(f"  target: held-out top-1 on objects that fit {100 * top1:.1f} % (>= {100 * TARGET_TOP1:.0f} %): "
                         f"{'PASS' if top1 >= TARGET_TOP1 else 'FAIL'}")
        lying = sorted({r.name for r in graspable if not r.fits_from_table})
        if lying:
            lines.append(f"  some extent fits, but not across the footprint as it rests (its narrow side vertical): {', '.join(lying)}")
        too_wide = sorted({r.name for r in in_part if not r.graspable})
        if too_wide:
            ungraspable = [r for r in in_part if not r.graspable]
            lines.append(f"  not graspable (every extent >= max opening): {', '.join(too_wide)}; "
                         f"{sum(r.n_grasps > 0 for r in ungraspable)}/{len(ungraspable)} got grasps, "
                         f"{sum(r.top1 for r in ungraspable)} top-1 succeeded")
        per_object = {}
        for r in graspable:
            per_object.setdefault(r.name, []).append(r.top1)
        weak = [f"{n} {sum(v)}/{len(v)}" for n, v in sorted(per_object.items()) if not all(v)]
        if weak:
            lines.append(f"  objects with a failed top-1: {', '.join(weak)}")
    return "\n".join(lines)
