"""Overhead of the SAM 3D worker path per object (a benchmark, not a test).

Everything the `sam3d` backend adds around the model itself, for a 640x480 RGB-D frame: point map, encoding,
ZeroMQ transport both ways through a real worker process on 127.0.0.1, the worker's decoding and output
conversion, the exact frame conversion and the depth refinement. The model is the ground-truth stand-in with its
outputs cached (zero cost); the time the worker reports for the model call is subtracted.

    python -c "from sam3d_ros.tools.sam3d_bench import run_worker_benchmark, format_worker_bench as f; \\
               print(f(run_worker_benchmark()))"
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sam3d_ros.geometry.types import RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.sam3d import Sam3dBackend
from sam3d_ros.sam3d.standin import write_standin_config
from sam3d_ros.sam3d.worker import spawn_worker
from sam3d_ros.tools.synthetic import NoiseModel, random_tabletop_scene

TARGET_MS = 30.0


@dataclass
class WorkerBenchResult:
    """Per-object timings in milliseconds (medians over every object of every repeat)."""

    overhead_ms_median: float  # everything but the model call
    overhead_ms_p90: float
    parts_ms_median: dict[str, float] = field(default_factory=dict)
    model_ms_median: float = 0.0  # the stand-in's own time (excluded from the overhead)
    samples: int = 0
    n_objects: int = 0
    refine: bool = True
    perturbed: bool = False


def run_worker_benchmark(n_objects: int = 5, repeats: int = 10, seed: int = 0, refine: bool = True,
                         perturb: bool = False, noise: bool = True) -> WorkerBenchResult:
    """Median per-object overhead of the worker path on one noisy 640x480 scene with `n_objects` YCB objects,
    reconstructed `repeats` times after one warm-up pass. `perturb` makes the stand-in's pose and scale wrong
    (+-30 %, 3 cm) so that the refinement has work to do."""
    scene = random_tabletop_scene(seed, n_objects=n_objects, distance_range=(0.5, 1.0),
                                  noise=NoiseModel() if noise else None)
    options = {"perturb": {"scale": 0.3, "translation_m": 0.03, "seed": seed}} if perturb else {}
    with tempfile.TemporaryDirectory(prefix="sam3d_bench_") as folder:
        config = write_standin_config(
            Path(folder) / "scene.json",
            [(o.object_id, o.T_cam_obj, o.mesh_model.vertices, o.mesh_model.faces) for o in scene.objects],
            labels=scene.labels, intrinsics=scene.intrinsics, **options,
        )
        process, endpoint = spawn_worker(config, "sam3d_ros.sam3d.standin:GroundTruthModel",
                                         extra_args=("--preload", "--log-level", "WARNING"))
        backend = Sam3dBackend(worker=endpoint, timeout_s=30, refine=refine)
        try:
            frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics)
            jobs = []
            for obj in scene.objects:
                mask = scene.mask(obj.object_id)
                jobs.append((mask, SceneContext(support_plane_cam=scene.support_plane_cam,
                                                others_mask=(scene.labels > 0) & ~mask)))
            timings = []
            for repeat in range(repeats + 1):
                for mask, context in jobs:
                    info = backend.reconstruct(frame, mask, context).info
                    if repeat > 0:  # the first pass warms caches (stand-in outputs, imports, sockets)
                        timings.append(dict(info["timings_ms"], model_ms=info["inference_s"] * 1e3))
        finally:
            backend.close()
            process.terminate()
            process.wait(timeout=10)
            process.stdout.close()
    overhead = np.array([t["overhead_ms"] for t in timings])
    parts = {
        "point map": np.median([t["pointmap_ms"] for t in timings]),
        "encode + transport + worker (model excluded)": np.median([t["roundtrip_ms"] - t["model_ms"] for t in timings]),
        "conversion": np.median([t["convert_ms"] for t in timings]),
    }
    if refine:
        parts["refinement"] = np.median([t["refine_ms"] for t in timings])
    return WorkerBenchResult(float(np.median(overhead)), float(np.percentile(overhead, 90)),
                             {k: float(v) for k, v in parts.items()},
                             float(np.median([t["model_ms"] for t in timings])), len(timings), n_objects, refine,
                             perturb)


def format_worker_bench(result: WorkerBenchResult) -> str:
    """A short report with the target."""
    repeats = result.samples // max(result.n_objects, 1)
    lines = [f"sam3d worker path, 640x480 RGB-D, {result.n_objects} objects x {repeats} repeats, refinement "
             f"{'on' if result.refine else 'off'}, stand-in {'perturbed' if result.perturbed else 'exact'}",
             f"overhead per object: median {result.overhead_ms_median:.1f} ms, p90 {result.overhead_ms_p90:.1f} ms"]
    lines += [f"  {name}: {ms:.1f} ms (median)" for name, ms in result.parts_ms_median.items()]
    lines.append(f"  (stand-in model call, excluded: {result.model_ms_median:.1f} ms)")
    ok = result.overhead_ms_median <= TARGET_MS
    lines.append(f"target: median <= {TARGET_MS:.0f} ms per object: {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)
