"""The perception pipeline shared by the node and the CLI: prompts + RGB-D frame -> reconstructed objects."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import trimesh

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.grasps import GraspPlanner, SceneMeshes
from sam3d_ros.geometry.support_plane import estimate_support_plane
from sam3d_ros.geometry.types import InputError, ObjectPrompt, ObjectReconstruction, RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.base import ReconstructionBackend, ReconstructionError
from sam3d_ros.reconstruction.box_segmenter import BoxSegmenter, DepthBoxSegmenter
from sam3d_ros.reconstruction.segmentation import boxes_in_image, clip_box


@dataclass
class PipelineResult:
    """Objects reconstructed from one frame and one line per object that could not be."""

    objects: list[ObjectReconstruction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    support_plane_cam: np.ndarray | None = None


def support_plane_around(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, prompts: list[ObjectPrompt]
) -> np.ndarray | None:
    """The support plane (optical frame) from the depth outside every prompt's mask, or box when it has no mask."""
    exclude = np.zeros(depth_m.shape, dtype=bool)
    for prompt in prompts:
        if prompt.mask is not None:
            exclude |= prompt.mask.astype(bool)
        elif prompt.bbox_xyxy is not None:
            x0, y0, x1, y1 = clip_box(prompt.bbox_xyxy, intrinsics.width, intrinsics.height)
            exclude[y0:y1, x0:x1] = True
    return estimate_support_plane(depth_m, intrinsics, exclude)


class PerceptionPipeline:
    """Segment (when only boxes came), estimate the support plane, reconstruct every object with one backend."""

    def __init__(
        self, backend: ReconstructionBackend, min_mask_pixels: int = 50, box_segmenter: BoxSegmenter | None = None,
        fallback: ReconstructionBackend | None = None, grasp_planner: GraspPlanner | None = None,
    ) -> None:
        """`fallback` (e.g. the depth backend behind a SAM 3D worker) reconstructs an object the backend fails on;
        `grasp_planner` (None: no grasps) plans every object's grasps among the others of the same frame."""
        self.backend = backend
        self.grasp_planner = grasp_planner
        self.fallback = fallback
        self.min_mask_pixels = min_mask_pixels
        self.box_segmenter = box_segmenter or DepthBoxSegmenter()

    def process(self, frame: RGBDFrame, prompts: list[ObjectPrompt]) -> PipelineResult:
        """Reconstruct every prompt of `frame`; raises InputError when the frame itself is unusable."""
        frame.validate()
        if frame.depth_m is None and self.backend.needs_depth:
            raise InputError(f"no depth image: the '{self.backend.name}' backend cannot reconstruct metrically without it")
        result = PipelineResult()
        height, width = frame.rgb.shape[:2]
        for prompt in prompts:
            if prompt.mask is not None and prompt.mask.shape != (height, width):
                raise InputError(f"mask is {prompt.mask.shape[1]}x{prompt.mask.shape[0]} but the image is {width}x{height}")
        prompts, box_errors = boxes_in_image(prompts, width, height)  # a box off the image costs that object only
        result.errors += box_errors
        if frame.depth_m is not None:
            result.support_plane_cam = support_plane_around(frame.depth_m, frame.intrinsics, prompts)
        # Boxes without a mask are segmented together (SAM embeds the image once per frame).
        boxed = [p for p in prompts if p.mask is None and p.bbox_xyxy is not None]
        mask_of_box = self._segment_boxes(frame, boxed, result)
        masks = [p.mask.astype(bool) if p.mask is not None else mask_of_box.get(id(p)) for p in prompts]
        # How many masks cover each pixel: an object's "others" are the pixels covered by more masks than its own
        # (one pass over the masks for all objects instead of a union of the others per object).
        coverage = np.zeros((height, width), dtype=np.uint16)
        for mask in masks:
            if mask is not None:
                coverage += mask
        failed_boxes = {id(p) for p in boxed} - set(mask_of_box)
        for prompt, mask in zip(prompts, masks):
            if id(prompt) in failed_boxes:
                continue  # already reported
            if mask is None or mask.sum() < self.min_mask_pixels:
                pixels = 0 if mask is None else int(mask.sum())
                result.errors.append(f"object {prompt.object_id}: mask has {pixels} pixels (< {self.min_mask_pixels})")
                continue
            scene = SceneContext(support_plane_cam=result.support_plane_cam, others_mask=coverage > mask)
            try:
                obj = self.backend.reconstruct(frame, mask, scene, prompt.object_id, prompt.label, prompt.score)
            except Exception as exc:  # whatever one object raises costs that object only, never the others
                usable = self.fallback is not None and (frame.depth_m is not None or not self.fallback.needs_depth)
                if not usable:
                    result.errors.append(f"object {prompt.object_id}: {_reason(exc)}")
                    continue
                result.errors.append(
                    f"object {prompt.object_id}: {self.backend.name}: {_reason(exc)}; used the {self.fallback.name} backend"
                )
                try:
                    obj = self.fallback.reconstruct(frame, mask, scene, prompt.object_id, prompt.label, prompt.score)
                except Exception as fallback_exc:
                    result.errors.append(f"object {prompt.object_id}: {self.fallback.name}: {_reason(fallback_exc)}")
                    continue
            result.objects.append(obj)
        if self.grasp_planner is not None:
            result.errors += plan_grasps(self.grasp_planner, result.objects, result.support_plane_cam)
        return result

    def _segment_boxes(self, frame: RGBDFrame, boxed: list[ObjectPrompt], result: PipelineResult) -> dict[int, np.ndarray]:
        """Masks of the boxed prompts (by id()), all boxes in one call; when that call fails, box by box, so a box
        the segmenter cannot handle costs that object only (its reason goes to `result.errors`)."""
        if not boxed:
            return {}

        def segment(some: list[ObjectPrompt]) -> list[np.ndarray]:
            boxes = [p.bbox_xyxy for p in some]
            return self.box_segmenter.segment(frame.rgb, frame.depth_m, frame.intrinsics, boxes, result.support_plane_cam)

        try:
            return {id(p): m for p, m in zip(boxed, segment(boxed))}
        except Exception:  # find which boxes fail
            masks = {}
            for prompt in boxed:
                try:
                    masks[id(prompt)] = segment([prompt])[0]
                except Exception as exc:
                    result.errors.append(f"object {prompt.object_id}: box segmentation: {_reason(exc)}")
            return masks


def plan_grasps(
    planner: GraspPlanner, objects: list[ObjectReconstruction], support_plane_cam: np.ndarray | None,
    obstacles: list[tuple[trimesh.Trimesh, np.ndarray]] = (),
) -> list[str]:
    """Set `grasps_obj` (object frame, best first) and info["grasps_ms"] (wall) and ["grasps_cpu_ms"] of every object, each planned against the
    support plane, all the objects' meshes and `obstacles` ((mesh_obj, T_cam_obj) of other known objects, e.g. the
    node's tracked ones); return one line per object whose planning failed (it gets none)."""
    errors = []
    start, start_cpu = time.perf_counter(), time.thread_time()
    scene, reason = SceneMeshes.build([o.mesh_obj for o in objects] + [m for m, _ in obstacles],
                                      [o.T_cam_obj for o in objects] + [T for _, T in obstacles])
    if scene is None:
        for obj in objects:
            obj.grasps_obj = []
        return [f"grasps: {reason}"]
    shared_ms = (time.perf_counter() - start) * 1e3 / max(len(objects), 1)  # collision models, split evenly
    shared_cpu_ms = (time.thread_time() - start_cpu) * 1e3 / max(len(objects), 1)
    for index, obj in enumerate(objects):
        start, start_cpu = time.perf_counter(), time.thread_time()
        obj.grasps_obj, reason = scene.plan_or_reason(planner, index, support_plane_cam)
        if reason:
            errors.append(f"object {obj.object_id}: grasps: {reason}")
        obj.info["grasps_ms"] = shared_ms + (time.perf_counter() - start) * 1e3
        obj.info["grasps_cpu_ms"] = shared_cpu_ms + (time.thread_time() - start_cpu) * 1e3  # this thread's CPU time
    return errors


def _reason(exc: Exception) -> str:
    """A backend's own failure as it words it; anything else (a bug, a library giving up) with its type."""
    return str(exc) if isinstance(exc, ReconstructionError) else f"unexpected {type(exc).__name__}: {exc}"
