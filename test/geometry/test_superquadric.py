"""Upright superquadric fit, distance and mesh."""
import numpy as np
import pytest
import trimesh

from sam3d_ros.geometry.superquadric import Superquadric, fit_superquadric, superquadric_mesh, surface_distance


def _samples(sq: Superquadric, n: int, seed: int, noise_m: float = 0.0) -> np.ndarray:
    """Points on the surface of `sq` (area-uniform on its mesh), with Gaussian noise."""
    points, _ = trimesh.sample.sample_surface(superquadric_mesh(sq.semi_axes, sq.exponents, 48, 96), n, seed=seed)
    c, s = np.cos(sq.yaw), np.sin(sq.yaw)
    points = points @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + sq.centre
    return points + np.random.default_rng(seed).normal(0, noise_m, points.shape)


def test_fit_recovers_a_known_superquadric_from_noisy_samples():
    truth = Superquadric(np.array([0.4, -0.1, 0.08]), 0.5, np.array([0.05, 0.03, 0.08]), np.array([0.3, 0.7]))
    points = _samples(truth, 1500, seed=1, noise_m=0.001)
    sq, residual = fit_superquadric(points)
    np.testing.assert_allclose(sq.centre, truth.centre, atol=0.002)
    np.testing.assert_allclose(sq.semi_axes, truth.semi_axes, atol=0.002)
    np.testing.assert_allclose(sq.exponents, truth.exponents, atol=0.1)
    assert abs((sq.yaw - truth.yaw + np.pi / 2) % np.pi - np.pi / 2) < 0.05  # a superquadric repeats every 180 deg
    assert residual < 0.0015  # about the noise
    assert np.abs(surface_distance(truth, _samples(truth, 200, seed=2))).max() < 1e-3


def test_fixed_height_and_footprint_limit_on_a_partial_view_of_a_box():
    truth = Superquadric(np.array([0.6, 0.0, 0.05]), 0.3, np.array([0.06, 0.04, 0.05]), np.array([0.1, 0.1]))
    points = _samples(truth, 3000, seed=3, noise_m=0.0005)
    seen = points[(points[:, 0] < 0.6) | (points[:, 2] > 0.099)]  # the near half and the top face
    c, s = np.cos(truth.yaw), np.sin(truth.yaw)
    footprint = np.array([[-0.06, -0.04], [0.06, -0.04], [0.06, 0.04], [-0.06, 0.04]]) @ np.array([[c, -s], [s, c]]).T
    footprint += truth.centre[:2]
    sq, _ = fit_superquadric(seen, z_range=(0.0, 0.1), within_xy=footprint)
    assert sq.centre[2] == 0.05 and sq.semi_axes[2] == 0.05
    np.testing.assert_allclose(np.sort(sq.semi_axes[:2]), [0.04, 0.06], atol=0.003)
    assert (sq.exponents < 0.3).all()  # box-like
    # A footprint too small pulls the fit in (a penalty, against the points), except across edges marked open.
    smaller = truth.centre[:2] + (footprint - truth.centre[:2]) * 0.75
    bounded, _ = fit_superquadric(seen, z_range=(0.0, 0.1), within_xy=smaller)
    unbounded, _ = fit_superquadric(seen, z_range=(0.0, 0.1), within_xy=smaller, open_edges=np.ones(4, bool))
    np.testing.assert_allclose(np.sort(unbounded.semi_axes[:2]), [0.04, 0.06], atol=0.003)
    assert bounded.semi_axes[:2].max() < unbounded.semi_axes[:2].max() - 0.003


def test_mesh_is_watertight_outward_and_has_the_right_volume():
    ellipsoid = superquadric_mesh([0.05, 0.03, 0.08], [1.0, 1.0])
    assert ellipsoid.is_watertight and ellipsoid.is_winding_consistent
    assert ellipsoid.volume == pytest.approx(4 / 3 * np.pi * 0.05 * 0.03 * 0.08, rel=0.03)
    box = superquadric_mesh([0.05, 0.03, 0.08], [0.1, 0.1])
    assert box.is_watertight and box.volume == pytest.approx(8 * 0.05 * 0.03 * 0.08, rel=0.1)
    np.testing.assert_allclose(box.extents, [0.1, 0.06, 0.16], atol=1e-3)


def test_degenerate_input_gives_a_clear_error():
    rng = np.random.default_rng(0)
    flat = np.column_stack([rng.uniform(0, 0.1, (100, 2)), np.zeros(100)])
    with pytest.raises(ValueError, match="span no volume"):
        fit_superquadric(flat)
    with pytest.raises(ValueError, match="at least 10 finite points"):
        fit_superquadric(rng.uniform(0, 0.1, (5, 3)))
    with pytest.raises(ValueError, match="top > bottom"):
        fit_superquadric(rng.uniform(0, 0.1, (50, 3)), z_range=(0.1, 0.1))
