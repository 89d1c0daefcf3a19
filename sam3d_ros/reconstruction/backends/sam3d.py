"""`sam3d` backend: Meta's SAM 3D Objects, run by `sam3d-ros worker` processes and reached over ZeroMQ.

Per object: the image, the mask and (with depth) the metric point map in the model's PyTorch3D convention go to a
worker; its official-format answer (quaternion w, x, y, z, translation and isotropic scale in the PyTorch3D camera
frame, Y-up unit-cube glb mesh) is converted exactly to a metric mesh in the Z-up object frame and `T_cam_obj` in
the optical frame (`sam3d_frames`); with depth, scale and pose are then refined against the observed depth of the
mask (`refine`). Without depth the result is not metric: `metric_scale=False` (scale and distance share one unknown
factor). Neither torch nor the model is imported here.

The client keeps one DEALER socket per worker endpoint and sends each request to the next worker that is connected
(round robin); a request gets no answer within `timeout_s` -> ReconstructionError and that socket is thrown away and
reconnected (lazy pirate); a worker whose connection drops while it holds the request (it crashed) -> the request
goes to another worker if `retries` and time allow; no worker connected within `connect_timeout_s` ->
ReconstructionError at once.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import trimesh
import zmq
from zmq.utils.monitor import recv_monitor_message

from sam3d_ros.geometry.types import ObjectReconstruction, RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.base import ReconstructionBackend, ReconstructionError
from sam3d_ros.reconstruction.refine import observed_points_cam, refine_scale_pose
from sam3d_ros.sam3d import frames as frames
from sam3d_ros.sam3d import wire
from sam3d_ros.sam3d.worker import SPEED_OPTIONS, load_curve_key

LOG = logging.getLogger("sam3d_ros.sam3d")
DEFAULT_WORKER = "tcp://127.0.0.1:5555"
_MONITOR_EVENTS = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class WorkerError(ReconstructionError):
    """The worker path failed (unreachable, timeout, crash, garbage, error reply); one-line message."""


class _Link:
    """One DEALER socket connected to one worker endpoint, with a monitor for drops and handshake failures."""

    def __init__(self, context: zmq.Context, endpoint: str, curve: tuple[bytes, bytes, bytes] | None,
                 heartbeat_s: float) -> None:
        self.endpoint = endpoint
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a worker that is not connected
        self.socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_ARRAY_BYTES + wire.MAX_HEADER_BYTES)
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_s * 1000))
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(3 * heartbeat_s * 1000))
        if curve is not None:
            server_public, client_public, client_secret = curve
            self.socket.curve_serverkey = server_public
            self.socket.curve_publickey = client_public
            self.socket.curve_secretkey = client_secret
        self.monitor = self.socket.get_monitor_socket(_MONITOR_EVENTS)
        self.handshake_error = ""
        self.socket.connect(endpoint)

    def drain_events(self) -> bool:
        """Read pending monitor events; True when the connection dropped."""
        dropped = False
        while self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor)["event"]
            except (zmq.ZMQError, ValueError):
                break
            if event == zmq.EVENT_DISCONNECTED:
                dropped = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshake_error = ""
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                           zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                self.handshake_error = "CURVE/ZMTP handshake failed (wrong or missing --curve-server-key, " \
                                       "client key not authorised, or not a sam3d worker)"
        return dropped

    def close(self) -> None:
        try:
            self.socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


class _Dropped(Exception):
    """The connection to the worker holding the request dropped."""


class WorkerClient:
    """Request/reply with a pool of workers: per-request deadline, lazy-pirate socket reset, round robin."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = 120.0, connect_timeout_s: float = 2.0,
                 retries: int = 1, curve_server_key: str | None = None, curve_client_key: str | None = None,
                 heartbeat_s: float = 1.0) -> None:
        self.endpoints = [e.strip() for e in endpoints if e and e.strip()]
        if not self.endpoints:
            raise ValueError("no sam3d worker endpoint given")
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.retries = int(retries)
        self.heartbeat_s = float(heartbeat_s)
        self._curve = None
        if curve_server_key:
            server_public, _ = load_curve_key(curve_server_key, secret=False)
            if curve_client_key:
                client_public, client_secret = load_curve_key(curve_client_key, secret=True)
            else:
                client_public, client_secret = zmq.curve_keypair()  # encryption without client authentication
            self._curve = (server_public, client_public, client_secret)
        elif curve_client_key:
            raise ValueError("a CURVE client key needs the server's public key (curve_server_key)")
        self._context = zmq.Context()
        self._links: dict[str, _Link] = {}
        self._turn = itertools.cycle(range(len(self.endpoints)))
        self._lock = threading.Lock()
        self._closing = threading.Event()  # close() from another thread: a request in flight gives up within 50 ms

    def _link(self, endpoint: str) -> _Link:
        if endpoint not in self._links:
            self._links[endpoint] = _Link(self._context, endpoint, self._curve, self.heartbeat_s)
        return self._links[endpoint]

    def _reset(self, endpoint: str) -> None:
        """Lazy pirate: forget the socket (and any late reply on it); the next request reconnects."""
        link = self._links.pop(endpoint, None)
        if link is not None:
            link.close()

    def request(self, message: wire.WireMessage, timeout_s: float | None = None) -> tuple[wire.WireMessage, str]:
        """Send `message` to a worker and return (reply, endpoint); raises WorkerError (one line) on failure.
        The whole call never takes longer than `timeout_s` (default: the client's) plus a few milliseconds."""
        timeout_s = self.timeout_s if timeout_s is None else float(timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            frames_out = wire.encode(message)
        except wire.WireError as exc:
            raise WorkerError(f"request cannot be encoded: {exc}") from None
        with self._lock:
            attempts = 0
            while True:
                if self._closing.is_set():
                    raise WorkerError("sam3d client closed (the node is shutting down)")
                link = self._send(frames_out, min(deadline, time.monotonic() + self.connect_timeout_s))
                try:
                    return self._await_reply(link, message.request_id, deadline, timeout_s), link.endpoint
                except _Dropped:
                    self._reset(link.endpoint)
                    attempts += 1
                    if attempts > self.retries or time.monotonic() >= deadline:
                        raise WorkerError(f"sam3d worker {link.endpoint} dropped the connection during the request "
                                          "(crashed or was stopped)") from None
                    LOG.warning("sam3d worker %s dropped the connection during a request; retrying", link.endpoint)

    def _send(self, frames_out: list, wait_until: float) -> _Link:
        """Send to the next connected worker in round-robin order, waiting until `wait_until` for one to connect;
        the link it went to."""
        first = next(self._turn)
        order = self.endpoints[first:] + self.endpoints[:first]
        links = [self._link(endpoint) for endpoint in order]
        for link in links:
            link.drain_events()
        poller = zmq.Poller()
        for link in links:
            poller.register(link.socket, zmq.POLLOUT)
        while True:
            ready = dict(poller.poll(0))
            for link in links:
                if ready.get(link.socket, 0) & zmq.POLLOUT:
                    try:
                        link.socket.send_multipart([b"", *frames_out], copy=False, flags=zmq.NOBLOCK)
                        return link
                    except zmq.Again:  # the connection went away between poll and send
                        continue
            remaining = wait_until - time.monotonic()
            if remaining <= 0 or self._closing.is_set():
                break
            if poller.poll(max(1, int(min(remaining, 0.05) * 1000))):
                continue
        for link in links:
            link.drain_events()
        problems = [f"{link.endpoint}: {link.handshake_error}" for link in links if link.handshake_error]
        detail = "; ".join(problems) if problems else "is `sam3d-ros worker` running there?"
        raise WorkerError(f"no sam3d worker reachable at {', '.join(order)} ({detail})")

    def _await_reply(self, link: _Link, request_id: str, deadline: float, timeout_s: float) -> wire.WireMessage:
        poller = zmq.Poller()
        poller.register(link.socket, zmq.POLLIN)
        poller.register(link.monitor, zmq.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._reset(link.endpoint)
                raise WorkerError(f"sam3d worker {link.endpoint} did not answer within {timeout_s:g} s "
                                  "(request abandoned, connection reset)")
            if self._closing.is_set():
                self._reset(link.endpoint)
                raise WorkerError(f"request to sam3d worker {link.endpoint} abandoned: the client is closing")
            events = dict(poller.poll(max(1, int(min(remaining, 0.05) * 1000))))
            if events.get(link.socket):
                parts = link.socket.recv_multipart(copy=False)
                while parts and len(parts[0]) == 0:
                    parts = parts[1:]
                try:
                    reply = wire.decode(parts)
                except wire.WireError as exc:
                    self._reset(link.endpoint)
                    raise WorkerError(f"sam3d worker {link.endpoint} sent an invalid reply: {exc}") from None
                if reply.request_id == request_id:
                    return reply
                LOG.debug("stale reply %s ignored", reply.request_id)
            if events.get(link.monitor) and link.drain_events():
                raise _Dropped()

    def ping(self, timeout_s: float = 5.0) -> tuple[dict, str]:
        """(pong metadata, endpoint) of one worker."""
        reply, endpoint = self.request(wire.WireMessage("ping", uuid.uuid4().hex), timeout_s)
        if reply.type != "pong":
            raise WorkerError(f"sam3d worker {endpoint} answered a ping with '{reply.type}'")
        return reply.meta, endpoint

    def close(self) -> None:
        """Close every socket. Safe from another thread than the one requesting: a request in flight is abandoned
        within 50 ms (WorkerError), then the sockets close in the order ZeroMQ needs."""
        self._closing.set()
        with self._lock:
            for endpoint in list(self._links):
                self._reset(endpoint)
            self._context.term()


@dataclass
class ModelPose:
    """The model's answer converted to ROS: metric mesh in the object frame and its pose in the optical frame."""

    T_cam_obj: np.ndarray  # (4, 4)
    model_scale: float  # s of the model (metres per unit-cube unit when the point map was metric)
    vertices_obj: np.ndarray  # (N, 3) metres, object frame (Z up)
    faces: np.ndarray  # (M, 3)
    colors: np.ndarray | None  # (N, 4) uint8
    from_voxels: bool


def model_pose_from_arrays(arrays: dict[str, np.ndarray]) -> ModelPose:
    """Convert the worker's result arrays exactly (see `sam3d_frames`); ValueError when they are unusable."""
    for name, size in (("rotation_wxyz", 4), ("translation", 3), ("scale", 3)):
        if name not in arrays or arrays[name].size != size or arrays[name].dtype.kind != "f":
            raise ValueError(f"result has no valid '{name}'")
    scale = frames.isotropic_scale(arrays["scale"])
    T_cam_obj = frames.T_cam_obj_from_p3d_pose(arrays["rotation_wxyz"], arrays["translation"])
    if "glb_vertices" in arrays:
        v_glb, faces = arrays["glb_vertices"], arrays.get("glb_faces")
        if v_glb.ndim != 2 or v_glb.shape[1] != 3 or v_glb.dtype.kind != "f" or len(v_glb) == 0:
            raise ValueError("glb vertices must be N x 3 floats")
        if faces is None or faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu" or len(faces) == 0:
            raise ValueError("glb faces must be M x 3 integers")
        if faces.min() < 0 or faces.max() >= len(v_glb) or not np.isfinite(v_glb).all():
            raise ValueError("glb mesh has out-of-range faces or non-finite vertices")
        colors = arrays.get("glb_colors")
        if colors is not None and (colors.shape != (len(v_glb), 4) or colors.dtype != np.uint8):
            colors = None
        return ModelPose(T_cam_obj, scale, frames.mesh_vertices_obj_m(v_glb, scale), faces.astype(np.int64),
                         None if colors is None else np.array(colors), False)
    if "voxel" in arrays:
        voxel = arrays["voxel"]
        if voxel.ndim != 2 or voxel.shape[1] != 3 or len(voxel) < 4 or not np.isfinite(voxel).all():
            raise ValueError("voxels must be K >= 4 x 3 finite floats")
        # Stage-1 voxels are in the Z-up object frame (no glb turn): each cell spans 1/64 of the unit cube.
        corners = (voxel[:, None, :] + np.array(list(itertools.product((0.0, 1 / 64), repeat=3)))[None]).reshape(-1, 3)
        hull = trimesh.convex.convex_hull(corners * scale)
        return ModelPose(T_cam_obj, scale, np.asarray(hull.vertices), np.asarray(hull.faces), None, True)
    raise ValueError("result has neither a glb mesh nor voxels")


#: Node parameters of this backend: name -> (default, description). `options_from_parameters` maps them to
#: `Sam3dBackend` arguments ("" / -1 / 0 mean "not set").
PARAMETERS: dict[str, tuple[Any, str]] = {
    "sam3d_worker": (DEFAULT_WORKER, "SAM 3D worker endpoints, comma-separated (each `sam3d-ros worker --bind`)."),
    "sam3d_timeout_s": (120.0, "Longest wait (s) for one object's answer; then that object is skipped with an error."),
    "sam3d_connect_timeout_s": (2.0, "Longest wait (s) for a connected worker before a request fails."),
    "sam3d_curve_server_key": ("", "CurveZMQ: the worker's public certificate (server.key); '' = no encryption."),
    "sam3d_curve_client_key": ("", "CurveZMQ: this client's secret certificate ('' = a throw-away key pair)."),
    "sam3d_refine": (True, "Fit scale and pose of the model's mesh to the registered depth."),
    "sam3d_seed": (-1, "Model seed (-1 = the worker's default)."),
    "sam3d_stage1_steps": (0, "Stage-1 inference steps (0 = the model's default)."),
    "sam3d_stage2_steps": (0, "Stage-2 inference steps (0 = the model's default)."),
    "sam3d_stage1_only": (False, "Pose and coarse voxels only (much faster; the mesh is the voxels' convex hull)."),
}


def options_from_parameters(params: Any) -> dict[str, Any]:
    """`Sam3dBackend` keyword arguments from a mapping (node parameters, `vars(argparse_namespace)`) holding the
    `PARAMETERS` names; missing names keep the backend's defaults."""
    get = params.get
    options: dict[str, Any] = {}
    if get("sam3d_worker"):
        options["worker"] = str(get("sam3d_worker"))
    for name, key in (("sam3d_timeout_s", "timeout_s"), ("sam3d_connect_timeout_s", "connect_timeout_s")):
        if get(name) is not None:
            options[key] = float(get(name))
    for name, key in (("sam3d_curve_server_key", "curve_server_key"), ("sam3d_curve_client_key", "curve_client_key")):
        if get(name):
            options[key] = str(get(name))
    if get("sam3d_refine") is not None:
        options["refine"] = bool(get("sam3d_refine"))
    if get("sam3d_seed") is not None and int(get("sam3d_seed")) >= 0:
        options["seed"] = int(get("sam3d_seed"))
    for name, key in (("sam3d_stage1_steps", "stage1_inference_steps"),
                      ("sam3d_stage2_steps", "stage2_inference_steps")):
        if get(name):
            options[key] = int(get(name))
    if get("sam3d_stage1_only"):
        options["stage1_only"] = True
    return options


class Sam3dBackend(ReconstructionBackend):
    """SAM 3D Objects through `sam3d-ros worker` processes; depth makes the result metric (point map + refinement)."""

    name = "sam3d"
    needs_depth = False

    def __init__(
        self,
        worker: str | Sequence[str] = DEFAULT_WORKER,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 2.0,
        retries: int = 1,
        curve_server_key: str | None = None,
        curve_client_key: str | None = None,
        use_depth: bool = True,
        refine: bool = True,
        refine_max_points: int = 400,
        min_refine_points: int = 30,
        refine_scale_limits: tuple[float, float] = (0.5, 2.0),
        min_refine_inliers: float = 0.3,
        seed: int | None = None,
        stage1_inference_steps: int | None = None,
        stage2_inference_steps: int | None = None,
        use_stage1_distillation: bool | None = None,
        use_stage2_distillation: bool | None = None,
        stage1_only: bool | None = None,
        with_mesh_postprocess: bool | None = None,
        with_texture_baking: bool | None = None,
    ) -> None:
        self.use_depth = bool(use_depth)
        self.refine = bool(refine)
        self.refine_max_points = int(refine_max_points)
        self.min_refine_points = int(min_refine_points)
        self.refine_scale_limits = (float(refine_scale_limits[0]), float(refine_scale_limits[1]))
        self.min_refine_inliers = float(min_refine_inliers)
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ValueError("seed must be a non-negative integer")
        self.seed = seed
        options = {"stage1_inference_steps": stage1_inference_steps, "stage2_inference_steps": stage2_inference_steps,
                   "use_stage1_distillation": use_stage1_distillation,
                   "use_stage2_distillation": use_stage2_distillation, "stage1_only": stage1_only,
                   "with_mesh_postprocess": with_mesh_postprocess, "with_texture_baking": with_texture_baking}
        self.options = {k: v for k, v in options.items() if v is not None}
        for name, value in self.options.items():
            if not SPEED_OPTIONS[name](value):
                raise ValueError(f"{name}={value!r} is out of range")
        self._warned_dropped: set[str] = set()
        endpoints = [e for e in (worker.split(",") if isinstance(worker, str) else worker) if e and e.strip()]
        endpoints = endpoints or os.environ.get("SAM3D_WORKER", DEFAULT_WORKER).split(",")  # "" = $SAM3D_WORKER
        self.client = WorkerClient(endpoints, timeout_s, connect_timeout_s, retries, curve_server_key or None,
                                   curve_client_key or None)

    def close(self) -> None:
        """Close the worker sockets."""
        self.client.close()

    def reconstruct(
        self, frame: RGBDFrame, mask: np.ndarray, scene: SceneContext, object_id: str = "", label: str = "",
        score: float = 1.0,
    ) -> ObjectReconstruction:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        rgb = np.asarray(frame.rgb)
        mask = np.asarray(mask)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape[:2]:
            raise ReconstructionError(f"colour image must be H x W x 3 uint8 and not empty, got {rgb.shape} "
                                      f"{rgb.dtype}")
        if mask.shape != rgb.shape[:2]:
            raise ReconstructionError(f"mask is {mask.shape[::-1]} but the image is {rgb.shape[1::-1]}")
        mask = mask.astype(bool)
        if not mask.any():
            raise ReconstructionError("mask is empty")
        arrays = {"image": rgb, "mask": mask}
        depth = frame.depth_m if self.use_depth else None
        if depth is not None:
            try:
                arrays["pointmap"] = frames.pointmap_p3d_from_depth(depth, frame.intrinsics)
            except ValueError as exc:
                raise ReconstructionError(str(exc)) from None
        timings["pointmap_ms"] = (time.perf_counter() - start) * 1e3
        meta = {"seed": self.seed, "options": self.options, "sent_unix_s": time.time(),
                "timeout_s": self.client.timeout_s}
        request = wire.WireMessage("reconstruct", uuid.uuid4().hex, meta, arrays)
        sent = time.perf_counter()
        reply, endpoint = self.client.request(request)
        timings["roundtrip_ms"] = (time.perf_counter() - sent) * 1e3
        if reply.type == "error":
            raise WorkerError(f"sam3d worker {endpoint}: {reply.meta.get('message', 'error')}")
        if reply.type != "result":
            raise WorkerError(f"sam3d worker {endpoint} answered '{reply.type}' to a reconstruct request")
        inference_s = reply.meta.get("inference_s")
        inference_ms = float(inference_s) * 1e3 if isinstance(inference_s, (int, float)) else 0.0
        dropped = [str(d) for d in reply.meta.get("dropped_options", []) if isinstance(d, str)]
        if set(dropped) - self._warned_dropped:
            self._warned_dropped |= set(dropped)
            LOG.warning("the model at %s does not take %s: ignored (see models/README.md)", endpoint,
                        ", ".join(dropped))
        convert = time.perf_counter()
        try:
            pose = model_pose_from_arrays(reply.arrays)
        except ValueError as exc:
            raise WorkerError(f"sam3d worker {endpoint} returned an unusable result: {exc}") from None
        T_cam_obj, vertices_obj = pose.T_cam_obj, pose.vertices_obj
        timings["convert_ms"] = (time.perf_counter() - convert) * 1e3
        info: dict[str, Any] = {"worker": endpoint, "inference_s": inference_ms / 1e3, "model_scale": pose.model_scale,
                                "pointmap_sent": "pointmap" in arrays, "mesh_from_voxels": pose.from_voxels,
                                "mesh_source": "voxel_hull" if pose.from_voxels else "model",
                                "dropped_options": dropped, "refined": False}
        if pose.from_voxels:  # never a silent substitute: say why the model gave no mesh
            reason = reply.meta.get("no_mesh_reason")
            info["no_mesh_reason"] = (str(reason) if isinstance(reason, str) and reason
                                      else "the model returned no glb mesh")
        stages = reply.meta.get("stages_s")
        if isinstance(stages, dict):
            info["model_stages_s"] = {str(k): float(v) for k, v in stages.items() if isinstance(v, (int, float))}
        if isinstance(reply.meta.get("gpu_peak_bytes"), int):
            info["gpu_peak_mib"] = reply.meta["gpu_peak_bytes"] / 2**20
        if isinstance(reply.meta.get("layout_postprocess"), bool):
            info["layout_postprocess"] = reply.meta["layout_postprocess"]
        if depth is not None and self.refine:
            refine_start = time.perf_counter()
            T_cam_obj, vertices_obj = self._refine(frame, mask, scene, T_cam_obj, vertices_obj, pose.faces, info)
            timings["refine_ms"] = (time.perf_counter() - refine_start) * 1e3
        metric = depth is not None
        if not metric:
            info["scale_note"] = "no depth: scale and distance are the model's guess, up to one common factor"
        mesh_obj = trimesh.Trimesh(vertices=vertices_obj, faces=pose.faces, process=False)
        colors = pose.colors
        if colors is None:  # stage-1 voxel hull: plain grey
            colors = np.tile(np.array([[180, 180, 180, 255]], np.uint8), (len(vertices_obj), 1))
        mesh_obj.visual.vertex_colors = colors
        total_ms = (time.perf_counter() - start) * 1e3
        timings["total_ms"] = total_ms
        timings["overhead_ms"] = total_ms - inference_ms
        info["timings_ms"] = timings
        return ObjectReconstruction(
            object_id=object_id, label=label, score=score, T_cam_obj=T_cam_obj,
            size_obj=vertices_obj.max(axis=0) - vertices_obj.min(axis=0), mesh_obj=mesh_obj, mask=mask,
            metric_scale=metric, backend=self.name, info=info,
        )

    def _refine(self, frame: RGBDFrame, mask: np.ndarray, scene: SceneContext, T_cam_obj: np.ndarray,
                vertices_obj: np.ndarray, faces: np.ndarray, info: dict) -> tuple[np.ndarray, np.ndarray]:
        """Scale + pose fit to the mask's depth; the model's pose is kept (and said so) when it cannot run."""
        points_cam = observed_points_cam(frame.depth_m, frame.intrinsics, mask, max_points=self.refine_max_points)
        if len(points_cam) < self.min_refine_points:
            info["refine_skipped"] = f"{len(points_cam)} depth points in the mask (< {self.min_refine_points})"
            return T_cam_obj, vertices_obj
        try:
            result = refine_scale_pose(points_cam, vertices_obj, faces, T_cam_obj, depth_m=frame.depth_m,
                                       intrinsics=frame.intrinsics, mask=mask, occluders=scene.others_mask,
                                       scale_limits=self.refine_scale_limits, min_points=self.min_refine_points)
        except ValueError as exc:
            info["refine_skipped"] = str(exc)
            return T_cam_obj, vertices_obj
        lo, hi = self.refine_scale_limits
        if not lo * 1.001 < result.scale_factor < hi * 0.999 or result.inlier_fraction < self.min_refine_inliers:
            info["refine_skipped"] = (f"fit rejected (scale x{result.scale_factor:.2f}, "
                                      f"{result.inlier_fraction:.0%} of the depth points on the surface)")
            return T_cam_obj, vertices_obj
        info.update(refined=True, refine_scale_factor=result.scale_factor, refine_rmse_m=result.rmse_m,
                    refine_inlier_fraction=result.inlier_fraction, refine_icp_accepted=result.icp_accepted)
        return result.T_cam_obj, vertices_obj * result.scale_factor
