"""`sam3d-ros bench`: time and memory of the first reconstruction of a 640x480 frame (a benchmark, not a test)."""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np

from sam3d_ros.geometry.grasps import GraspPlanner
from sam3d_ros.geometry.types import RGBDFrame
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline, plan_grasps
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.tools.synthetic import NoiseModel, random_tabletop_scene


@dataclass
class BenchRow:
    """Timing of one scene size."""

    n_objects: int
    frame_ms_median: float
    frame_ms_p90: float
    per_object_ms_median: float
    repeats: int
    grasp_ms_median: float = float("nan")  # grasp candidates of one object (its share of the frame's collision models included)
    grasp_ms_p90: float = float("nan")
    grasp_cpu_ms_median: float = float("nan")  # the planning thread's CPU time (what a shared machine cannot steal)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_benchmark(object_counts=(1, 5, 10), repeats: int = 9, backend: str = "depth", seed: int = 0) -> list[BenchRow]:
    """Median time of `PerceptionPipeline.process` (support plane + every object) per frame, `repeats` runs on
    `repeats` different noisy scenes of each size; the first, warm-up call is not counted. Grasp planning (the
    pipeline's `plan_grasps`, Franka Hand) is timed per object after each frame, apart from the frame time."""
    pipeline = PerceptionPipeline(create_backend(backend))
    planner = GraspPlanner()
    rows = []
    for n_objects in object_counts:
        frames = []
        for k in range(repeats):
            scene = random_tabletop_scene(
                seed + 1000 * n_objects + k, n_objects=n_objects, distance_range=(0.5, 1.1), noise=NoiseModel(),
                max_occlusion=0.6,
            )
            frames.append((RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), labels_to_prompts(scene.labels)))
        pipeline.process(*frames[0])  # warm-up (imports, caches)
        times_ms, grasp_ms, grasp_cpu_ms = [], [], []
        for frame, prompts in frames:
            start = time.perf_counter()
            result = pipeline.process(frame, prompts)
            times_ms.append((time.perf_counter() - start) * 1e3)
            if len(result.objects) != n_objects:
                raise RuntimeError(f"benchmark scene lost objects: {result.errors}")
            plan_grasps(planner, result.objects, result.support_plane_cam)
            grasp_ms += [obj.info["grasps_ms"] for obj in result.objects]
            grasp_cpu_ms += [obj.info["grasps_cpu_ms"] for obj in result.objects]
        rows.append(BenchRow(n_objects, float(np.median(times_ms)), float(np.percentile(times_ms, 90)),
                             float(np.median(times_ms)) / n_objects, repeats, float(np.median(grasp_ms)),
                             float(np.percentile(grasp_ms, 90)), float(np.median(grasp_cpu_ms))))
    return rows


def format_bench(rows: list[BenchRow], backend: str) -> str:
    """A table of the rows plus peak memory and the targets."""
    lines = [f"first reconstruction, backend '{backend}', 640x480 noisy RGB-D, ground-truth masks",
             f"{'objects':>8} {'frame ms (median)':>18} {'frame ms (p90)':>15} {'per object ms':>14} {'runs':>5}"
             f" {'grasps ms/object (median)':>26} {'(p90)':>6} {'(CPU)':>6}"]
    for r in rows:
        lines.append(f"{r.n_objects:>8} {r.frame_ms_median:>18.0f} {r.frame_ms_p90:>15.0f} {r.per_object_ms_median:>14.0f} {r.repeats:>5}"
                     f" {r.grasp_ms_median:>26.0f} {r.grasp_ms_p90:>6.0f} {r.grasp_cpu_ms_median:>6.0f}")
    lines.append(f"peak resident memory of the process: {peak_rss_mb():.0f} MB")
    by_n = {r.n_objects: r for r in rows}
    per_object = np.median([r.per_object_ms_median for r in rows])
    lines.append(f"targets: per object median {per_object:.0f} ms (<= 100): {'PASS' if per_object <= 100 else 'FAIL'}")
    if 5 in by_n:
        ok = by_n[5].frame_ms_median <= 300
        lines.append(f"         5 objects per frame {by_n[5].frame_ms_median:.0f} ms (<= 300): {'PASS' if ok else 'FAIL'}")
    grasp = float(np.median([r.grasp_ms_median for r in rows]))
    grasp_cpu = float(np.median([r.grasp_cpu_ms_median for r in rows]))
    lines.append(f"         grasp candidates per object median {grasp:.0f} ms (<= 50): {'PASS' if grasp <= 50 else 'FAIL'}"
                 f" (CPU time {grasp_cpu:.0f} ms)")
    lines.append(f"         peak memory {peak_rss_mb():.0f} MB (<= 1024): {'PASS' if peak_rss_mb() <= 1024 else 'FAIL'}")
    return "\n".join(lines)
