"""`sam3d-ros worker`: runs SAM 3D Objects in its own Python environment and serves it over ZeroMQ.

    sam3d-ros worker --sam3d-config checkpoints/hf/pipeline.yaml --sam3d-repo ~/sam-3d-objects \\
        --bind tcp://127.0.0.1:5555

A ROUTER socket bound to `--bind` (loopback unless `--allow-remote`; CurveZMQ with `--curve-secret-key`) answers
one request at a time (several workers serve in parallel: give the client all their endpoints). The model is built
lazily on the first request (or at start with `--preload`) by a factory `CALLABLE(config_path)` named by
`--inference MODULE:CALLABLE`; the default is `Inference` of the official `notebook/inference.py`, imported by
file path from `--sam3d-repo` / `$SAM3D_REPO`. The model is called as
`model(image, mask, seed=..., pointmap=..., **speed_options)`; options it does not accept (by its signature) are
dropped and reported. Whatever happens (bad bytes, bad input, model exceptions, odd outputs) the worker answers
with an error message and serves the next request. This module imports neither torch nor the model at import time
and needs only numpy, pyzmq and msgpack besides the model's own packages.

First contact with the official pipeline (see models/README.md): `--preflight` checks the environment, loads the
model and runs one tiny inference before serving (`--preflight-only`: then exits); `--device cuda:N` pins the worker
to one GPU through CUDA_VISIBLE_DEVICES; the layout post-optimisation is off whenever a request brings its own point
map (`--layout-postprocess`); speed options the official environment cannot run are refused (`option_problem`); a
result without a model mesh says why (`no_mesh_reason`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from sam3d_ros.sam3d import wire
LOG = logging.getLogger("sam3d_ros.worker")
DEFAULT_BIND = "tcp://127.0.0.1:5555"

#: Speed options of the official pipeline (`InferencePipelinePointMap.run`) and how a request value is checked.
SPEED_OPTIONS: dict[str, Callable[[Any], bool]] = {
    "stage1_inference_steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1000,
    "stage2_inference_steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1000,
    "use_stage1_distillation": lambda v: isinstance(v, bool),
    "use_stage2_distillation": lambda v: isinstance(v, bool),
    "stage1_only": lambda v: isinstance(v, bool),
    "with_mesh_postprocess": lambda v: isinstance(v, bool),
    "with_texture_baking": lambda v: isinstance(v, bool),
    "decode_formats": lambda v: (isinstance(v, list) and 0 < len(v) <= 8
                                 and all(isinstance(s, str) and len(s) <= 32 for s in v)),
}


#: Entries of `decode_formats` the official pipeline decodes. Its mesh export (`postprocessing_utils.to_glb`) reads
#: the Gaussians too, so "gaussian" is required: without it the run ends in KeyError 'gaussian'; ["gaussian"] alone
#: decodes no mesh (the result then says so, see `no_mesh_reason`).
DECODE_FORMATS = ("gaussian", "mesh")
#: Options whose True value needs nvdiffrast (mesh hole filling and texture baking rasterise with it through
#: utils3d's RastContext). The official environment does not install it and its `Inference` turns both off.
NVDIFFRAST_OPTIONS = ("with_mesh_postprocess", "with_texture_baking")
#: `--layout-postprocess`: auto = only for requests without a point map (see `OfficialInference`).
LAYOUT_MODES = ("auto", "on", "off")


class ModelLoadError(RuntimeError):
    """The model could not be built; the message says why in one line."""


_NVDIFFRAST: list[bool] = []


def nvdiffrast_available() -> bool:
    """Whether nvdiffrast can be imported here (looked up once, without importing it)."""
    if not _NVDIFFRAST:
        try:
            _NVDIFFRAST.append(importlib.util.find_spec("nvdiffrast") is not None)
        except (ImportError, ValueError):
            _NVDIFFRAST.append(False)
    return _NVDIFFRAST[0]


def option_problem(options: dict[str, Any], nvdiffrast: bool | None = None) -> str | None:
    """One line saying why these speed options cannot run in the official environment, or None when they can."""
    formats = options.get("decode_formats")
    if formats is not None:
        unknown = [f for f in formats if f not in DECODE_FORMATS]
        if unknown:
            return (f"decode_formats {unknown} not known: the official pipeline decodes "
                    f"{' and '.join(DECODE_FORMATS)}")
        if "gaussian" not in formats:
            return (f"decode_formats {list(formats)} cannot run: the official mesh export reads the Gaussians "
                    "(KeyError 'gaussian'); use ['gaussian', 'mesh'], or ['gaussian'] for no mesh (faster)")
    needing = [name for name in NVDIFFRAST_OPTIONS if options.get(name)]
    if needing and not (nvdiffrast_available() if nvdiffrast is None else nvdiffrast):
        verb, them = ("needs", "it") if len(needing) == 1 else ("need", "them")
        return (f"{' and '.join(needing)}=True {verb} nvdiffrast, which the official sam-3d-objects environment does "
                f"not install (its Inference turns {them} off): leave {them} off")
    return None


def no_mesh_reason(options: dict[str, Any]) -> str:
    """Why the model returned no glb mesh, from the options it was called with."""
    if options.get("stage1_only"):
        return "stage1_only: the model gave the pose and coarse voxels only"
    formats = options.get("decode_formats")
    if formats is not None and "mesh" not in formats:
        return f"decode_formats {list(formats)} has no 'mesh': the model decoded no mesh"
    return "the model returned no glb mesh"


# ----------------------------------------------------------------------------------------------------------------
# Model factories


def _import_official_inference(repo: str | os.PathLike | None) -> Any:
    """The official `notebook/inference.py` module of a sam-3d-objects checkout, imported by file path."""
    repo = repo or os.environ.get("SAM3D_REPO")
    if not repo:
        raise ModelLoadError("no SAM 3D Objects checkout: pass --sam3d-repo DIR or set SAM3D_REPO "
                             "(a clone of facebookresearch/sam-3d-objects)")
    repo_path = Path(repo).expanduser().resolve()
    script = repo_path / "notebook" / "inference.py"
    if not script.is_file():
        raise ModelLoadError(f"{script} not found: --sam3d-repo / SAM3D_REPO must be a sam-3d-objects checkout")
    for entry in (str(repo_path / "notebook"), str(repo_path)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    name = f"sam3d_objects_notebook_inference_{zlib.crc32(str(script).encode()):08x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        if isinstance(exc, KeyError) and exc.args == ("CONDA_PREFIX",):
            raise ModelLoadError(f"importing {script} failed: CONDA_PREFIX is not set: activate the sam-3d-objects "
                                 "environment first (conda activate sam3d-objects)") from exc
        raise ModelLoadError(f"importing {script} failed: {type(exc).__name__}: {exc} "
                             "(run the worker from the sam-3d-objects environment)") from exc
    return module


def _check_config(config_path: str) -> None:
    if not Path(config_path).is_file():
        raise ModelLoadError(f"SAM 3D config {config_path} not found (checkpoints/hf/pipeline.yaml of the "
                             "facebook/sam-3d-objects model repository)")


def official_inference(config_path: str, repo: str | None = None, compile: bool = False) -> Any:
    """The official `Inference(config_path, compile)` wrapper of the checkout (seed and pointmap only)."""
    module = _import_official_inference(repo)
    _check_config(config_path)
    return module.Inference(str(config_path), compile=compile)


#: The arguments the official `Inference.__call__` passes to `InferencePipelinePointMap.run` (commit cf06676).
_WRAPPER_ARGUMENTS = {"stage1_only": False, "with_mesh_postprocess": False, "with_texture_baking": False,
                      "with_layout_postprocess": True, "use_vertex_color": True, "stage1_inference_steps": None}
#: Pipeline methods timed per call (`last_stages_s`): stage 1 (pose, voxels), stage 2, decoders, mesh export, layout.
_TIMED_STAGES = {"sample_sparse_structure": "stage1", "sample_slat": "stage2", "decode_slat": "decode",
                 "postprocess_slat_output": "mesh_export", "run_post_optimization": "layout_postprocess"}


class OfficialInference:
    """The default factory: the official `Inference` wrapper, called the way its `__call__` calls the pipeline
    (mask in the alpha channel, vertex colours, no mesh post-processing, no texture baking), with one difference:
    the layout post-optimisation runs only for requests without a point map (`layout_postprocess="auto"`).

    Why: with a caller's point map the official pipeline infers the intrinsics from that map
    (`infer_intrinsics_from_pointmap`), which for a point map in the PyTorch3D convention gives a degenerate camera
    (fx = fy = 0, a negative focal); the render-and-compare layout optimisation then costs seconds and is at best
    rejected. The backend's depth refinement does that job. Without a point map MoGe supplies the intrinsics and
    the official default (on) is kept. "on" forces it for every request, "off" never runs it.

    Takes only seed and pointmap, like the official wrapper; `OfficialPipeline` forwards the speed options."""

    def __init__(self, config_path: str, repo: str | None = None, compile: bool = False,
                 layout_postprocess: str = "auto") -> None:
        if layout_postprocess not in LAYOUT_MODES:
            raise ModelLoadError(f"layout_postprocess must be one of {', '.join(LAYOUT_MODES)}")
        self._inference = official_inference(config_path, repo, compile)
        self.layout_postprocess = layout_postprocess
        self.compile = compile
        pipeline = getattr(self._inference, "_pipeline", None)
        self._run = getattr(pipeline, "run", None)
        if self._run is None:
            raise ModelLoadError("the official Inference has no _pipeline.run (a newer sam-3d-objects than commit "
                                 "cf06676?): use --inference MODULE:CALLABLE")
        self._accepted, self._any = _accepted_names(self._run)
        self.last_stages_s: dict[str, float] = {}
        self.last_call: dict[str, Any] = {}
        for method, stage in _TIMED_STAGES.items():
            if callable(getattr(pipeline, method, None)):
                setattr(pipeline, method, self._timed(getattr(pipeline, method), stage))

    def _timed(self, method: Callable, stage: str) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                _synchronize_gpu()
                self.last_stages_s[stage] = self.last_stages_s.get(stage, 0.0) + time.perf_counter() - start
        return timed

    def layout_for(self, pointmap: Any) -> bool:
        """Whether the layout post-optimisation runs for a request with (or without) a point map."""
        return self.layout_postprocess == "on" or (self.layout_postprocess == "auto" and pointmap is None)

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None, pointmap: Any = None) -> dict:
        return self._call(image, mask, seed, pointmap, {})

    def _call(self, image: np.ndarray, mask: np.ndarray, seed: int | None, pointmap: Any,
              options: dict[str, Any]) -> dict:
        rgba = np.concatenate([image[..., :3], (np.asarray(mask, dtype=np.uint8) * 255)[..., None]], axis=-1)
        kwargs: dict[str, Any] = dict(_WRAPPER_ARGUMENTS, with_layout_postprocess=self.layout_for(pointmap),
                                      pointmap=pointmap)
        kwargs.update(options)
        dropped = sorted(k for k in kwargs if not self._any and k not in self._accepted)
        if dropped:
            LOG.warning("InferencePipelinePointMap.run does not accept %s: dropped", ", ".join(dropped))
        kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
        self.last_stages_s = {}
        self.last_call = {k: v for k, v in kwargs.items() if k != "pointmap"}
        return self._run(rgba, None, seed, **kwargs)


class OfficialPipeline(OfficialInference):
    """Opt-in factory (`--inference sam3d_ros.sam3d.worker:OfficialPipeline`) that forwards the speed options to the
    official pipeline's `run` (the official `Inference.__call__` accepts only seed and pointmap). Uses the
    wrapper's private `_pipeline` attribute; options are filtered against `run`'s signature, so a renamed
    parameter is dropped and logged rather than crashing."""

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None, pointmap: Any = None,
                 **options: Any) -> dict:
        return self._call(image, mask, seed, pointmap, options)


def is_official_factory(spec: str | None) -> bool:
    """Whether `--inference` names the official pipeline (the default, `OfficialInference` or `OfficialPipeline`)."""
    if not spec:
        return True
    module_name, _, attribute = spec.partition(":")
    return module_name == "sam3d_ros.sam3d.worker" and attribute in ("OfficialInference", "OfficialPipeline")


def select_device(device: str) -> str | None:
    """Pin this process to one GPU (`cuda` or `cuda:N`) through CUDA_VISIBLE_DEVICES, before torch is imported;
    N counts the GPUs already visible (CUDA_VISIBLE_DEVICES set by the caller). A problem in one line, or None."""
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        return "must be cuda or cuda:N (the official pipeline runs on CUDA only)"
    if "torch" in sys.modules:
        return "torch is already imported: CUDA_VISIBLE_DEVICES would not take effect"
    if not index:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        listed = [d.strip() for d in visible.split(",") if d.strip()]
        if int(index) >= len(listed):
            return f"only {len(listed)} GPU(s) visible (CUDA_VISIBLE_DEVICES={visible})"
        os.environ["CUDA_VISIBLE_DEVICES"] = listed[int(index)]
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = index
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # N as nvidia-smi numbers the GPUs
    return None


def load_factory(spec: str | None, repo: str | None = None, compile: bool = False,
                 layout_postprocess: str = "auto") -> Callable[[str], Any]:
    """The factory named by `MODULE:CALLABLE` (attribute paths allowed), or the official one when `spec` is None.
    A factory that takes `repo`, `compile` or `layout_postprocess` keywords gets the worker's values."""
    if not spec:
        target: Any = OfficialInference
    else:
        module_name, sep, attribute = spec.partition(":")
        if not sep or not module_name or not attribute:
            raise ModelLoadError(f"--inference {spec!r} must look like MODULE:CALLABLE")
        try:
            target = importlib.import_module(module_name)
        except Exception as exc:
            raise ModelLoadError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise ModelLoadError(f"{module_name} has no attribute {attribute}")
            target = getattr(target, part)
        if not callable(target):
            raise ModelLoadError(f"{spec} is not callable")
    accepted, _ = _accepted_names(target)
    given = {"repo": repo, "compile": compile, "layout_postprocess": layout_postprocess}
    extra = {k: v for k, v in given.items() if k in accepted}
    if compile and "compile" not in accepted:
        LOG.warning("--compile ignored: %s takes no compile keyword", spec)
    if not extra:
        return target
    return lambda config_path: target(config_path, **extra)


def _accepted_names(fn: Callable) -> tuple[set[str], bool]:
    """(keyword names `fn` accepts, whether it takes **kwargs)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), True  # cannot tell (a C callable): forward everything
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


# ----------------------------------------------------------------------------------------------------------------
# Request handling (no sockets here: unit-testable)


def _to_numpy(value: Any, name: str) -> np.ndarray:
    """numpy array of a tensor (any device), array or sequence."""
    if hasattr(value, "detach"):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if hasattr(value, "is_floating_point") and value.is_floating_point():
            value = value.double()
        value = value.numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise ValueError(f"output {name} is not an array ({type(value).__name__})") from exc


def _pose_array(output: dict, name: str, size: int) -> np.ndarray:
    if name not in output or output[name] is None:
        raise ValueError(f"model output has no '{name}'")
    array = _to_numpy(output[name], name).astype(np.float64).reshape(-1)
    if array.size != size or not np.isfinite(array).all():
        raise ValueError(f"output {name} must be {size} finite numbers, got shape {np.shape(output[name])}")
    return array


def _single_mesh(glb: Any) -> Any:
    """A mesh of the `glb` output; a trimesh.Scene is flattened with its transforms."""
    if hasattr(glb, "vertices") and hasattr(glb, "faces"):
        return glb
    if hasattr(glb, "to_geometry"):  # trimesh >= 4.5 Scene
        return glb.to_geometry()
    if hasattr(glb, "dump"):
        return glb.dump(concatenate=True)
    raise ValueError(f"glb output of type {type(glb).__name__} is not a mesh")


def result_arrays(output: Any) -> dict[str, np.ndarray]:
    """Wire arrays of an official-format output dict (raises ValueError when something is missing or odd):
    rotation_wxyz (4,), translation (3,), scale (3,) float64, and either the Y-up glb mesh (glb_vertices (N, 3)
    float32, glb_faces (M, 3) int32, glb_colors (N, 4) uint8 when it has vertex colours) or stage-1 `voxel`
    centres (K, 3) float32 in the unit cube."""
    if not isinstance(output, dict):
        raise ValueError(f"model returned {type(output).__name__}, not a dict")
    arrays = {
        "rotation_wxyz": _pose_array(output, "rotation", 4),
        "translation": _pose_array(output, "translation", 3),
        "scale": _pose_array(output, "scale", 3),
    }
    glb = output.get("glb")
    if glb is not None:
        mesh = _single_mesh(glb)
        vertices = _to_numpy(mesh.vertices, "glb vertices").astype(np.float32).reshape(-1, 3)
        faces = _to_numpy(mesh.faces, "glb faces").astype(np.int64).reshape(-1, 3)
        if len(vertices) == 0 or len(faces) == 0:
            raise ValueError("glb mesh is empty")
        if faces.min() < 0 or faces.max() >= len(vertices) or not np.isfinite(vertices).all():
            raise ValueError("glb mesh has bad faces or non-finite vertices")
        arrays["glb_vertices"], arrays["glb_faces"] = vertices, faces.astype(np.int32)
        colours = _vertex_colours(mesh, len(vertices))
        if colours is not None:
            arrays["glb_colors"] = colours
        return arrays
    voxel = output.get("voxel")
    if voxel is None and output.get("coords") is not None:
        coords = _to_numpy(output["coords"], "coords").reshape(-1, 4)
        voxel = coords[:, 1:] / 64.0 - 0.5
    if voxel is None:
        raise ValueError("model output has neither a glb mesh nor voxels")
    voxel = _to_numpy(voxel, "voxel").astype(np.float32).reshape(-1, 3)
    if len(voxel) == 0 or not np.isfinite(voxel).all():
        raise ValueError("voxel output is empty or not finite")
    arrays["voxel"] = voxel
    return arrays


def _vertex_colours(mesh: Any, n_vertices: int) -> np.ndarray | None:
    """(N, 4) uint8 vertex colours of a trimesh mesh (texture colours sampled when it has a texture), or None."""
    visual = getattr(mesh, "visual", None)
    if visual is None:
        return None
    try:
        if getattr(visual, "kind", None) == "texture" and hasattr(visual, "to_color"):
            visual = visual.to_color()
        if getattr(visual, "kind", None) != "vertex":
            return None
        colours = np.asarray(visual.vertex_colors)
    except Exception:  # a broken texture must not lose the mesh
        return None
    if colours.shape[0] != n_vertices or colours.shape[1] not in (3, 4):
        return None
    if colours.shape[1] == 3:
        colours = np.column_stack([colours, np.full(n_vertices, 255)])
    return np.clip(colours, 0, 255).astype(np.uint8)


class ModelHost:
    """Builds the model on first use and turns one decoded request into one reply (never raises)."""

    def __init__(self, factory: Callable[[str], Any], config_path: str, defaults: dict[str, Any] | None = None,
                 seed: int | None = None) -> None:
        self.factory = factory
        self.config_path = config_path
        self.defaults = dict(defaults or {})
        self.seed = seed
        self.model: Any = None
        self.load_error: str | None = None
        self.load_s = 0.0
        self._accepted: set[str] = set()
        self._any_kwargs = False

    def load(self, quiet: bool = False) -> None:
        """Build the model now (once); a failure is kept and reported to every request."""
        if self.model is not None or self.load_error is not None:
            return
        start = time.perf_counter()
        try:
            self.model = self.factory(self.config_path)
            if not callable(self.model):
                raise ModelLoadError(f"the factory returned a {type(self.model).__name__}, which is not callable")
        except Exception as exc:
            self.model = None
            message = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            self.load_error = f"model could not be loaded: {message}"
            if not quiet:
                LOG.error("%s", self.load_error)
            return
        self.load_s = time.perf_counter() - start
        self._accepted, self._any_kwargs = _accepted_names(self.model)
        if not quiet:
            LOG.info("model ready in %.1f s", self.load_s)

    def handle(self, frames: list[Any]) -> wire.WireMessage:
        """The reply to one request's frames."""
        try:
            request = wire.decode(frames)
        except wire.WireError as exc:
            return wire.error_message("", f"bad request: {exc}", "bad_request")
        if request.type == "ping":
            return wire.WireMessage("pong", request.request_id, {
                "pid": os.getpid(), "model_loaded": self.model is not None, "load_error": self.load_error or "",
                "wire_version": wire.VERSION})
        if request.type != "reconstruct":
            return wire.error_message(request.request_id, f"a worker does not take '{request.type}' messages",
                                      "bad_request")
        try:
            return self._reconstruct(request)
        except Exception as exc:  # the last net: a bug here must not end the worker
            LOG.exception("request %s failed", request.request_id)
            return wire.error_message(request.request_id, f"worker error: {type(exc).__name__}: {exc}", "worker_error")

    def _reconstruct(self, request: wire.WireMessage) -> wire.WireMessage:
        rid, meta = request.request_id, request.meta
        sent, timeout = meta.get("sent_unix_s"), meta.get("timeout_s")
        if isinstance(sent, (int, float)) and isinstance(timeout, (int, float)) and time.time() > sent + timeout:
            return wire.error_message(rid, "request expired in the queue before the worker got to it", "expired")
        try:
            image, mask, pointmap = _request_inputs(request)
            kwargs = self._call_arguments(meta)
        except ValueError as exc:
            return wire.error_message(rid, f"bad request: {exc}", "bad_request")
        self.load()
        if self.model is None:
            return wire.error_message(rid, self.load_error or "model not loaded", "model_unavailable")
        try:
            output, call = self.call_model(image, mask, pointmap, kwargs)
        except Exception as exc:
            _release_gpu_memory()
            return wire.error_message(rid, f"inference failed: {type(exc).__name__}: {exc}", "inference_failed")
        try:
            arrays = result_arrays(output)
        except ValueError as exc:
            return wire.error_message(rid, f"unusable model output: {exc}", "bad_output")
        meta_out: dict[str, Any] = {"inference_s": call["inference_s"], "dropped_options": call["dropped"],
                                    "pid": os.getpid(), "stages_s": call["stages_s"],
                                    "mesh_source": "model" if "glb_vertices" in arrays else "voxels"}
        if "glb_vertices" not in arrays:
            meta_out["no_mesh_reason"] = no_mesh_reason(call["options"])
        if call.get("layout_postprocess") is not None:
            meta_out["layout_postprocess"] = call["layout_postprocess"]
        if call.get("gpu_peak_bytes") is not None:
            meta_out["gpu_peak_bytes"] = call["gpu_peak_bytes"]
        return wire.WireMessage("result", rid, meta_out, arrays)

    def call_model(self, image: np.ndarray, mask: np.ndarray, pointmap: np.ndarray | None,
                   kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Run the loaded model once: (its raw output, what happened: options it got, dropped options, time,
        per-stage times, peak GPU memory). Exceptions of the model propagate."""
        dropped = sorted(name for name in kwargs if not self._any_kwargs and name not in self._accepted)
        if dropped:
            LOG.warning("the model does not accept %s: dropped", ", ".join(dropped))
            kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
        options = {k: v for k, v in kwargs.items() if k != "seed"}
        if pointmap is not None:
            kwargs["pointmap"] = _model_pointmap(pointmap)
        torch = sys.modules.get("torch")
        cuda = _cuda_available(torch)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        output = self.model(image, mask, **kwargs)
        _synchronize_gpu()
        call: dict[str, Any] = {"inference_s": time.perf_counter() - start, "dropped": dropped, "options": options,
                                "stages_s": {}, "layout_postprocess": None, "gpu_peak_bytes": None}
        stages = getattr(self.model, "last_stages_s", None)
        if isinstance(stages, dict):
            call["stages_s"] = {str(k): float(v) for k, v in stages.items()}
        last_call = getattr(self.model, "last_call", None)  # OfficialInference: what the pipeline's run got
        if isinstance(last_call, dict) and "with_layout_postprocess" in last_call:
            call["layout_postprocess"] = bool(last_call["with_layout_postprocess"])
        if cuda:
            call["gpu_peak_bytes"] = int(torch.cuda.max_memory_allocated())
        return output, call

    def _call_arguments(self, meta: dict) -> dict[str, Any]:
        """Keyword arguments for the model: the seed and the speed options that are set (validated)."""
        options = dict(self.defaults)
        requested = meta.get("options", {})
        if not isinstance(requested, dict):
            raise ValueError("options must be a map")
        for name, value in requested.items():
            if name not in SPEED_OPTIONS:
                raise ValueError(f"unknown option {str(name)[:40]!r} (known: {', '.join(SPEED_OPTIONS)})")
            if value is not None and not SPEED_OPTIONS[name](value):
                raise ValueError(f"option {name}={str(value)[:40]} is out of range")
            if value is not None:
                options[name] = value
        seed = meta.get("seed", self.seed)
        if seed is None:
            seed = self.seed
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise ValueError("seed must be a non-negative integer")
        problem = option_problem(options)
        if problem:
            raise ValueError(problem)
        kwargs: dict[str, Any] = dict(options)
        if seed is not None:
            kwargs["seed"] = seed
        return kwargs


def _request_inputs(request: wire.WireMessage) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image (H, W, 3) uint8, mask (H, W) bool, pointmap (H, W, 3) float32 or None) as writable copies."""
    arrays = request.arrays
    unknown = set(arrays) - {"image", "mask", "pointmap"}
    if unknown:
        raise ValueError(f"unknown arrays {sorted(unknown)}")
    if "image" not in arrays or "mask" not in arrays:
        raise ValueError("a reconstruct request needs 'image' and 'mask' arrays")
    image, mask = arrays["image"], arrays["mask"]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image is {width}x{height}")
    if mask.shape != (height, width) or mask.dtype not in (np.bool_, np.uint8):
        raise ValueError(f"mask must be {height} x {width} bool, got {mask.shape} {mask.dtype}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask is empty")
    pointmap = arrays.get("pointmap")
    if pointmap is not None:
        if pointmap.shape != (height, width, 3) or pointmap.dtype != np.float32:
            raise ValueError(f"pointmap must be {height} x {width} x 3 float32, got {pointmap.shape} {pointmap.dtype}")
        pointmap = np.array(pointmap)
    return np.array(image), mask, pointmap


def _model_pointmap(pointmap: np.ndarray) -> Any:
    """The point map as the official pipeline wants it: a torch tensor when torch is importable."""
    try:
        import torch
    except ImportError:
        return pointmap
    return torch.from_numpy(pointmap)


def _cuda_available(torch: Any) -> bool:
    try:
        return torch is not None and bool(torch.cuda.is_available())
    except Exception:
        return False


def _synchronize_gpu() -> None:
    """Wait for the GPU's queued work (so a time measured around it is the work's), when torch is in use."""
    torch = sys.modules.get("torch")
    if _cuda_available(torch):
        try:
            torch.cuda.synchronize()
        except Exception:
            pass


def _release_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


# ----------------------------------------------------------------------------------------------------------------
# Sockets


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// / inproc:// endpoints and tcp:// endpoints on 127.0.0.0/8, ::1 or localhost."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp" or not address:
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or "*": reachable from outside


def load_curve_key(path: str | os.PathLike, secret: bool) -> tuple[bytes, bytes | None]:
    """(public key, secret key or None) from a ZeroMQ certificate file (`zmq.auth.create_certificates`) or a
    file holding one Z85 key of 40 characters (a public key, or a secret key when `secret`)."""
    path = Path(path)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read CURVE key {path}: {exc.strerror}") from None
    if len(text) == 40 and "\n" not in text:
        key = text.encode()
        if secret:
            return zmq.curve_public(key), key
        return key, None
    import zmq.auth

    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a ZeroMQ certificate: {exc}") from None
    if secret and not secret_key:
        raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret_key


class Worker:
    """A ROUTER socket serving one `ModelHost`, one request at a time, until stopped."""

    def __init__(self, host: ModelHost, bind: str = DEFAULT_BIND, curve_secret_key: str | None = None,
                 curve_authorized_keys: str | None = None) -> None:
        self.host = host
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_ARRAY_BYTES + wire.MAX_HEADER_BYTES)
        self.authenticator = None
        if curve_secret_key:
            public, secret = load_curve_key(curve_secret_key, secret=True)
            if curve_authorized_keys:
                from zmq.auth.thread import ThreadAuthenticator

                self.authenticator = ThreadAuthenticator(self.context)
                self.authenticator.start()
                self.authenticator.configure_curve(domain="*", location=str(curve_authorized_keys))
            self.socket.curve_secretkey = secret
            self.socket.curve_publickey = public
            self.socket.curve_server = True
        elif curve_authorized_keys:
            raise ValueError("--curve-authorized-keys needs --curve-secret-key")
        self.socket.bind(bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.stopping = False
        self.served = 0

    def serve(self, max_requests: int | None = None, exit_with_parent: bool = False) -> None:
        """Answer requests until `stop()` (or SIGTERM via `main`), `max_requests`, or, with `exit_with_parent`,
        until the process that started this one is gone."""
        parent = os.getppid()
        while not self.stopping and (max_requests is None or self.served < max_requests):
            if exit_with_parent and os.getppid() != parent:
                LOG.warning("parent process %d is gone: stopping", parent)
                break
            if not self.socket.poll(100):
                continue
            frames = self.socket.recv_multipart(copy=False)
            envelope, body = _split_envelope(frames)
            if not envelope:
                continue
            start = time.perf_counter()
            reply = self.host.handle(body)
            self._send(envelope, reply)
            self.served += 1
            if reply.type == "error":
                LOG.warning("request %s: %s (%s)", reply.request_id or "?", reply.meta["message"], reply.meta["code"])
            else:
                LOG.info("request %s: %s in %.3f s", reply.request_id, reply.type, time.perf_counter() - start)

    def _send(self, envelope: list[Any], reply: wire.WireMessage) -> None:
        try:
            frames = wire.encode(reply)
        except wire.WireError as exc:
            frames = wire.encode(wire.error_message(reply.request_id, f"reply cannot be encoded: {exc}", "bad_output"))
        try:
            self.socket.send_multipart([*envelope, *frames], copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            LOG.warning("reply to %s dropped: the client is gone", reply.request_id)

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()


def _split_envelope(frames: list[Any]) -> tuple[list[Any], list[Any]]:
    """(routing envelope up to and including the empty delimiter, message body). A body without a delimiter
    (a raw DEALER peer) is answered without one."""
    for index in range(1, min(len(frames), 8)):
        if len(frames[index]) == 0:
            return list(frames[: index + 1]), list(frames[index + 1 :])
    return list(frames[:1]), list(frames[1:])


# ----------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `sam3d-ros worker`."""
    parser = argparse.ArgumentParser(prog="sam3d-ros worker", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam3d-config", help="the model's pipeline.yaml (checkpoints/hf/pipeline.yaml); "
                        "passed to the --inference factory")
    parser.add_argument("--inference", metavar="MODULE:CALLABLE",
                        help="factory CALLABLE(config_path) -> model; default: Inference of the official "
                        "notebook/inference.py. sam3d_ros.sam3d.worker:OfficialPipeline forwards the speed options")
    parser.add_argument("--sam3d-repo", help="sam-3d-objects checkout for the default factory (default $SAM3D_REPO)")
    parser.add_argument("--compile", action="store_true",
                        help="Inference(..., compile=True): the official factories, and any factory taking compile=")
    parser.add_argument("--device", metavar="cuda:N", help="serve from GPU N only (sets CUDA_VISIBLE_DEVICES before "
                        "torch is imported; the official pipeline hard-codes 'cuda'): one worker per GPU")
    parser.add_argument("--layout-postprocess", choices=LAYOUT_MODES, default="auto",
                        help="official layout post-optimisation: auto (default) = only for requests without a point "
                        "map (with one it works on a degenerate camera); on = always; off = never")
    parser.add_argument("--bind", default=DEFAULT_BIND, help=f"ZeroMQ endpoint to bind (default {DEFAULT_BIND}; "
                        "tcp://127.0.0.1:* picks a free port)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding to a non-loopback address (use with --curve-secret-key)")
    parser.add_argument("--curve-secret-key", metavar="FILE", help="CurveZMQ: this server's certificate "
                        "(.key_secret from --generate-curve-keys); clients then need its public key")
    parser.add_argument("--curve-authorized-keys", metavar="DIR",
                        help="CurveZMQ: accept only clients whose public certificates (*.key) are in DIR")
    parser.add_argument("--generate-curve-keys", metavar="DIR",
                        help="write server and client certificates into DIR and exit")
    parser.add_argument("--preload", action="store_true", help="build the model before binding")
    parser.add_argument("--preflight", action="store_true",
                        help="before serving: check the environment, load the model, run one tiny inference and "
                        "check its output; print what was found and the time per stage; exit 1 on any problem")
    parser.add_argument("--preflight-only", action="store_true", help="run the preflight, then exit (0 = passed)")
    parser.add_argument("--seed", type=int, metavar="N", help="default seed of every request")
    parser.add_argument("--stage1-steps", type=int, metavar="N", dest="stage1_inference_steps",
                        help="stage-1 (pose, coarse shape) inference steps")
    parser.add_argument("--stage2-steps", type=int, metavar="N", dest="stage2_inference_steps",
                        help="stage-2 (detailed shape) inference steps")
    parser.add_argument("--stage1-distillation", dest="use_stage1_distillation", action="store_true", default=None,
                        help="use the stage-1 distillation shortcut")
    parser.add_argument("--stage2-distillation", dest="use_stage2_distillation", action="store_true", default=None,
                        help="use the stage-2 distillation shortcut")
    parser.add_argument("--stage1-only", action="store_true", default=None,
                        help="pose and coarse voxels only (much faster; the mesh is the voxels' hull)")
    parser.add_argument("--decode-formats", metavar="LIST", type=lambda v: [f.strip() for f in v.split(",") if f.strip()],
                        help="decoders to run, comma-separated: gaussian,mesh (default) or gaussian (faster, no mesh: "
                        "the voxel hull stands in and the result says so)")
    parser.add_argument("--mesh-postprocess", dest="with_mesh_postprocess", action="store_true", default=None,
                        help="official mesh simplification and hole filling (needs nvdiffrast, absent from the "
                        "official environment: refused without it)")
    parser.add_argument("--texture-baking", dest="with_texture_baking", action="store_true", default=None,
                        help="official texture baking (needs nvdiffrast: refused without it)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started the worker ends (tests, benchmarks)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sam3d-ros worker`; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), stream=sys.stderr,
                        format="[sam3d-worker %(process)d] %(levelname)s %(message)s")
    if args.generate_curve_keys:
        import zmq.auth

        folder = Path(args.generate_curve_keys)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("server", "client"):
            public, secret = zmq.auth.create_certificates(str(folder), name)
            print(f"wrote {public} and {secret}")
        return 0
    if not args.sam3d_config:
        print("sam3d-ros worker: error: --sam3d-config is required", file=sys.stderr)
        return 2
    if not is_loopback(args.bind) and not args.allow_remote:
        print(f"sam3d-ros worker: error: {args.bind} is not a loopback address; pass --allow-remote to serve other "
              "machines (and --curve-secret-key to encrypt and authenticate)", file=sys.stderr)
        return 2
    if not is_loopback(args.bind) and not args.curve_secret_key:
        LOG.warning("serving %s without CurveZMQ: anyone who can reach it can use the model", args.bind)
    if args.device:
        problem = select_device(args.device)
        if problem:
            print(f"sam3d-ros worker: error: --device {args.device}: {problem}", file=sys.stderr)
            return 2
    try:
        factory = load_factory(args.inference, args.sam3d_repo, args.compile, args.layout_postprocess)
    except ModelLoadError as exc:
        print(f"sam3d-ros worker: error: {exc}", file=sys.stderr)
        return 2
    if args.sam3d_repo:
        os.environ["SAM3D_REPO"] = str(args.sam3d_repo)
    defaults = {name: getattr(args, name) for name in SPEED_OPTIONS if getattr(args, name, None) is not None}
    for name, value in defaults.items():
        if not SPEED_OPTIONS[name](value):
            print(f"sam3d-ros worker: error: {name}={value} is out of range", file=sys.stderr)
            return 2
    problem = option_problem(defaults)
    if problem:
        print(f"sam3d-ros worker: error: {problem}", file=sys.stderr)
        return 2
    host = ModelHost(factory, args.sam3d_config, defaults, args.seed)
    if args.preflight or args.preflight_only:
        from sam3d_ros.sam3d.preflight import run_preflight

        passed = run_preflight(host, is_official_factory(args.inference), result_arrays, no_mesh_reason,
                               repo=args.sam3d_repo)
        if args.preflight_only or not passed:
            return 0 if passed else 1
    elif args.preload:
        host.load()
    try:
        worker = Worker(host, args.bind, args.curve_secret_key, args.curve_authorized_keys)
    except (zmq.ZMQError, ValueError) as exc:
        print(f"sam3d-ros worker: error: cannot serve {args.bind}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print(f"sam3d worker ready on {worker.endpoint}", flush=True)
    try:
        worker.serve(exit_with_parent=args.exit_with_parent)
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()
    return 0


def spawn_worker(config_path: str | os.PathLike, inference: str | None = None, bind: str = "tcp://127.0.0.1:*",
                 extra_args: tuple[str, ...] = (), ready_timeout_s: float = 60.0,
                 stderr: Any = None, python: str | None = None, env: dict[str, str] | None = None,
                 on_line: Callable[[str], None] | None = None) -> tuple[subprocess.Popen, str]:
    """Start `python -m sam3d_ros.sam3d.worker` (this interpreter unless `python` names another, e.g. the one of
    the sam-3d-objects environment); (process, bound endpoint) once it is ready. Lines it prints before (the
    preflight's) go to `on_line`. The caller ends it (`terminate()`/`kill()`); it also stops by itself within
    0.1 s of this process ending. Raises RuntimeError when it exits or is not ready in time."""
    command = [python or sys.executable, "-m", "sam3d_ros.sam3d.worker", "--sam3d-config", str(config_path),
               "--bind", bind, "--exit-with-parent", *extra_args]
    if inference:
        command += ["--inference", inference]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    deadline = time.monotonic() + ready_timeout_s
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, min(0.2, deadline - time.monotonic()))):
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if line.startswith("sam3d worker ready on "):
                return process, line.split(" on ", 1)[1].strip()
            if line and on_line is not None:
                on_line(line.rstrip("\n"))
            if not line and process.poll() is not None:
                break
    process.kill()
    process.wait()
    raise RuntimeError(f"worker {' '.join(command[2:])} did not start (exit status {process.returncode})")


if __name__ == "__main__":
    # Run the imported module's main, so that `-m` and `--inference sam3d_ros.sam3d.worker:...` share one module.
    from sam3d_ros.sam3d.worker import main as _main

    sys.exit(_main())
