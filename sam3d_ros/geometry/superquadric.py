"""Upright superquadrics: least-squares fit to surface points, distance of points to the surface, watertight mesh.

An upright superquadric in a frame with z up has a centre (x, y, z), a yaw about z, semi-axes (a1, a2, a3) along its
own x, y, z and two shape exponents: e1 shapes the vertical profile, e2 the horizontal cross-section (each near 0:
square, 1: round). Its inside-outside function is

    F(x, y, z) = (|x / a1|^(2 / e2) + |y / a2|^(2 / e2))^(e2 / e1) + |z / a3|^(2 / e1),

1 on the surface. Boxes (e1, e2 small), cylinders (e1 small, e2 = 1), ellipsoids (1, 1) and everything between
(rounded boxes, tins) are one family, the shape primitive grasp planners commonly use. Exponents stay in
[MIN_EXPONENT, 1]: convex shapes only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.optimize import least_squares

from sam3d_ros.geometry.sliced_solid import closed_ring_mesh

MIN_EXPONENT = 0.1
MAX_EXPONENT = 1.0


@dataclass(frozen=True)
class Superquadric:
    """Parameters of an upright superquadric (metres, radians)."""

    centre: np.ndarray  # (3,)
    yaw: float  # rotation of its x axis about z
    semi_axes: np.ndarray  # (3,) a1, a2, a3
    exponents: np.ndarray  # (2,) e1 (vertical), e2 (horizontal)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 3) in the superquadric's own frame (centre at the origin, axes along its semi-axes)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        d = np.asarray(points, dtype=float) - self.centre
        return np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]])


def _radial_distance(local: np.ndarray, semi_axes: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """Signed distance along the ray from the centre through each point to the surface (positive outside).

    Batched: `local` (..., N, 3) with `semi_axes` (..., 3) and `exponents` (..., 2) of the same leading shape."""
    e1, e2 = exponents[..., 0:1], exponents[..., 1:2]
    q = np.abs(local) / semi_axes[..., None, :] + 1e-12
    horizontal = q[..., 0] ** (2 / e2) + q[..., 1] ** (2 / e2)
    f = horizontal ** (e2 / e1) + q[..., 2] ** (2 / e1)
    return np.linalg.norm(local, axis=-1) * (1.0 - f ** (-e1 / 2))


def surface_distance(sq: Superquadric, points: np.ndarray) -> np.ndarray:
    """Radial distance (metres, positive outside) of each point to the surface of `sq`: a close, cheap
    approximation of the Euclidean distance near the surface."""
    return _radial_distance(sq.to_local(points), np.asarray(sq.semi_axes, float), np.asarray(sq.exponents, float))


def fit_superquadric(
    points: np.ndarray, initial: Superquadric | None = None, z_range: tuple[float, float] | None = None,
    robust_scale_m: float = 0.002, max_evaluations: int = 60, within_xy: np.ndarray | None = None,
    open_edges: np.ndarray | None = None,
) -> tuple[Superquadric, float]:
    """Least-squares upright superquadric through surface points (N, 3), frame z up; returns it and the mean absolute
    radial distance of the points to it (metres).

    `initial` seeds the fit (default: centroid, principal horizontal direction, half the extents, exponents 0.5).
    `z_range` = (bottom, top) fixes the vertical centre and semi-axis (an object standing on a known plane: only the
    visible side constrains the rest). A soft-L1 loss with scale `robust_scale_m` keeps stray points from dragging
    the surface. `within_xy`, a convex polygon (M, 2) in x, y, keeps the superquadric's horizontal cross-section
    inside it (its widest ring's distance outside adds to the residuals): points constrain only where the surface
    is, not how far flat faces reach, so without it a partial view of a box fits a box of any size behind it.
    `open_edges` (M,) bool marks polygon edges (vertex i to i + 1) that bound nothing (an occluded side).
    Raises ValueError when the points span no volume.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(points) < 10 or not np.isfinite(points).all():
        raise ValueError(f"a superquadric fit needs at least 10 finite points, got {len(points)}")
    spread = np.linalg.svd(points - points.mean(axis=0), compute_uv=False) / np.sqrt(len(points))
    if spread[-1] < 1e-4 * max(spread[0], 1e-12) or spread[0] < 1e-6:
        raise ValueError("the points span no volume (collinear, coplanar or coincident)")
    if initial is None:
        horizontal = points[:, :2] - points[:, :2].mean(axis=0)
        _, _, vt = np.linalg.svd(horizontal, full_matrices=False)
        yaw = float(np.arctan2(vt[0, 1], vt[0, 0]))
        local = Superquadric(points.mean(axis=0), yaw, np.ones(3), np.ones(2)).to_local(points)
        lo, hi = local.min(axis=0), local.max(axis=0)
        centre = points.mean(axis=0) + _rotate((lo + hi) / 2, yaw)
        initial = Superquadric(centre, yaw, np.maximum((hi - lo) / 2, 1e-3), np.array([0.5, 0.5]))
    size = float(np.ptp(points, axis=0).max())
    fixed_z = z_range is not None
    if fixed_z:
        z_centre, z_semi = (z_range[0] + z_range[1]) / 2, (z_range[1] - z_range[0]) / 2
        if not z_semi > 0:
            raise ValueError("z_range must have top > bottom")

    def unpack(x: np.ndarray) -> Superquadric:
        centre, yaw, semi_axes, exponents = unpack_batch(x[None])
        return Superquadric(centre[0], float(yaw[0]), semi_axes[0], exponents[0])

    def unpack_batch(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Parameter vectors (P, n) -> centres (P, 3), yaws (P,), semi-axes (P, 3), exponents (P, 2)."""
        if fixed_z:
            ones = np.ones(len(X))
            return (np.column_stack([X[:, 0], X[:, 1], z_centre * ones]), X[:, 2],
                    np.column_stack([X[:, 3], X[:, 4], z_semi * ones]), X[:, 5:7])
        return X[:, :3], X[:, 3], X[:, 4:7], X[:, 7:9]

    e_lo, e_hi = MIN_EXPONENT, MAX_EXPONENT
    exponents0 = np.clip(initial.exponents, e_lo + 1e-3, e_hi - 1e-3)
    semi0 = np.clip(initial.semi_axes, 1e-3, 2 * size)
    if fixed_z:
        x0 = np.r_[initial.centre[:2], initial.yaw, semi0[:2], exponents0]
        lower = np.r_[-np.inf, -np.inf, -np.inf, 1e-3, 1e-3, e_lo, e_lo]
        upper = np.r_[np.inf, np.inf, np.inf, 2 * size, 2 * size, e_hi, e_hi]
    else:
        x0 = np.r_[initial.centre, initial.yaw, semi0, exponents0]
        lower = np.r_[-np.inf, -np.inf, -np.inf, -np.inf, 1e-3, 1e-3, 1e-3, e_lo, e_lo]
        upper = np.r_[np.inf, np.inf, np.inf, np.inf, 2 * size, 2 * size, 2 * size, e_hi, e_hi]
    halfspaces = None if within_xy is None else _polygon_halfspaces(np.asarray(within_xy, dtype=float), open_edges)
    ring = np.linspace(-np.pi, np.pi, 24, endpoint=False)
    ring_weight = np.sqrt(len(points) / len(ring))  # the ring weighs as much as all the points together
    if halfspaces is not None:
        halfspaces[:, 2] += robust_scale_m  # noise margin

    def residuals_batch(X: np.ndarray) -> np.ndarray:
        """Residuals (P, M) of P parameter vectors at once (numpy overhead, not arithmetic, dominates here)."""
        centre, yaw, semi_axes, exponents = unpack_batch(X)
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        d = points[None, :, :] - centre[:, None, :]
        local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], axis=-1)
        distance = _radial_distance(local, semi_axes, exponents)
        if halfspaces is None:
            return distance
        e2 = exponents[:, 1:2]
        wx = semi_axes[:, 0:1] * _signed_power(np.cos(ring)[None, :], e2)  # (P, R) the widest ring, own frame
        wy = semi_axes[:, 1:2] * _signed_power(np.sin(ring)[None, :], e2)
        widest_x, widest_y = c * wx - s * wy + centre[:, 0:1], s * wx + c * wy + centre[:, 1:2]
        reach = widest_x[..., None] * halfspaces[:, 0] + widest_y[..., None] * halfspaces[:, 1] - halfspaces[:, 2]
        outside = np.maximum(reach.max(axis=-1), 0.0)
        return np.concatenate([distance, ring_weight * outside], axis=1)

    def jacobian(x: np.ndarray) -> np.ndarray:
        """Forward differences, every parameter's step in one batched evaluation (steps turn back at the bounds)."""
        step = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(x))
        step = np.where(x + step > upper, -step, step)
        X = np.vstack([x, x + np.diag(step)])
        R = residuals_batch(X)
        return ((R[1:] - R[0]) / step[:, None]).T

    result = least_squares(
        lambda x: residuals_batch(x[None])[0], x0, jac=jacobian, bounds=(lower, upper), loss="soft_l1",
        f_scale=robust_scale_m, max_nfev=max_evaluations, x_scale="jac", ftol=1e-4, xtol=1e-4,
    )
    sq = unpack(result.x)
    return sq, float(np.mean(np.abs(surface_distance(sq, points))))


def _polygon_halfspaces(polygon_xy: np.ndarray, open_edges: np.ndarray | None = None) -> np.ndarray | None:
    """(K, 3) rows (nx, ny, d) of a convex polygon's edges, n outward unit normals: n . p <= d inside; edges marked
    in `open_edges` left out (None when none is left)."""
    edges = np.roll(polygon_xy, -1, axis=0) - polygon_xy
    normals = np.column_stack([edges[:, 1], -edges[:, 0]])
    lengths = np.linalg.norm(normals, axis=1)
    keep = lengths > 1e-12
    normals, starts = normals[keep] / lengths[keep, None], polygon_xy[keep]
    offsets = np.sum(normals * starts, axis=1)
    if np.mean(normals @ polygon_xy.mean(axis=0) - offsets) > 0:  # clockwise polygon: normals point inward
        normals, offsets = -normals, -offsets
    if open_edges is not None:
        closed = ~np.asarray(open_edges, dtype=bool)[keep]
        normals, offsets = normals[closed], offsets[closed]
    return np.column_stack([normals, offsets]) if len(offsets) else None


def _rotate(vector: np.ndarray, yaw: float) -> np.ndarray:
    """A local-frame vector in the parent frame (rotation by `yaw` about z)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1], vector[2]])


def _signed_power(values: np.ndarray, exponent: float) -> np.ndarray:
    return np.sign(values) * np.abs(values) ** exponent


def superquadric_mesh(semi_axes: np.ndarray, exponents: np.ndarray, n_rings: int = 24, n_angles: int = 48) -> trimesh.Trimesh:
    """Watertight mesh of a superquadric centred at the origin, axes along x, y, z: `n_rings` rings of the
    parametric surface between two pole vertices, joined by quads and closed by two fans."""
    a1, a2, a3 = np.asarray(semi_axes, dtype=float)
    e1, e2 = np.asarray(exponents, dtype=float)
    eta = np.linspace(-np.pi / 2, np.pi / 2, n_rings + 2)[1:-1]  # latitude, poles excluded
    omega = np.linspace(-np.pi, np.pi, n_angles, endpoint=False)
    ce, se = _signed_power(np.cos(eta), e1)[:, None], _signed_power(np.sin(eta), e1)[:, None]
    cw, sw = _signed_power(np.cos(omega), e2)[None, :], _signed_power(np.sin(omega), e2)[None, :]
    rings = np.stack([a1 * ce * cw, a2 * ce * sw, np.broadcast_to(a3 * se, (n_rings, n_angles))], axis=-1)
    return closed_ring_mesh(rings, np.array([0.0, 0.0, -a3]), np.array([0.0, 0.0, a3]))
