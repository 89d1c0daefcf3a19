"""Where the unseen back of an object is: the centre of its footprint on the support plane from the visible part.

Coordinates are 2D in the support plane: `a` along the horizontal viewing direction (away from the camera), `b`
lateral. Candidate shapes, picked by fit residual: a circle fitted to the side surface (cans, bottles, mugs), the
minimum-area rectangle of the visible footprint (boxes seen at an angle or from above), and, when neither is
supported (one face seen head-on), the mirror rule: the silhouette's tangent points are opposite each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FootprintFit:
    """Footprint centre (a, b) in plane coordinates, the model that gave it and its residual in metres.

    A circle also gives its radius; a rectangle its long side's direction (unit, plane coordinates) and its
    extents (long, short).
    """

    centre_ab: np.ndarray
    model: str  # "circle", "rectangle" or "mirror"
    residual_m: float
    radius_m: float = float("nan")
    axis_ab: np.ndarray | None = None
    extents_m: np.ndarray | None = None


def fit_circle(points_ab: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares (Kasa) circle: centre (2,), radius, RMS radial residual."""
    A = np.column_stack([2 * points_ab, np.ones(len(points_ab))])
    rhs = (points_ab**2).sum(axis=1)
    (ca, cb, k), *_ = np.linalg.lstsq(A, rhs, rcond=None)
    centre = np.array([ca, cb])
    radius = float(np.sqrt(max(k + ca**2 + cb**2, 0.0)))
    rms = float(np.sqrt(np.mean((np.linalg.norm(points_ab - centre, axis=1) - radius) ** 2)))
    return centre, radius, rms


def arc_span_rad(points_ab: np.ndarray, centre_ab: np.ndarray) -> float:
    """Angle around `centre_ab` covered by the points (2 pi minus the largest empty gap)."""
    angles = np.sort(np.arctan2(points_ab[:, 1] - centre_ab[1], points_ab[:, 0] - centre_ab[0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    return float(2 * np.pi - gaps.max())


def _distance_to_rectangle_edges(points_ab: np.ndarray, corners_ab: np.ndarray) -> np.ndarray:
    """Distance of each point to the outline of the rectangle `corners_ab` (4 corners in order), inside or out."""
    side_u, side_v = corners_ab[1] - corners_ab[0], corners_ab[3] - corners_ab[0]
    length_u, length_v = max(float(np.linalg.norm(side_u)), 1e-12), max(float(np.linalg.norm(side_v)), 1e-12)
    relative = points_ab - corners_ab[0]
    pu, pv = relative @ (side_u / length_u), relative @ (side_v / length_v)  # in the rectangle's own frame
    outside_u = np.maximum(np.maximum(-pu, pu - length_u), 0.0)
    outside_v = np.maximum(np.maximum(-pv, pv - length_v), 0.0)
    inside = np.minimum(np.minimum(pu, length_u - pu), np.minimum(pv, length_v - pv))
    return np.where((outside_u > 0) | (outside_v > 0), np.hypot(outside_u, outside_v), inside)


def best_rectangle(points_ab: np.ndarray, outline_ab: np.ndarray) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Bounding rectangle of `points_ab` (0.5-99.5 percentiles, robust to stray points) aligned with one of their
    convex hull's edges, the one whose edges the `outline_ab` points lie on best (area breaks ties).
    Returns (4 corners, (side along corners[1]-corners[0], other side)) or None if degenerate."""
    hull = cv2.convexHull(points_ab.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return None
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.linalg.norm(edges, axis=1)
    edges = edges[lengths > 1e-6] / lengths[lengths > 1e-6, None]
    # Rectangles repeat every 90 degrees: one candidate per degree of edge direction.
    angles = np.unique(np.round(np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) % 90.0).astype(int) % 90)
    best, best_key = None, None
    for angle in np.radians(angles):
        u = np.array([np.cos(angle), np.sin(angle)])
        v = np.array([-u[1], u[0]])
        pu, pv = points_ab @ u, points_ab @ v
        lo_u, hi_u, lo_v, hi_v = pu.min(), pu.max(), pv.min(), pv.max()
        corners = np.array([lo_u * u + lo_v * v, hi_u * u + lo_v * v, hi_u * u + hi_v * v, lo_u * u + hi_v * v])
        residual = float(np.mean(_distance_to_rectangle_edges(outline_ab, corners)))
        key = (round(residual, 4), (hi_u - lo_u) * (hi_v - lo_v))
        if best_key is None or key < best_key:
            best, best_key = (u, v), key
    if best is None:
        return None
    u, v = best
    (lo_u, hi_u), (lo_v, hi_v) = np.percentile(points_ab @ u, [0.5, 99.5]), np.percentile(points_ab @ v, [0.5, 99.5])
    corners = np.array([lo_u * u + lo_v * v, hi_u * u + lo_v * v, hi_u * u + hi_v * v, lo_u * u + hi_v * v])
    return corners, (float(hi_u - lo_u), float(hi_v - lo_v))


def mirror_centre(points_ab: np.ndarray) -> np.ndarray:
    """Centre from the silhouette tangent points (angular extremes seen from the camera at the origin), pushed back
    to at least the middle of the visible depth extent."""
    a, b = points_ab[:, 0], points_ab[:, 1]
    angles = np.arctan2(b, a)
    # Robust angular extremes: flying pixels at the silhouette must not move them.
    left = np.argmin(np.abs(angles - np.percentile(angles, 1)))
    right = np.argmin(np.abs(angles - np.percentile(angles, 99)))
    depth_mid = (np.percentile(a, 1) + np.percentile(a, 99)) / 2
    return np.array([max((a[left] + a[right]) / 2, depth_mid), (b[left] + b[right]) / 2])


def fit_footprint(
    points_ab: np.ndarray, side_ab: np.ndarray, min_arc_rad: float = np.deg2rad(100), max_radius_m: float = 0.2,
    thin_ratio: float = 0.3, scale: float = 1.0,
) -> FootprintFit:
    """Footprint centre of an object seen from a camera at the plane origin.

    `points_ab`: footprint of all visible points; `side_ab`: footprint of the side-surface points only (normals
    roughly horizontal), which lie on the footprint's outline. `scale` multiplies every metre tolerance (and
    `max_radius_m`): 1 for tabletop objects, their size over the reference size for larger ones.
    """
    candidates: list[FootprintFit] = []
    if len(side_ab) >= 20:
        centre, radius, rms = fit_circle(side_ab)
        behind = centre[0] > np.median(side_ab[:, 0])
        # A cylinder's silhouette is its diameter wide (a rounded corner of a box fits a small circle too well).
        lateral_width = float(np.ptp(points_ab[:, 1]))
        diameter_fits = abs(2 * radius - lateral_width) < max(0.005 * scale, 0.15 * lateral_width)
        plausible = 0.005 * scale < radius < max_radius_m * scale
        if behind and diameter_fits and plausible and arc_span_rad(side_ab, centre) >= min_arc_rad:
            if rms < max(0.0015 * scale, 0.04 * radius):
                # Mean absolute distance to the outline, the same statistic as the rectangle's residual.
                residual = float(np.mean(np.abs(np.linalg.norm(side_ab - centre, axis=1) - radius)))
                candidates.append(FootprintFit(centre, "circle", residual, radius_m=radius))
    outline = side_ab if len(side_ab) >= 20 else points_ab
    outline = outline[:: max(1, len(outline) // 400)]  # residuals need a few hundred points, not thousands
    rect = best_rectangle(points_ab, outline)
    if rect is not None:
        corners, (w, h) = rect
        if min(w, h) >= thin_ratio * max(w, h, 1e-9):
            residual = float(np.mean(_distance_to_rectangle_edges(outline, corners)))
            long_side = corners[1] - corners[0] if w >= h else corners[2] - corners[1]
            axis = long_side / np.linalg.norm(long_side)
            extents = np.array([max(w, h), min(w, h)])
            candidates.append(FootprintFit(corners.mean(axis=0), "rectangle", residual, axis_ab=axis, extents_m=extents))
    if not candidates:
        return FootprintFit(mirror_centre(points_ab), "mirror", float("nan"))
    return min(candidates, key=lambda fit: fit.residual_m)
