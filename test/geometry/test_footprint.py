"""Footprint helpers: distance of points to a rectangle's outline (inside and outside), circle fit."""
import numpy as np
from scipy.spatial import cKDTree

from sam3d_ros.geometry.footprint import _distance_to_rectangle_edges, fit_circle


def test_distance_to_a_rectangle_outline_matches_a_densely_sampled_outline():
    rng = np.random.default_rng(4)
    angle = 0.6
    u, v = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    corners = np.array([0.1 * u - 0.05 * v, 0.3 * u - 0.05 * v, 0.3 * u + 0.07 * v, 0.1 * u + 0.07 * v]) + [0.4, -0.2]
    t = np.linspace(0.0, 1.0, 20000, endpoint=False)[:, None]
    outline = np.vstack([a + t * (b - a) for a, b in zip(corners, np.roll(corners, -1, axis=0))])
    points = rng.uniform(corners.min(axis=0) - 0.1, corners.max(axis=0) + 0.1, (500, 2))  # inside and outside
    expected, _ = cKDTree(outline).query(points)
    np.testing.assert_allclose(_distance_to_rectangle_edges(points, corners), expected, atol=2e-5)


def test_circle_fit_recovers_centre_and_radius_from_an_arc():
    angles = np.linspace(-1.2, 1.4, 200)
    points = np.column_stack([0.5 + 0.04 * np.cos(angles), -0.1 + 0.04 * np.sin(angles)])
    centre, radius, rms = fit_circle(points)
    np.testing.assert_allclose(centre, [0.5, -0.1], atol=1e-9)
    assert abs(radius - 0.04) < 1e-9 and rms < 1e-9
