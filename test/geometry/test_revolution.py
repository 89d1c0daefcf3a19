"""fit_revolution: one vertical axis for every slice, median radius per slice, hidden lower slices mirrored."""
import numpy as np
import pytest

from sam3d_ros.geometry.revolution import fit_revolution


def _visible_half(radius_of_z, z, centre, n=4000, seed=0):
    """Points of the camera-facing half (x < centre x) of a surface of revolution, seen from -x."""
    rng = np.random.default_rng(seed)
    zs = rng.uniform(*z, n)
    angle = rng.uniform(np.pi / 2, 3 * np.pi / 2, n)
    r = radius_of_z(zs)
    return np.column_stack([centre[0] + r * np.cos(angle), centre[1] + r * np.sin(angle), zs])


def test_a_half_seen_can_gives_its_axis_and_radius():
    points = _visible_half(lambda z: np.full_like(z, 0.04), (0.0, 0.12), (0.5, 0.1))
    rev = fit_revolution(points, (0.0, 0.12), 0.01)
    np.testing.assert_allclose(rev.centre_xy, [0.5, 0.1], atol=1e-3)
    np.testing.assert_allclose(rev.ring_r, 0.04, atol=1e-3)
    mesh = rev.mesh()
    assert mesh.is_watertight and mesh.volume == pytest.approx(np.pi * 0.04**2 * 0.12, rel=0.03)


def test_a_ball_seen_from_above_narrows_to_its_contact():
    """Only the upper 70 % of a ball is seen; the hidden lower slices mirror the upper ones about the equator."""
    radius = 0.035
    points = _visible_half(lambda z: np.sqrt(np.maximum(radius**2 - (z - radius) ** 2, 0.0)), (0.02, 2 * radius), (0.3, 0.0))
    rev = fit_revolution(points, (0.0, 2 * radius), 0.005)
    np.testing.assert_allclose(rev.centre_xy, [0.3, 0.0], atol=2e-3)
    assert rev.ring_r[1] < 0.7 * rev.ring_r.max()  # narrower than the lowest seen slice (0.85 of the widest)


def test_too_few_slices_are_refused():
    with pytest.raises(ValueError, match="height slices"):
        fit_revolution(np.zeros((5, 3)), (0.0, 0.1), 0.01)
