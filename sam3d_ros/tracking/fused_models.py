"""The fused multi-view model of every tracked object, fed frame by frame off the tracking thread (ROS-free).

The node hands each tracked frame (`FusionFrame`: depth, colour, the support plane and, per object seen, its mask,
tracked pose, tracker fit and current mesh) to `FusedModels.integrate` on its own thread. Each object's
`ObjectFusion` starts from the object's current reconstruction (the prior) and takes a view when the camera looks
at the object from a new direction (more than `min_view_change_deg` from every view it took) or has come nearer
or further by a quarter. A fused mesh is handed out at most once per `min_interval_s` per object and only when
the last views flipped at least `min_changed_voxels` voxels; the node installs it in the tracker
(`ObjectTracker.install_mesh`) and reports the new mesh version back (`installed`). When the tracker got a new
reconstruction (a newer mesh version than the model knows), the model starts again from it: its object frame may
differ.

With a `GraspPlanner`, each fused mesh handed out comes with its grasps (`FusedMesh.grasps_obj`), planned here (off the
tracking thread; in `FusionProcess`, in the child process) against the frame's support plane and the other objects
seen in the same frame, each at its tracked pose with the newest mesh this side knows of it: a fused mesh's grasps
fit its fused shape, not the single-view guess the grasps of its reconstruction were planned on.

Each fused mesh also comes with the tracker's model of it (`FusedMesh.tracking_model`, its surface samples), sampled
here: about 10 ms of numpy per 5000-triangle mesh that the node's process no longer spends beside its tracking thread.

A fused mesh over the frame's `display_max_triangles` (the node's `marker_max_triangles`) comes with its decimated
copy for the viewer's markers (`FusedMesh.display_mesh_obj`), made here too: decimating holds the GIL of the process
it runs in.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import trimesh

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.grasps import Grasp, GraspPlanner, SceneMeshes
from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.geometry.transforms import invert_transform
from sam3d_ros.geometry.types import ObjectPrompt
from sam3d_ros.reconstruction.fusion import FusionConfig, ObjectFusion
from sam3d_ros.reconstruction.pipeline import support_plane_around
from sam3d_ros.tracking.pose_tracking import ObjectModel


@dataclass
class FusionView:
    """One object in one frame."""

    track_id: str
    mesh_version: int  # the tracker's mesh version the pose refers to
    prior_mesh_obj: trimesh.Trimesh | None  # the tracker's current mesh (the prior when a model starts); None when
    # the receiver was given this mesh version before (FusionProcess sends each version's mesh once)
    T_cam_obj: np.ndarray
    mask: np.ndarray  # (H, W) bool
    fitness: float
    rmse_m: float


@dataclass
class FusionFrame:
    """What fusion needs of one tracked frame."""

    stamp_ns: int
    depth_m: np.ndarray
    rgb: np.ndarray | None
    intrinsics: CameraIntrinsics
    support_plane_cam: np.ndarray | None  # None: estimated here from the frame's depth around the objects
    views: list[FusionView]
    display_max_triangles: int = 0  # each fused mesh over this many triangles comes with a decimated copy for
    # display (FusedMesh.display_mesh_obj; 0: none made)


@dataclass
class FusedMesh:
    """A fused mesh due for installation, in the object frame of `mesh_version`."""

    track_id: str
    mesh_version: int
    mesh_obj: trimesh.Trimesh
    views: int  # views integrated so far
    grasps_obj: list[Grasp] | None = None  # planned on mesh_obj, best first, object frame; None: not planned
    grasp_error: str = ""  # why planning failed (grasps_obj is then None)
    display_mesh_obj: trimesh.Trimesh | None = None  # mesh_obj quadric-decimated to the frame's display_max_triangles,
    # vertex colours kept (a viewer's markers); None: mesh_obj is within that budget (or none was asked)
    tracking_model: ObjectModel | None = None  # mesh_obj's model for the tracker, sampled here (off the tracking
    # process's GIL); None: it could not be (ObjectModel.from_mesh raises the reason where it is made again)


@dataclass
class _Model:
    fusion: ObjectFusion
    base_version: int  # the mesh version the model started from (its object frame)
    version: int  # the newest mesh version in that frame (its own installed meshes included)
    mesh_obj: trimesh.Trimesh  # the newest mesh of the object this side knows (the prior, then each fused mesh)
    collision_model: Any = None  # mesh_obj's fcl model for grasp planning, kept while mesh_obj stays (None: not built)
    directions_obj: list[np.ndarray] = field(default_factory=list)  # unit camera directions of the views taken
    distances_m: list[float] = field(default_factory=list)
    last_mesh_s: float = -1e18


class FusedModels:
    """Per tracked object, an `ObjectFusion` (used from one thread at a time)."""

    def __init__(self, config: FusionConfig | None = None, min_interval_s: float = 1.0, min_changed_voxels: int = 200,
                 min_view_change_deg: float = 5.0, grasp_planner: GraspPlanner | None = None) -> None:
        self.config = config or FusionConfig()
        self.config.validate()
        if min_interval_s < 0 or min_changed_voxels < 0 or min_view_change_deg < 0:
            raise ValueError("min_interval_s, min_changed_voxels and min_view_change_deg must be >= 0")
        self.min_interval_s = min_interval_s
        self.min_changed_voxels = min_changed_voxels
        self.min_view_change_rad = np.radians(min_view_change_deg)
        self.grasp_planner = grasp_planner
        self._models: dict[str, _Model] = {}
        self.views_integrated = 0
        self.views_skipped = 0
        self.last_skip_reason = ""

    def _model_for(self, view: FusionView) -> _Model | None:
        model = self._models.get(view.track_id)
        if model is not None and view.mesh_version < model.base_version:
            return None  # a view of the frame before the model's reconstruction
        if model is None or view.mesh_version > model.version:  # new, or reconstructed again
            if view.prior_mesh_obj is None:
                raise ValueError(f"no mesh of version {view.mesh_version} to start a model from")
            model = _Model(ObjectFusion(view.prior_mesh_obj, self.config), view.mesh_version, view.mesh_version,
                           view.prior_mesh_obj)
            self._models[view.track_id] = model
        return model

    def _new_view(self, model: _Model, T_cam_obj: np.ndarray) -> bool:
        camera_obj = invert_transform(T_cam_obj)[:3, 3]
        distance = float(np.linalg.norm(camera_obj))
        if not distance > 0:
            return False
        direction = camera_obj / distance
        for seen, seen_distance in zip(model.directions_obj, model.distances_m):
            if np.arccos(np.clip(direction @ seen, -1.0, 1.0)) < self.min_view_change_rad \
                    and abs(distance - seen_distance) < 0.25 * seen_distance:
                return False
        model.directions_obj.append(direction)
        model.distances_m.append(distance)
        return True

    def integrate(self, frame: FusionFrame, now_s: float) -> list[FusedMesh]:
        """Fuse the frame's new views; the fused meshes now due (see the module docstring). A view that fails is
        skipped and counted; it never costs the other objects."""
        due = []
        plane_cam, plane_known = frame.support_plane_cam, frame.support_plane_cam is not None
        union = None
        if len(frame.views) > 1:
            union = np.zeros(frame.depth_m.shape, dtype=np.uint16)
            for view in frame.views:
                union += view.mask.astype(np.uint16)
        for view in frame.views:
            try:
                model = self._model_for(view)
            except ValueError as exc:
                self.views_skipped += 1
                self.last_skip_reason = f"object {view.track_id}: {exc}"
                continue
            if model is None or not self._new_view(model, view.T_cam_obj):
                continue
            if not plane_known:  # per frame, when a view is taken: a moving camera sees the table anew every frame,
                # and most frames of a still or slow camera bring no new view (the estimate was most of their cost)
                plane_cam, plane_known = _frame_support_plane(frame), True
            occluders = None if union is None else (union - view.mask.astype(np.uint16)) > 0
            result = model.fusion.integrate(frame.depth_m, view.mask, frame.intrinsics, view.T_cam_obj, rgb=frame.rgb,
                                            fitness=view.fitness, rmse_m=view.rmse_m,
                                            support_plane_cam=plane_cam, occluders_mask=occluders)
            if not result.accepted:
                model.directions_obj.pop()
                model.distances_m.pop()
                self.views_skipped += 1
                self.last_skip_reason = f"object {view.track_id}: {result.reason}"
                continue
            self.views_integrated += 1
            since_s = now_s - model.last_mesh_s  # < 0: the clock went back (a reset): due as if the interval passed
            if (since_s >= self.min_interval_s or since_s < 0) and model.fusion.changed_voxels >= self.min_changed_voxels:
                try:
                    mesh = model.fusion.mesh()
                except ValueError as exc:
                    self.last_skip_reason = f"object {view.track_id}: {exc}"
                    continue
                model.last_mesh_s = now_s
                model.mesh_obj, model.collision_model = mesh, None
                due.append(FusedMesh(view.track_id, model.version, mesh, model.fusion.views_integrated,
                                     display_mesh_obj=_display_mesh(mesh, frame.display_max_triangles),
                                     tracking_model=_tracking_model(mesh)))
        if due and self.grasp_planner is not None:
            self._plan_grasps(due, frame, plane_cam)
        return due

    def _plan_grasps(self, due: list[FusedMesh], frame: FusionFrame, plane_cam: np.ndarray | None) -> None:
        """Plan the grasps of each fused mesh in `due` among the frame's objects (each view's newest known mesh at its
        tracked pose) and its support plane; a failure costs that object's grasps only."""
        models, poses, index_of = [], [], {}
        for view in frame.views:
            model = self._models.get(view.track_id)
            if model is None or view.mesh_version < model.base_version or view.track_id in index_of:
                continue  # no mesh known in the frame this view's pose refers to
            index_of[view.track_id] = len(models)
            models.append(model)
            poses.append(view.T_cam_obj)
        # Each mesh's collision model is built once, not for every fused mesh of any object in its frame
        scene, reason = SceneMeshes.build([m.mesh_obj for m in models], poses, [m.collision_model for m in models])
        if scene is not None:
            for model, collision_model in zip(models, scene.models):
                model.collision_model = collision_model
        for fused in due:
            if scene is None:
                fused.grasp_error = reason
                continue
            grasps, reason_one = scene.plan_or_reason(self.grasp_planner, index_of[fused.track_id], plane_cam)
            if reason_one:
                fused.grasp_error = reason_one
            else:
                fused.grasps_obj = grasps

    def installed(self, track_id: str, mesh_version: int) -> None:
        """The tracker installed a fused mesh of `track_id` as `mesh_version` (same object frame)."""
        model = self._models.get(track_id)
        if model is not None:
            model.version = max(model.version, mesh_version)

    def forget(self, keep_ids: set[str]) -> None:
        """Drop the models of objects no longer tracked."""
        for track_id in list(self._models):
            if track_id not in keep_ids:
                del self._models[track_id]

    def bytes_by_object(self) -> dict[str, int]:
        """Memory of each object's model (bytes)."""
        return {track_id: model.fusion.bytes_used for track_id, model in list(self._models.items())}


def _tracking_model(mesh_obj: trimesh.Trimesh) -> ObjectModel | None:
    """The tracker's model of a fused mesh, or None when it has no surface to sample."""
    try:
        return ObjectModel.from_mesh(mesh_obj)
    except ValueError:
        return None


def _frame_support_plane(frame: FusionFrame) -> np.ndarray | None:
    """The support plane (optical frame) from the frame's depth around all its objects."""
    return support_plane_around(frame.depth_m, frame.intrinsics,
                                [ObjectPrompt(view.track_id, mask=view.mask) for view in frame.views])


def _display_mesh(mesh_obj: trimesh.Trimesh, max_triangles: int) -> trimesh.Trimesh | None:
    """`mesh_obj` decimated to `max_triangles` with its vertex colours, made here (in FusionProcess's child) so the node's
    marker conversion holds its GIL for the small copy only; None when within the budget or none is asked."""
    if max_triangles < 4 or len(mesh_obj.faces) <= max_triangles:
        return None
    return simplified_mesh(mesh_obj, max_triangles, vertex_colors=np.asarray(mesh_obj.visual.vertex_colors))


#: The fusion process's CPU priority (FusionProcess `priority`; the node's fusion_cpu_priority).
FUSION_PRIORITIES = ("idle", "low")


def _lower_priority(priority: str) -> None:
    """Make this process give way to the others. "idle": Linux's SCHED_IDLE policy for each of its threads: it runs on
    a core nothing else wants, and a waking tracking thread takes the core from it at once; on a machine with no free
    core it hardly runs. "low": nice 10 (a weight of 110 against 1024): it keeps about a tenth of a busy core, but a
    waking thread may wait for its slice (nice 19 did no better for the node's latency on this machine's kernel, 6.18).
    bench-node, 10 objects, p95 latency: idle 42-45 ms, nice 10 64-77 ms, nice 19 63-71 ms, fusion off 37-50 ms
    (README, "Fusion's CPU priority"). Where SCHED_IDLE is not available, "idle" falls back to "low"."""
    if priority == "idle":
        try:
            for tid in os.listdir("/proc/self/task"):
                os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError, ValueError):
            pass
    try:
        os.nice(10)
    except OSError:
        pass  # the normal priority, then


def _serve(connection, config: FusionConfig, min_interval_s: float, grasp_planner: GraspPlanner | None,
           priority: str = "idle") -> None:
    """The child process of `FusionProcess`: one FusedModels, driven by messages until "stop" or a closed pipe. It
    runs at a low CPU priority (`_lower_priority`): on a busy machine tracking comes first.

    Every frame arrives with its views' prior meshes, unpickled into new trimesh objects, and an unpickled mesh is
    cyclic garbage (its cache refers back to it): only the garbage collector frees it, and with few Python objects
    made per frame its full collections come so rarely that the meshes of hundreds of frames piled up (the process
    grew by about 5 MB/s at 30 Hz with 5 objects). So the objects of the imports are frozen out of collection once and
    each frame's garbage is collected after its answer (a collection then walks only the objects made since)."""
    _lower_priority(priority)
    models = FusedModels(config, min_interval_s, grasp_planner=grasp_planner)
    gc.freeze()
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "installed":
            models.installed(*message[1:])
            continue
        _, frame, now_s, keep_ids = message
        try:
            models.forget(keep_ids)
            due, error = models.integrate(_with_full_masks(frame), now_s), ""
        except Exception as exc:  # one bad frame costs itself only
            due, error = [], f"{type(exc).__name__}: {exc}"
        connection.send((due, error, models.bytes_by_object(), models.views_integrated, models.views_skipped,
                         models.last_skip_reason))
        del message, frame, due
        gc.collect()


@dataclass(frozen=True)
class CroppedMask:
    """A view's (H, W) bool mask as its bounding box's content: how FusionProcess sends masks to its child. Full masks
    are 0.3 MB each at 640x480: 3 of the 5.2 MB a frame at 10 objects copied into the pipe on the node's fusion thread
    (2.2 MB with these). In bench-node this alone did not move the node's p95 latency (the fusion process's priority
    did, see `_lower_priority`); it is less copying on the node's side for the same fused result."""

    shape: tuple[int, int]
    top: int
    left: int
    crop: np.ndarray  # (h, w) bool: the mask's rows top..top+h, columns left..left+w

    @classmethod
    def of(cls, mask: np.ndarray) -> CroppedMask:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            return cls(tuple(mask.shape), 0, 0, np.zeros((0, 0), dtype=bool))
        top, left = int(rows[0]), int(cols[0])
        return cls(tuple(mask.shape), top, left, np.ascontiguousarray(mask[top:rows[-1] + 1, left:cols[-1] + 1], dtype=bool))

    def full(self) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        height, width = self.crop.shape
        mask[self.top:self.top + height, self.left:self.left + width] = self.crop
        return mask


def _with_full_masks(frame: FusionFrame) -> FusionFrame:
    """`frame` as FusionProcess's child gets it, its views' CroppedMasks made whole again."""
    return replace(frame, views=[replace(view, mask=view.mask.full()) if isinstance(view.mask, CroppedMask) else view
                                 for view in frame.views])


class FusionProcess:
    """`FusedModels` in a child process, so its numpy work never holds the caller's GIL (a node's tracking thread
    keeps its latency). `integrate` blocks its calling thread until the child answers; one caller at a time."""

    def __init__(self, config: FusionConfig | None = None, min_interval_s: float = 1.0,
                 grasp_planner: GraspPlanner | None = None, priority: str = "idle") -> None:
        """`grasp_planner`: each fused mesh comes with its grasps (see the module docstring); None: none planned.
        `priority`: the child's CPU priority, one of FUSION_PRIORITIES (see `_lower_priority`)."""
        if priority not in FUSION_PRIORITIES:
            raise ValueError(f"fusion priority must be one of {', '.join(FUSION_PRIORITIES)}, got '{priority}'")
        self._priority = priority
        self._config = config or FusionConfig()
        self._config.validate()
        self._min_interval_s = min_interval_s
        self._grasp_planner = grasp_planner
        self._closed = False
        self._sent_versions: dict[str, int] = {}  # track id -> newest mesh version whose mesh the child was sent
        self._start()
        self.restarts = 0
        self.bytes_by_object: dict[str, int] = {}
        self.views_integrated = 0
        self.views_skipped = 0
        self.last_skip_reason = ""

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process with DDS threads
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self._config, self._min_interval_s, self._grasp_planner,
                                                                self._priority),
                                        name="sam3d_fusion", daemon=True)
        self._process.start()
        child.close()

    def integrate(self, frame: FusionFrame, now_s: float, keep_ids: set[str]) -> list[FusedMesh]:
        """Forget models not in `keep_ids`, fuse the frame (see FusedModels.integrate); RuntimeError when the child
        failed on it, or died (it is started again, its models empty, for the next frame)."""
        if self._closed:
            raise RuntimeError("the fusion process was stopped")
        frame = self._without_sent_meshes(frame, keep_ids)
        frame = replace(frame, views=[replace(view, mask=CroppedMask.of(view.mask)) for view in frame.views])
        try:
            self._connection.send(("integrate", frame, now_s, set(keep_ids)))
            due, error, self.bytes_by_object, self.views_integrated, self.views_skipped, self.last_skip_reason = \
                self._connection.recv()
        except (EOFError, OSError, TypeError) as exc:  # TypeError: the pipe was closed meanwhile
            if self._closed:
                raise RuntimeError("the fusion process was stopped") from exc
            self._process.join(1.0)
            code = self._process.exitcode
            self._connection.close()
            self._start()
            self._sent_versions = {}
            self.restarts += 1
            self.bytes_by_object = {}
            raise RuntimeError(f"the fusion process died (exit code {code}: {exc}); started again") from exc
        if error:
            self._sent_versions = {}  # the frame may have failed before its meshes were taken: send them again
            raise RuntimeError(error)
        return due

    def _without_sent_meshes(self, frame: FusionFrame, keep_ids: set[str]) -> FusionFrame:
        """`frame` with the prior mesh left out of each view whose mesh version the child was already sent: a mesh
        goes through the pipe once per version, not with every frame (pickling 20 objects' meshes at 30 Hz held the
        tracking process's GIL). Versions of objects no longer tracked are forgotten, as the child forgets their models."""
        for track_id in [t for t in self._sent_versions if t not in keep_ids]:
            del self._sent_versions[track_id]
        views = []
        for view in frame.views:
            if self._sent_versions.get(view.track_id, -1) >= view.mesh_version:
                view = replace(view, prior_mesh_obj=None)
            elif view.prior_mesh_obj is not None:
                self._sent_versions[view.track_id] = view.mesh_version
            views.append(view)
        return replace(frame, views=views)

    def installed(self, track_id: str, mesh_version: int) -> None:
        """See FusedModels.installed."""
        try:
            self._connection.send(("installed", track_id, mesh_version))
        except (OSError, BrokenPipeError):
            pass

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the child process (terminated when it does not stop within `timeout_s`: it may be mid-frame)."""
        self._closed = True
        try:
            self._connection.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(2.0)
        self._connection.close()


__all__ = ["FUSION_PRIORITIES", "CroppedMask", "FusedMesh", "FusedModels", "FusionFrame", "FusionProcess", "FusionView"]
