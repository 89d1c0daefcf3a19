"""`sam3d-ros worker --preflight`: the worker's first contact with the model, checked before it serves anyone.

1. Environment, all problems at once in one line: Python, torch importable with a visible CUDA device, the
   checkpoint folder (the files `pipeline.yaml` names), `CONDA_PREFIX` and the checkout (the official
   `notebook/inference.py` reads `CONDA_PREFIX` at import and the pipeline hard-codes "cuda"). A custom
   `--inference` model is only told what is there: it may not need torch or a GPU.
2. Model load, timed.
3. One tiny inference (128 x 128 image, a disc mask, a metric point map in the PyTorch3D convention, i.e. the way
   the backend calls), timed per stage of the official pipeline, with the peak GPU memory.
4. The output against the contract of `frames` / `worker.result_arrays`: `rotation` (1, 4) w, x, y, z,
   `translation` (1, 3), `scale` (1, 3) isotropic and positive, floating point; a Y-up glb mesh in the unit cube
   (or voxels, with the reason there is no mesh).

What was found goes to stdout, one `preflight: ...` line per item; a failure is one line on stderr
(`sam3d-ros worker: preflight failed: ...`), and `run_preflight` returns False. Needs numpy only (torch when the
model does).
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.sam3d import frames

#: What the official code was read at and its environment (models/README.md).
OFFICIAL_COMMIT = "cf06676"
OFFICIAL_PYTHON = (3, 11)
OFFICIAL_MIN_GPU_GIB = 32
#: Largest |coordinate| of a glb vertex accepted as "in the unit cube" (the decoders work on [-0.5, 0.5]^3).
UNIT_CUBE_LIMIT = 0.55
_PATH_KEY = re.compile(r"^\s*(\w+_(?:ckpt|config)_path)\s*:\s*['\"]?([^'\"#\s]*)", re.MULTILINE)


class PreflightError(RuntimeError):
    """A check failed; the message says what in one line."""


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def _commit_of(repo: Path) -> str | None:
    """The checked-out commit of a git checkout (read from .git, no git needed), or None."""
    git = repo / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def _check_checkpoints(config: Path, official: bool, found: list[str], problems: list[str]) -> None:
    if not config.is_file():
        problems.append(f"SAM 3D config {config} not found (get checkpoints/hf/pipeline.yaml from the gated "
                        "facebook/sam-3d-objects model repository)")
        return
    if not official:
        found.append(f"config {config}")
        return
    try:
        text = config.read_text(errors="replace")
    except OSError as exc:
        problems.append(f"cannot read {config}: {exc.strerror}")
        return
    named = [(key, value) for key, value in _PATH_KEY.findall(text) if value and value.lower() not in ("null", "none", "~")]
    checkpoints = [(key, config.parent / value) for key, value in named if key.endswith("_ckpt_path")]
    if not checkpoints:
        problems.append(f"{config} names no *_ckpt_path: not the pipeline.yaml of facebook/sam-3d-objects")
        return
    missing = [str(config.parent / value) for _, value in named if not (config.parent / value).exists()]
    if missing:
        problems.append(f"{len(missing)} file(s) named in {config.name} missing from {config.parent}: "
                        f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} (incomplete download?)")
        return
    size = sum(path.stat().st_size for _, path in checkpoints if path.is_file())
    found.append(f"checkpoint folder {config.parent}: {len(checkpoints)} checkpoints named in {config.name}, "
                 f"{_gib(size)}")


def check_environment(config_path: str, official: bool, repo: str | None = None
                      ) -> tuple[list[str], list[str], Any]:
    """(what was found, problems, the torch module or None). Problems only for what the official pipeline needs
    when `official`; for another model, missing torch or GPU are reported as found, not as problems."""
    found: list[str] = []
    problems: list[str] = []
    version = ".".join(map(str, sys.version_info[:3]))
    note = ""
    if official and sys.version_info[:2] != OFFICIAL_PYTHON:
        note = f" (the official environment uses Python {'.'.join(map(str, OFFICIAL_PYTHON))})"
    found.append(f"Python {version} at {sys.executable}{note}")
    _check_checkpoints(Path(config_path).expanduser(), official, found, problems)
    if official:
        prefix = os.environ.get("CONDA_PREFIX")
        if not prefix:
            problems.append("CONDA_PREFIX is not set: activate the sam-3d-objects environment first "
                            "(conda activate sam3d-objects; its notebook/inference.py reads CONDA_PREFIX)")
        else:
            found.append(f"conda environment {prefix}")
        checkout = repo or os.environ.get("SAM3D_REPO")
        if not checkout:
            problems.append("no sam-3d-objects checkout: pass --sam3d-repo DIR or set SAM3D_REPO")
        elif not (Path(checkout).expanduser() / "notebook" / "inference.py").is_file():
            problems.append(f"{checkout} is not a sam-3d-objects checkout (no notebook/inference.py)")
        else:
            commit = _commit_of(Path(checkout).expanduser())
            tested = "" if commit is None or commit.startswith(OFFICIAL_COMMIT) else f" (read at {OFFICIAL_COMMIT})"
            found.append(f"sam-3d-objects checkout {checkout}" + (f" at {commit[:7]}{tested}" if commit else ""))
    torch = None
    try:
        import torch  # noqa: F811  (after --device set CUDA_VISIBLE_DEVICES)
    except Exception as exc:  # ImportError, or a broken install raising anything
        reason = f"torch cannot be imported ({type(exc).__name__}: {str(exc)[:80]})"
        if official:
            problems.append(f"{reason}: run the worker in the sam-3d-objects environment")
        else:
            found.append(f"{reason}; this model may not need it")
        return found, problems, None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible_note = f"CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "CUDA_VISIBLE_DEVICES unset"
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        count = 0
    torch_line = f"torch {torch.__version__} (CUDA {getattr(torch.version, 'cuda', None) or 'none'})"
    if count == 0:
        if official:
            problems.append(f"no CUDA device visible to {torch_line}, {visible_note}: the official pipeline "
                            "needs an NVIDIA GPU (32 GB or more)")
        else:
            found.append(f"{torch_line}, no CUDA device ({visible_note}); this model may not need one")
        return found, problems, torch
    props = torch.cuda.get_device_properties(0)
    memory = getattr(props, "total_memory", 0)
    small = ""
    if official and memory and memory < (OFFICIAL_MIN_GPU_GIB - 1) * 2**30:
        small = f" (the official docs ask for {OFFICIAL_MIN_GPU_GIB} GB or more: the decoders may run out of memory)"
    found.append(f"{torch_line}, {count} GPU(s) visible ({visible_note}); serving from cuda:0 = "
                 f"{torch.cuda.get_device_name(0)}, {_gib(memory)}{small}")
    return found, problems, torch


def tiny_input() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image 128 x 128 x 3 uint8, disc mask, point map (PyTorch3D convention, metres)): a shaded ball 10 cm across
    on a plane 1.1 m away, seen by a 128 px focal camera, as the backend would send it."""
    size, focal = 128, 128.0
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = ((u - 63.5) ** 2 + (v - 63.5) ** 2) / 40.0**2
    mask = r2 < 1.0
    depth = np.full((size, size), 1.1)
    depth[mask] = 1.0 - 0.05 * np.sqrt(1.0 - r2[mask])
    shade = np.clip(1.0 - 0.6 * r2, 0.2, 1.0)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = np.where(mask, 200 * shade, 90).astype(np.uint8)
    image[..., 1] = np.where(mask, 60 * shade, 90).astype(np.uint8)
    image[..., 2] = np.where(mask, 40 * shade, 100).astype(np.uint8)
    intrinsics = CameraIntrinsics(width=size, height=size, fx=focal, fy=focal, cx=63.5, cy=63.5)
    return image, mask, frames.pointmap_p3d_from_depth(depth.astype(np.float32), intrinsics)


def _describe_tensor(output: dict, name: str, shape: tuple[int, ...]) -> tuple[str, np.ndarray]:
    value = output.get(name)
    if value is None:
        raise PreflightError(f"the output has no '{name}' (keys: {', '.join(sorted(map(str, output))[:12])})")
    got = tuple(int(n) for n in getattr(value, "shape", np.shape(value)))
    dtype = getattr(value, "dtype", None)
    floating = value.is_floating_point() if hasattr(value, "is_floating_point") else \
        np.issubdtype(np.asarray(value).dtype, np.floating)
    if got != shape:
        raise PreflightError(f"output '{name}' has shape {got}, the contract is {shape}")
    if not floating:
        raise PreflightError(f"output '{name}' is {dtype}, the contract is floating point")
    array = value.detach().cpu().double().numpy() if hasattr(value, "detach") else np.asarray(value, np.float64)
    if not np.isfinite(array).all():
        raise PreflightError(f"output '{name}' is not finite: {array.ravel().tolist()}")
    return f"{name} {got} {dtype}", array.reshape(-1)


def check_output(output: Any, options: dict[str, Any], result_arrays: Callable[[Any], dict],
                 no_mesh_reason: Callable[[dict], str]) -> list[str]:
    """What the output holds, checked against the contract; PreflightError (one line) on a mismatch.
    `result_arrays` and `no_mesh_reason` are the worker's (passed in: the worker imports this module)."""
    if not isinstance(output, dict):
        raise PreflightError(f"the model returned a {type(output).__name__}, the contract is a dict")
    rotation_line, q = _describe_tensor(output, "rotation", (1, 4))
    translation_line, t = _describe_tensor(output, "translation", (1, 3))
    scale_line, s = _describe_tensor(output, "scale", (1, 3))
    if np.linalg.norm(q) < 1e-6:
        raise PreflightError("output 'rotation' is a zero quaternion")
    try:
        scale = frames.isotropic_scale(s)
    except ValueError as exc:
        raise PreflightError(f"output 'scale': {exc}") from None
    try:
        arrays = result_arrays(output)
    except ValueError as exc:
        raise PreflightError(f"output does not convert: {exc}") from None
    lines = [f"output: {rotation_line} (w, x, y, z; |q| = {np.linalg.norm(q):.3f}), {translation_line} "
             f"(z = {t[2]:.3f}), {scale_line} (isotropic, {scale:.3g})"]
    if "glb_vertices" in arrays:
        vertices = arrays["glb_vertices"]
        reach = float(np.abs(vertices).max())
        if reach > UNIT_CUBE_LIMIT:
            raise PreflightError(f"glb vertices reach {reach:.2f}: not in the unit cube [-0.5, 0.5]^3 of the contract")
        colours = "vertex colours" if "glb_colors" in arrays else "no vertex colours"
        lines.append(f"output: glb mesh, {len(vertices)} vertices, {len(arrays['glb_faces'])} faces, {colours}, "
                     f"in the unit cube (max |v| {reach:.3f})")
    else:
        lines.append(f"output: no glb mesh, {len(arrays['voxel'])} voxels ({no_mesh_reason(options)})")
    return lines


def run_preflight(host: Any, official: bool, result_arrays: Callable[[Any], dict],
                  no_mesh_reason: Callable[[dict], str], repo: str | None = None,
                  out: Callable[[str], None] | None = None) -> bool:
    """Run the four checks on `host` (the worker's ModelHost: its model is loaded and kept); True when all pass."""
    out = out or (lambda line: print(f"preflight: {line}", flush=True))

    def fail(reason: str) -> bool:
        print(f"sam3d-ros worker: preflight failed: {' '.join(reason.split())}", file=sys.stderr, flush=True)
        return False

    stages: dict[str, float] = {}
    start = time.perf_counter()
    found, problems, torch = check_environment(host.config_path, official, repo)
    stages["environment"] = time.perf_counter() - start
    if problems:
        return fail("; ".join(problems))
    for line in found:
        out(line)
    host.load(quiet=True)
    stages["model load"] = host.load_s
    if host.model is None:
        return fail(host.load_error or "model not loaded")
    out(f"model loaded in {host.load_s:.1f} s ({type(host.model).__name__})")
    layout = getattr(host.model, "layout_postprocess", None)  # the official factories (OfficialInference)
    modes = {"auto": "only for requests without a point map", "on": "for every request", "off": "never"}
    if layout in modes:
        out(f"layout post-optimisation: {modes[layout]}; compile: {getattr(host.model, 'compile', None)}")
    image, mask, pointmap = tiny_input()
    try:
        kwargs = host._call_arguments({})
        output, call = host.call_model(image, mask, pointmap, kwargs)
    except Exception as exc:
        return fail(f"tiny inference failed: {type(exc).__name__}: {str(exc)[:200]}")
    stages["tiny inference"] = call["inference_s"]
    try:
        lines = check_output(output, call["options"], result_arrays, no_mesh_reason)
    except PreflightError as exc:
        return fail(str(exc))
    for line in lines:
        out(line)
    if call["dropped"]:
        out(f"options the model does not take (dropped): {', '.join(call['dropped'])}")
    inner = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in call["stages_s"].items())
    memory = f", peak GPU memory {_gib(call['gpu_peak_bytes'])}" if call.get("gpu_peak_bytes") is not None else ""
    out(f"passed in {time.perf_counter() - start:.1f} s: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items())
        + (f" ({inner})" if inner else "") + memory)
    return True
