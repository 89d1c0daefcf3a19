"""A solid of revolution about a vertical axis (the support plane's normal) fitted to the visible side of an object:
bowls, bottles, cans, cups, fruit and balls, a mug's body.

All height slices share one axis: the points of slice k satisfy x^2 + y^2 = 2 a x + 2 b y + c_k (concentric circles,
one linear least-squares problem for the axis (a, b), each c_k eliminated by centring its slice); each slice's radius is then the median
distance of its points to the axis (a handle or a spout moves a median little). The mesh is one ring per slice,
joined and capped (`sliced_solid.closed_ring_mesh`), watertight by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from sam3d_ros.geometry.sliced_solid import closed_ring_mesh


@dataclass(frozen=True)
class Revolution:
    centre_xy: np.ndarray  # (2,) the axis, in the points' horizontal coordinates
    ring_z: np.ndarray  # (R,) ring heights, bottom to top
    ring_r: np.ndarray  # (R,) ring radii
    rms_m: float  # RMS of the points' distance to their slice's circle

    def mesh(self, n_angles: int = 32) -> trimesh.Trimesh:
        """Watertight mesh in a frame centred on the axis (x, y) with the points' own z."""
        angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
        ring_xy = self.ring_r[:, None, None] * np.column_stack([np.cos(angles), np.sin(angles)])[None]
        rings = np.dstack([ring_xy, np.repeat(self.ring_z[:, None], n_angles, axis=1)])
        return closed_ring_mesh(rings, np.array([0.0, 0.0, self.ring_z[0]]), np.array([0.0, 0.0, self.ring_z[-1]]))


def fit_revolution(points: np.ndarray, z_range: tuple[float, float], slice_m: float, max_slices: int = 32) -> Revolution:
    """Solid of revolution about a vertical axis through `points` (N, 3; z up) between z_range (bottom, top).
    Raises ValueError when fewer than two slices hold three points or the fit is degenerate."""
    z_bottom, z_top = z_range
    n_bins = int(np.clip(round((z_top - z_bottom) / slice_m), 2, max_slices))
    edges = np.linspace(z_bottom, z_top, n_bins + 1)
    slice_of = np.clip(np.searchsorted(edges, points[:, 2], side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(slice_of, minlength=n_bins)
    used = np.flatnonzero(counts >= 3)
    if len(used) < 2:
        raise ValueError("fewer than two height slices with three points")
    keep = np.isin(slice_of, used)
    xy, column = points[keep, :2], np.searchsorted(used, slice_of[keep])
    # Each c_k is eliminated by centring the slice: |p|^2 - mean_k |p|^2 = 2 (p - mean_k p) . (a, b).
    n_k = np.bincount(column).astype(float)
    squared = (xy**2).sum(axis=1)
    mean_xy = np.column_stack([np.bincount(column, xy[:, i]) / n_k for i in (0, 1)])
    A = 2 * (xy - mean_xy[column])
    rhs = squared - (np.bincount(column, squared) / n_k)[column]
    normal = A.T @ A
    if abs(np.linalg.det(normal)) < 1e-18:
        raise ValueError("no axis")
    centre = np.linalg.solve(normal, A.T @ rhs)
    distance = np.linalg.norm(xy - centre, axis=1)
    radii_used = np.array([np.median(distance[column == j]) for j in range(len(used))])
    rms = float(np.sqrt(np.mean((distance - radii_used[column]) ** 2)))
    # Slices without points below the lowest seen one (hidden under the object) mirror the profile about the widest
    # seen slice, where the mirror falls on a seen slice (a ball narrows to its contact, a can stays straight);
    # every other empty slice takes the nearest filled slice's radius.
    nearest = used[np.abs(np.arange(n_bins)[:, None] - used[None, :]).argmin(axis=1)]
    radii = radii_used[np.searchsorted(used, nearest)]
    widest = used[int(np.argmax(radii_used))]
    for k in range(used[0]):
        mirror = 2 * widest - k
        if mirror in used:
            radii[k] = radii_used[np.searchsorted(used, mirror)]
    ring_z = np.concatenate([[z_bottom], (edges[:-1] + edges[1:]) / 2, [z_top]])
    ring_r = np.concatenate([radii[:1], radii, radii[-1:]])
    return Revolution(centre, ring_z, ring_r, rms)
