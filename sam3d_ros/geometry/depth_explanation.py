"""How well a reconstructed mesh explains the depth image it came from (hypothesis scoring and confidence).

The mesh is ray-cast from the camera over the bounding box of the mask and of the mesh's projection (on a pixel
grid of at most `max_rays` rays). Two facts of a single view must hold for any right shape:
- the silhouette: the mesh covers the mask's pixels and no others (intersection over union of the two), except
  where a surface the camera saw nearer than the mesh hides it (an occluder in front of its lower part);
- free space: where the camera saw a surface (valid depth), nothing of the object lies in front of it (the camera
  looked through that space): not outside the mask (a mirrored half over the table seen behind), nor inside it (a
  cap over a bowl's inside), nor over another object. Where another object is nearer than the mesh, the mesh may
  go on behind it: no violation.
The score is silhouette IoU x (1 - the fraction of the rendered pixels that violate free space). Only pixels of the
image count: a mesh going on beyond the image border (an object the frame cuts) is not charged for that part.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh

from sam3d_ros.geometry.camera import CameraIntrinsics


@dataclass(frozen=True)
class DepthExplanation:
    silhouette_iou: float  # rendered silhouette vs mask, over the grid
    free_space_violation: float  # fraction of the rendered pixels that hide a surface the camera saw behind
    score: float  # silhouette_iou * (1 - free_space_violation), in [0, 1]


def explain_depth(
    mesh_obj: trimesh.Trimesh, T_cam_obj: np.ndarray, intrinsics: CameraIntrinsics, depth_m: np.ndarray,
    mask: np.ndarray, margin_m: float = 0.01, max_rays: int = 3000,
) -> DepthExplanation:
    """Score `mesh_obj` (object frame, placed by `T_cam_obj`) against the depth image and the mask (see module doc).
    `margin_m`: how far in front of a seen surface the mesh must be to violate it (the depth noise and more)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return DepthExplanation(0.0, 1.0, 0.0)
    height, width = mask.shape
    vertices_cam = mesh_obj.vertices @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    front = vertices_cam[:, 2] > 1e-6
    if front.any():  # the grid covers the mesh's own projection too
        u = vertices_cam[front, 0] / vertices_cam[front, 2] * intrinsics.fx + intrinsics.cx
        v = vertices_cam[front, 1] / vertices_cam[front, 2] * intrinsics.fy + intrinsics.cy
        r0, r1 = min(r0, int(np.floor(v.min()))), max(r1, int(np.ceil(v.max())) + 1)
        c0, c1 = min(c0, int(np.floor(u.min()))), max(c1, int(np.ceil(u.max())) + 1)
    r0, r1, c0, c1 = max(0, r0 - 2), min(height, r1 + 2), max(0, c0 - 2), min(width, c1 + 2)
    step = max(1, int(np.ceil(np.sqrt((r1 - r0) * (c1 - c0) / max_rays))))
    grid_r, grid_c = np.mgrid[r0:r1:step, c0:c1:step]
    grid_r, grid_c = grid_r.ravel(), grid_c.ravel()
    directions = np.column_stack([(grid_c - intrinsics.cx) / intrinsics.fx, (grid_r - intrinsics.cy) / intrinsics.fy,
                                  np.ones(len(grid_r))])
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices_cam.astype(np.float32)),
                        o3d.core.Tensor(np.asarray(mesh_obj.faces, dtype=np.uint32)))
    rays = np.hstack([np.zeros_like(directions), directions]).astype(np.float32)
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()  # along unnormalised rays: t = depth z
    rendered = np.isfinite(t_hit)
    inside = mask[grid_r, grid_c]
    observed = depth_m[grid_r, grid_c]
    # Outside the mask, a part of the mesh behind a nearer seen surface (an occluder, the table's edge in front of
    # it) is hidden there: the mask could not show it, so it does not count against the silhouette.
    hidden = rendered & ~inside & np.isfinite(observed) & (observed < t_hit - margin_m)
    union = np.count_nonzero((rendered & ~hidden) | inside)
    iou = np.count_nonzero(rendered & inside) / union if union else 0.0
    seen_behind = np.isfinite(observed) & (t_hit < observed - margin_m)
    violation = np.count_nonzero(rendered & seen_behind) / max(np.count_nonzero(rendered), 1)
    return DepthExplanation(float(iou), float(violation), float(iou * (1.0 - violation)))
