"""A closed mesh that follows an object's cross-sections: one star-shaped ring per height slice, lofted.

For completed point clouds of upright objects (bottles, mugs, irregular boxes) this keeps what a single convex
hull loses: tapers, shoulders and waists along the height. Each slice's outline is the convex hull of its points,
sampled along fixed directions from the object's vertical axis; rings are joined by quads and closed by two caps,
so the mesh is watertight by construction.
"""
from __future__ import annotations

import cv2
import numpy as np
import trimesh


def _ray_polygon_distance(polygon_xy: np.ndarray, directions_xy: np.ndarray) -> np.ndarray:
    """Distance from the origin along each unit direction to a convex polygon's boundary (origin inside);
    where the origin lies outside the polygon, the support distance max(p . d) is used instead."""
    start = polygon_xy
    edge = np.roll(polygon_xy, -1, axis=0) - polygon_xy
    d = directions_xy[:, None, :]  # (n, 1, 2)
    denom = d[..., 0] * edge[None, :, 1] - d[..., 1] * edge[None, :, 0]  # cross(d, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (start[None, :, 0] * edge[None, :, 1] - start[None, :, 1] * edge[None, :, 0]) / denom  # along the ray
        u = (start[None, :, 0] * d[..., 1] - start[None, :, 1] * d[..., 0]) / denom  # along the edge
    hit = (np.abs(denom) > 1e-12) & (u >= -1e-9) & (u <= 1 + 1e-9) & (t > 0)
    distance = np.where(hit, t, -np.inf).max(axis=1)
    support = (directions_xy @ polygon_xy.T).max(axis=1)
    return np.where(np.isfinite(distance), distance, np.maximum(support, 1e-4))


def sliced_solid(points_obj: np.ndarray, z_range: tuple[float, float], slice_m: float = 0.01, n_angles: int = 32) -> trimesh.Trimesh:
    """Watertight lofted mesh of `points_obj` (object frame, z up, vertical axis through x = y = 0) between
    z_range[0] (bottom) and z_range[1] (top)."""
    z_bottom, z_top = z_range
    height = z_top - z_bottom
    n_bins = int(np.clip(round(height / slice_m), 2, 48))
    edges = np.linspace(z_bottom, z_top, n_bins + 1)
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    directions = np.column_stack([np.cos(angles), np.sin(angles)])
    radii = np.full((n_bins, n_angles), np.nan)
    margin = 0.5 * (edges[1] - edges[0])
    for k in range(n_bins):
        inside = (points_obj[:, 2] >= edges[k] - margin) & (points_obj[:, 2] <= edges[k + 1] + margin)
        if inside.sum() < 3:
            continue
        polygon = cv2.convexHull(points_obj[inside, :2].astype(np.float32)).reshape(-1, 2).astype(np.float64)
        if len(polygon) >= 3:
            radii[k] = _ray_polygon_distance(polygon, directions)
    filled = ~np.isnan(radii[:, 0])
    if not filled.any():
        raise ValueError("no slice has enough points")
    nearest = np.array([np.flatnonzero(filled)[np.argmin(np.abs(np.flatnonzero(filled) - k))] for k in range(n_bins)])
    radii = radii[nearest]
    ring_z = np.concatenate([[z_bottom], (edges[:-1] + edges[1:]) / 2, [z_top]])
    ring_r = np.vstack([radii[:1], radii, radii[-1:]])
    ring_xy = ring_r[:, :, None] * directions[None, :, :]
    rings = np.dstack([ring_xy, np.repeat(ring_z[:, None], n_angles, axis=1)])
    return closed_ring_mesh(rings, np.array([0.0, 0.0, z_bottom]), np.array([0.0, 0.0, z_top]))


def closed_ring_mesh(rings: np.ndarray, bottom_pole: np.ndarray, top_pole: np.ndarray) -> trimesh.Trimesh:
    """Watertight mesh from `rings` (R, A, 3): R rings of A vertices each, bottom to top, every ring counter-clockwise
    seen from above, joined by quads and closed by a fan to each pole (outward normals)."""
    n_rings, n_angles = rings.shape[:2]
    vertices = np.vstack([rings.reshape(-1, 3), bottom_pole, top_pole])
    bottom_centre, top_centre = n_rings * n_angles, n_rings * n_angles + 1
    idx = np.arange(n_rings * n_angles).reshape(n_rings, n_angles)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, d = idx[1:], np.roll(idx[1:], -1, axis=1)
    sides = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    bottom = np.stack([np.full(n_angles, bottom_centre), np.roll(idx[0], -1), idx[0]], -1)
    top = np.stack([np.full(n_angles, top_centre), idx[-1], np.roll(idx[-1], -1)], -1)
    return trimesh.Trimesh(vertices, np.concatenate([sides, bottom, top]), process=False)
