"""The lofted cross-section mesh: closed, outward, and following the slices."""
import numpy as np

from sam3d_ros.geometry.sliced_solid import sliced_solid


def test_cylinder_and_box_volumes():
    rng = np.random.default_rng(0)
    angles, z = rng.uniform(0, 2 * np.pi, 4000), rng.uniform(-0.05, 0.05, 4000)
    cylinder = np.column_stack([0.03 * np.cos(angles), 0.03 * np.sin(angles), z])
    mesh = sliced_solid(cylinder, (-0.05, 0.05))
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert abs(mesh.volume - np.pi * 0.03**2 * 0.1) / (np.pi * 0.03**2 * 0.1) < 0.02
    box = rng.uniform([-0.05, -0.02, -0.1], [0.05, 0.02, 0.1], (6000, 3))
    mesh = sliced_solid(box, (-0.1, 0.1))
    assert mesh.is_watertight and abs(mesh.volume - 0.0008) / 0.0008 < 0.08
    np.testing.assert_allclose(mesh.bounds, [[-0.05, -0.02, -0.1], [0.05, 0.02, 0.1]], atol=1e-3)


def test_taper_is_kept_where_a_convex_hull_would_not():
    # A bottle: radius 4 cm below, 1 cm neck above, with an empty slice in between filled from its neighbour.
    rng = np.random.default_rng(1)
    angles = rng.uniform(0, 2 * np.pi, 6000)
    z = np.concatenate([rng.uniform(0.0, 0.1, 3000), rng.uniform(0.13, 0.2, 3000)])
    r = np.where(z < 0.12, 0.04, 0.01)
    bottle = np.column_stack([r * np.cos(angles), r * np.sin(angles), z])
    mesh = sliced_solid(bottle, (0.0, 0.2))
    assert mesh.is_watertight
    neck = mesh.vertices[np.isclose(mesh.vertices[:, 2], mesh.vertices[:, 2].max()) & (np.linalg.norm(mesh.vertices[:, :2], axis=1) > 0)]
    assert np.linalg.norm(neck[:, :2], axis=1).max() < 0.012
    hull_volume = mesh.convex_hull.volume
    assert mesh.volume < 0.85 * hull_volume
