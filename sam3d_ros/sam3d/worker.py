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


class ModelLoadError(RuntimeError):
    """The model could not be built; the message says why in one line."""


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
        raise ModelLoadError(f"importing {script} failed: {type(exc).__name__}: {exc} "
                             "(run the worker from the sam-3d-objects environment)") from exc
    return module


def _check_config(config_path: str) -> None:
    if not Path(config_path).is_file():
        raise ModelLoadError(f"SAM 3D config {config_path} not found (checkpoints/hf/pipeline.yaml of the "
                             "facebook/sam-3d-objects model repository)")


def official_inference(config_path: str, repo: str | None = None, compile: bool = False) -> Any:
    """The default factory: the official `Inference(config_path, compile)` wrapper (seed and pointmap only)."""
    module = _import_official_inference(repo)
    _check_config(config_path)
    return module.Inference(str(config_path), compile=compile)


class OfficialPipeline:
    """Opt-in factory (`--inference sam3d_ros.sam3d.worker:OfficialPipeline`) that calls the official pipeline's
    `run` directly, so the speed options reach it: the official `Inference.__call__` accepts only seed and
    pointmap. Uses the wrapper's private `_pipeline` attribute and the defaults the wrapper passes (mask in the
    alpha channel, layout post-processing on, vertex colours, no texture baking); options are filtered against
    `run`'s signature, so a renamed parameter is dropped and logged rather than crashing."""

    def __init__(self, config_path: str) -> None:
        self._inference = official_inference(config_path)
        self._run = self._inference._pipeline.run
        self._accepted, self._any = _accepted_names(self._run)

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None, pointmap: Any = None,
                 **options: Any) -> dict:
        rgba = np.concatenate([image[..., :3], (np.asarray(mask, dtype=np.uint8) * 255)[..., None]], axis=-1)
        kwargs: dict[str, Any] = {"stage1_only": False, "with_mesh_postprocess": False, "with_texture_baking": False,
                                  "with_layout_postprocess": True, "use_vertex_color": True, "pointmap": pointmap}
        kwargs.update(options)
        dropped = sorted(k for k in kwargs if not self._any and k not in self._accepted)
        if dropped:
            LOG.warning("InferencePipelinePointMap.run does not accept %s: dropped", ", ".join(dropped))
        return self._run(rgba, None, seed, **{k: v for k, v in kwargs.items() if k not in dropped})


def load_factory(spec: str | None, repo: str | None = None, compile: bool = False) -> Callable[[str], Any]:
    """The factory named by `MODULE:CALLABLE` (attribute paths allowed), or the official one when `spec` is None."""
    if not spec:
        return lambda config_path: official_inference(config_path, repo, compile)
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ModelLoadError(f"--inference {spec!r} must look like MODULE:CALLABLE")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelLoadError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelLoadError(f"{module_name} has no attribute {attribute}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelLoadError(f"{spec} is not callable")
    return target


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

    def load(self) -> None:
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
            LOG.error("%s", self.load_error)
            return
        self.load_s = time.perf_counter() - start
        self._accepted, self._any_kwargs = _accepted_names(self.model)
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
        dropped = sorted(name for name in kwargs if not self._any_kwargs and name not in self._accepted)
        if dropped:
            LOG.warning("the model does not accept %s: dropped", ", ".join(dropped))
            kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
        if pointmap is not None:
            kwargs["pointmap"] = _model_pointmap(pointmap)
        start = time.perf_counter()
        try:
            output = self.model(image, mask, **kwargs)
        except Exception as exc:
            _release_gpu_memory()
            return wire.error_message(rid, f"inference failed: {type(exc).__name__}: {exc}", "inference_failed")
        inference_s = time.perf_counter() - start
        try:
            arrays = result_arrays(output)
        except ValueError as exc:
            return wire.error_message(rid, f"unusable model output: {exc}", "bad_output")
        return wire.WireMessage("result", rid, {"inference_s": inference_s, "dropped_options": dropped,
                                                "pid": os.getpid()}, arrays)

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
    parser.add_argument("--compile", action="store_true", help="Inference(..., compile=True) (default factory)")
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
    try:
        factory = load_factory(args.inference, args.sam3d_repo, args.compile)
    except ModelLoadError as exc:
        print(f"sam3d-ros worker: error: {exc}", file=sys.stderr)
        return 2
    if args.sam3d_repo:
        os.environ["SAM3D_REPO"] = str(args.sam3d_repo)
    defaults = {name: getattr(args, name) for name in ("stage1_inference_steps", "stage2_inference_steps",
                "use_stage1_distillation", "use_stage2_distillation", "stage1_only") if getattr(args, name) is not None}
    for name, value in defaults.items():
        if not SPEED_OPTIONS[name](value):
            print(f"sam3d-ros worker: error: {name}={value} is out of range", file=sys.stderr)
            return 2
    host = ModelHost(factory, args.sam3d_config, defaults, args.seed)
    if args.preload:
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
                 stderr: Any = None) -> tuple[subprocess.Popen, str]:
    """Start `python -m sam3d_ros.sam3d.worker` with this interpreter; (process, bound endpoint) once it is ready.
    The caller ends it (`terminate()`/`kill()`); it also stops by itself within 0.1 s of this process ending.
    Raises RuntimeError when it exits or is not ready in time."""
    command = [sys.executable, "-m", "sam3d_ros.sam3d.worker", "--sam3d-config", str(config_path), "--bind", bind,
               "--exit-with-parent", *extra_args]
    if inference:
        command += ["--inference", inference]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
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
            if not line and process.poll() is not None:
                break
    process.kill()
    process.wait()
    raise RuntimeError(f"worker {' '.join(command[2:])} did not start (exit status {process.returncode})")


if __name__ == "__main__":
    sys.exit(main())
