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


def _mug(seed=0):
    """The seen half of a 4 cm-radius mug body (z 0-9 cm) centred at (0.5, 0.1), and a handle on its side (+y, the
    camera sees it from -x): a 2 cm deep, 1 cm thick loop from z 2 to 7 cm."""
    body = _visible_half(lambda z: np.full_like(z, 0.04), (0.0, 0.09), (0.5, 0.1), seed=seed)
    rng = np.random.default_rng(seed + 1)
    t = rng.uniform(0.0, np.pi, 400)
    handle = np.column_stack([0.5 + rng.uniform(-0.005, 0.005, 400), 0.1 + 0.04 + 0.02 * np.sin(t), 0.045 + 0.025 * np.cos(t)])
    return body, handle


def test_a_handle_neither_moves_the_axis_nor_widens_the_body():
    body, handle = _mug()
    rev = fit_revolution(np.vstack([body, handle]), (0.0, 0.09), 0.01)
    np.testing.assert_allclose(rev.centre_xy, [0.5, 0.1], atol=1.5e-3)
    np.testing.assert_allclose(rev.ring_r, 0.04, atol=2e-3)
    attached = rev.attached
    assert attached[len(body):].mean() > 0.7  # the handle, beyond the body by more than a tenth of its radius
    assert not attached[: len(body)].any()


def test_a_can_with_a_flat_top_has_nothing_attached():
    """The top slice mixes the lid (inside the side's circle) with the side: the side there is no attachment."""
    side = _visible_half(lambda z: np.full_like(z, 0.04), (0.0, 0.1), (0.5, 0.1))
    rng = np.random.default_rng(3)
    radius, angle = 0.04 * np.sqrt(rng.uniform(0, 1, 1500)), rng.uniform(0, 2 * np.pi, 1500)
    lid = np.column_stack([0.5 + radius * np.cos(angle), 0.1 + radius * np.sin(angle), np.full(1500, 0.0995)])
    rev = fit_revolution(np.vstack([side, lid]), (0.0, 0.1), 0.01)
    assert not rev.attached.any()
    np.testing.assert_allclose(rev.centre_xy, [0.5, 0.1], atol=1e-3)
