"""A closed mesh of what lies under a visible surface: the surface's height map over the support plane, extruded
down to the plane (marching cubes over the columns, so the mesh is watertight by construction).

The completion that assumes nothing unseen behind the object: right for what lies flat or is seen from above
(tools, lids, plates, toys), and for the top surface of bowls. Footprint cells without a point (gaps between
oblique samples) are closed over `close_cells` cells and take their neighbours' height.
"""
from __future__ import annotations

import cv2
import numpy as np
import trimesh
from skimage.measure import marching_cubes


def heightmap_solid(
    points_obj: np.ndarray, z_bottom: float, cell_m: float, close_cells: int = 1, max_cells: int = 64,
    max_layers: int = 12,
) -> trimesh.Trimesh:
    """Watertight mesh of the columns from `z_bottom` up to the highest point in each `cell_m` cell of the x-y grid
    (object frame, z up). The cell grows when the footprint would need more than `max_cells` cells a side."""
    points_obj = np.asarray(points_obj, dtype=np.float64)
    heights = points_obj[:, 2] - z_bottom
    keep = heights > 0
    if keep.sum() < 3:
        raise ValueError("no point above the bottom")
    xy, heights = points_obj[keep, :2], heights[keep]
    low, high = xy.min(axis=0), xy.max(axis=0)
    cell_m = max(cell_m, float((high - low).max()) / (max_cells - 2 * close_cells - 2))
    origin = low - (close_cells + 1) * cell_m
    shape = np.ceil((high - origin) / cell_m).astype(int) + close_cells + 2
    index = np.floor((xy - origin) / cell_m).astype(int)
    top = np.zeros(shape, np.float32)
    np.maximum.at(top, (index[:, 0], index[:, 1]), heights.astype(np.float32))
    if close_cells > 0:
        kernel = np.ones((2 * close_cells + 1,) * 2, np.uint8)
        footprint = cv2.morphologyEx((top > 0).astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
        top = np.where(top > 0, top, np.where(footprint, cv2.dilate(top, kernel), 0.0))
    height = float(top.max())
    layers = int(np.clip(round(height / cell_m), 2, max_layers))
    dz = height / layers
    centres = (np.arange(layers) + 0.5) * dz
    volume = np.zeros((shape[0] + 2, shape[1] + 2, layers + 2), np.float32)
    volume[1:-1, 1:-1, 1:-1] = top[:, :, None] > centres[None, None, :]
    # Normals toward falling values (outward from the columns); skimage winds those faces clockwise, so flip them.
    vertices, faces, _, _ = marching_cubes(volume, 0.5, spacing=(cell_m, cell_m, dz), gradient_direction="descent")
    # The cells reach up to half a cell beyond the points: stretch the mesh onto the points' own box.
    target_low = np.r_[low, z_bottom]
    target_high = np.r_[high, z_bottom + float(heights.max())]
    mesh_low, mesh_high = vertices.min(axis=0), vertices.max(axis=0)
    vertices = target_low + (vertices - mesh_low) * (target_high - target_low) / np.maximum(mesh_high - mesh_low, 1e-12)
    return trimesh.Trimesh(vertices, faces[:, ::-1], process=False)
