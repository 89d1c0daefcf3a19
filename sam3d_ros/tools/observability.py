"""What a sequence's views can show of an object, from its true mesh: the fraction of its surface some view sees, and
the views' hull (the true mesh with all the space no view could see added).

These are properties of the scenes, not of any reconstruction: they say how much of an object a completion has to
guess. A method that keeps exactly what the views saw and takes every place no view saw as the object's (the
conservative guess, safe for collision) reconstructs the views' hull; to score above it, the guess for the unseen
space has to be better than "solid" (a learned completion, a symmetry that holds). A point is seen from a camera when
it lies in the image, above the table, and the camera's ray reaches it before any other part of the true mesh.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh
from skimage.measure import marching_cubes

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.transforms import transform_points

HULL_VOXELS_ALONG_EXTENT = 64  # the views' hull grid: the true mesh's largest extent in this many voxels ...
MIN_HULL_VOXEL_M = 0.002  # ... but never finer than this
HULL_PADDING_FRACTION = 0.35  # space around the true box searched for hidden space, per side, x the largest extent


@dataclass(frozen=True)
class CameraView:
    """One camera looking at the object: where it is (T_cam_model: the object's model frame to the camera's optical
    frame), its image, and the table (a, b, c, d in the camera frame; n.p + d = 0 on it, n toward the camera)."""

    T_cam_model: np.ndarray
    intrinsics: CameraIntrinsics
    support_plane_cam: np.ndarray | None = None


class Observability:
    """Visibility of points of one true mesh (model frame, metres) from a set of camera views."""

    def __init__(self, mesh_model: trimesh.Trimesh, views: list[CameraView]) -> None:
        if not views:
            raise ValueError("observability needs at least one camera view")
        self.mesh_model = mesh_model
        self.views = list(views)
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor(np.asarray(mesh_model.vertices, dtype=np.float32)),
                                  o3d.core.Tensor(np.asarray(mesh_model.faces, dtype=np.uint32)))

    def seen_by_any(self, points_model: np.ndarray, tolerance_m: float = 0.0) -> np.ndarray:
        """(N,) bool: whether some view sees each point (model frame); `tolerance_m`: how far before the point the
        ray may hit the mesh (points on the surface itself need about a millimetre)."""
        points_model = np.asarray(points_model, dtype=np.float64).reshape(-1, 3)
        seen = np.zeros(len(points_model), dtype=bool)
        for view in self.views:
            todo = np.flatnonzero(~seen)  # a point one view sees is not cast again
            if len(todo) == 0:
                break
            seen[todo[self._seen_from(view, points_model[todo], tolerance_m)]] = True
        return seen

    def _seen_from(self, view: CameraView, points_model: np.ndarray, tolerance_m: float) -> np.ndarray:
        points_cam = transform_points(view.T_cam_model, points_model)
        intr = view.intrinsics
        u, v = intr.project(points_cam).T  # NaN behind the camera: fails every test below
        ok = (points_cam[:, 2] > 1e-3) & (u >= -0.5) & (u < intr.width - 0.5) & (v >= -0.5) & (v < intr.height - 0.5)
        if view.support_plane_cam is not None:
            plane = np.asarray(view.support_plane_cam, dtype=np.float64)
            ok &= points_cam @ plane[:3] + plane[3] >= -tolerance_m
        index = np.flatnonzero(ok)
        if len(index) == 0:
            return ok
        T_model_cam = np.linalg.inv(view.T_cam_model)
        origin_model = T_model_cam[:3, 3]
        offset = points_model[index] - origin_model
        length = np.linalg.norm(offset, axis=1)
        rays = np.concatenate([np.broadcast_to(origin_model, offset.shape), offset / length[:, None]], axis=1)
        hit = self._scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
        ok[index] = hit >= length - tolerance_m - 1e-5  # inf: the ray meets nothing
        return ok

    def seen_surface_fraction(self, n: int = 5000, seed: int = 0) -> float:
        """Fraction of the true surface (by area: `n` seeded samples) that some view sees."""
        points, _ = trimesh.sample.sample_surface(self.mesh_model, int(n), seed=seed)
        return float(np.mean(self.seen_by_any(points, tolerance_m=0.001)))

    def views_hull(self) -> trimesh.Trimesh:
        """The true mesh with every place above the table that no view sees added (model frame): the shape of the
        conservative completion of exactly what the views saw. Voxels of `HULL_VOXELS_ALONG_EXTENT` along the
        largest extent; its surface is the true one where views saw it, within half a voxel elsewhere."""
        lo, hi = self.mesh_model.bounds
        extent = float(np.max(hi - lo))
        voxel_m = max(extent / HULL_VOXELS_ALONG_EXTENT, MIN_HULL_VOXEL_M)
        pad = HULL_PADDING_FRACTION * extent
        axes = [np.arange(a - pad, b + pad + voxel_m, voxel_m) for a, b in zip(lo, hi)]
        shape = tuple(len(a) for a in axes)
        centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        sdf = self._scene.compute_signed_distance(o3d.core.Tensor(centres.astype(np.float32))).numpy()
        field = sdf.astype(np.float64)
        outside = np.flatnonzero(sdf > 0)
        view = self.views[0]
        if view.support_plane_cam is not None:  # below the table is not space a view could see, nor the object's
            plane = np.asarray(view.support_plane_cam, dtype=np.float64)
            above = transform_points(view.T_cam_model, centres[outside]) @ plane[:3] + plane[3] >= 0.0
            outside = outside[above]
        hidden = outside[~self.seen_by_any(centres[outside])]
        field[hidden] = -0.5 * voxel_m
        padded = np.pad(field.reshape(shape), 1, constant_values=voxel_m)
        vertices, faces, _, _ = marching_cubes(padded, level=0.0, spacing=(voxel_m,) * 3)
        vertices += np.array([a[0] for a in axes]) - voxel_m
        mesh = trimesh.Trimesh(vertices, faces, process=True)
        if mesh.is_watertight and mesh.volume < 0:  # outward normals whichever way the field's gradient ran
            mesh = trimesh.Trimesh(mesh.vertices, np.ascontiguousarray(mesh.faces[:, ::-1]), process=False)
        return mesh
