"""A solid of revolution about a vertical axis (the support plane's normal) fitted to the visible side of an object:
bowls, bottles, cans, cups, fruit and balls, a mug's body.

All height slices share one axis: the points of slice k satisfy x^2 + y^2 = 2 a x + 2 b y + c_k (concentric circles,
one linear least-squares problem for the axis (a, b), each c_k eliminated by centring its slice); each slice's radius is then the median
distance of its points to the axis. A handle or a spout would pull the axis toward it: the axis is refitted on the
points near their slice's circle, and the points well outside the body are returned as `attached` (the caller
joins them to the body). The mesh is one ring per slice, joined and capped (`sliced_solid.closed_ring_mesh`),
watertight by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from sam3d_ros.geometry.sliced_solid import closed_ring_mesh


@dataclass(frozen=True)
class Revolution:
    centre_xy: np.ndarray  # (2,) the axis, in the points' horizontal coordinates
    ring_z: np.ndarray  # (R,) ring heights, bottom to top
    ring_r: np.ndarray  # (R,) ring radii
    rms_m: float  # RMS of the points' distance to their slice's circle (the body's points)
    attached: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (N,) points outside the body

    def radius_at(self, z: np.ndarray) -> np.ndarray:
        """The body's radius at heights `z` (linear between rings)."""
        return np.interp(z, self.ring_z, self.ring_r)

    def mesh(self, n_angles: int = 32) -> trimesh.Trimesh:
        """Watertight mesh in a frame centred on the axis (x, y) with the points' own z."""
        angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
        ring_xy = self.ring_r[:, None, None] * np.column_stack([np.cos(angles), np.sin(angles)])[None]
        rings = np.dstack([ring_xy, np.repeat(self.ring_z[:, None], n_angles, axis=1)])
        return closed_ring_mesh(rings, np.array([0.0, 0.0, self.ring_z[0]]), np.array([0.0, 0.0, self.ring_z[-1]]))


def _axis(xy: np.ndarray, column: np.ndarray, n_columns: int) -> np.ndarray:
    """The least-squares axis (a, b) of concentric circles, one per column (slice) of `xy`."""
    # Each c_k is eliminated by centring the slice: |p|^2 - mean_k |p|^2 = 2 (p - mean_k p) . (a, b).
    n_k = np.maximum(np.bincount(column, minlength=n_columns), 1).astype(float)
    squared = (xy**2).sum(axis=1)
    mean_xy = np.column_stack([np.bincount(column, xy[:, i], n_columns) / n_k for i in (0, 1)])
    A = 2 * (xy - mean_xy[column])
    rhs = squared - (np.bincount(column, squared, n_columns) / n_k)[column]
    normal = A.T @ A
    if abs(np.linalg.det(normal)) < 1e-18:
        raise ValueError("no axis")
    return np.linalg.solve(normal, A.T @ rhs)


def _slice_radii(distance: np.ndarray, column: np.ndarray, n_columns: int, weight: np.ndarray) -> np.ndarray:
    """Median distance per column over the points with `weight` (all of a column's points where none has)."""
    radii = np.empty(n_columns)
    for j in range(n_columns):
        in_column = column == j
        chosen = in_column & weight
        radii[j] = np.median(distance[chosen if chosen.any() else in_column])
    return radii


def fit_revolution(
    points: np.ndarray, z_range: tuple[float, float], slice_m: float, max_slices: int = 32, rounds: int = 3,
    attachment_fraction: float = 0.1,
) -> Revolution:
    """Solid of revolution about a vertical axis through `points` (N, 3; z up) between z_range (bottom, top).

    A handle or a spout is not part of the body: the axis is refitted `rounds` times on the points within
    max(3 robust sigmas, `attachment_fraction` x their slice's radius) of their slice's circle (the body); the
    others that lie beyond their own and the neighbouring slices' circles by that fraction are `attached`.
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
    body = np.ones(len(xy), bool)
    for _ in range(max(1, rounds)):
        centre = _axis(xy[body], column[body], len(used))
        distance = np.linalg.norm(xy - centre, axis=1)
        radii_used = _slice_radii(distance, column, len(used), body)
        residual = distance - radii_used[column]
        sigma = 1.4826 * float(np.median(np.abs(residual[body])))
        inside = np.abs(residual) <= np.maximum(3.0 * sigma, attachment_fraction * radii_used[column])
        if inside.sum() < 3 * len(used) or np.array_equal(inside, body):
            break
        body = inside
    rms = float(np.sqrt(np.mean(residual[body] ** 2)))
    attached = np.zeros(len(points), bool)
    # Outside the body at the neighbouring slices too, not only its own slice's circle (a slice that mixes a flat
    # top with the side has a smaller median radius than its side).
    padded = np.r_[radii_used[:1], radii_used, radii_used[-1:]]
    nearby = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    beyond = distance > (1.0 + attachment_fraction) * nearby[column]
    attached[np.flatnonzero(keep)[~body & beyond]] = True
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
    return Revolution(centre, ring_z, ring_r, rms, attached)
