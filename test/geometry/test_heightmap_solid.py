"""heightmap_solid: the columns under a visible surface, watertight, on the points' own box."""
import numpy as np
import open3d as o3d
import pytest

from sam3d_ros.geometry.heightmap_solid import heightmap_solid


def _inside(mesh, point):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    return bool(scene.compute_occupancy(o3d.core.Tensor(np.array([point], np.float32))).numpy()[0] > 0.5)


def test_an_l_shaped_slab_keeps_its_notch_and_its_box():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 0.2, 8000), rng.uniform(0, 0.1, 8000), rng.uniform(0.015, 0.02, 8000)])
    points = points[~((points[:, 0] > 0.1) & (points[:, 1] > 0.05))]  # an L: the notch is empty
    mesh = heightmap_solid(points, 0.0, 0.004)
    assert mesh.is_watertight and mesh.volume > 0
    np.testing.assert_allclose(mesh.bounds, [[0, 0, 0], [0.2, 0.1, 0.02]], atol=1e-3)
    assert mesh.volume == pytest.approx(0.75 * 0.2 * 0.1 * 0.02, rel=0.15)  # not the convex hull's 0.2 x 0.1 slab
    assert not _inside(mesh, [0.17, 0.09, 0.01]) and _inside(mesh, [0.05, 0.05, 0.01])


def test_a_bowl_surface_seen_from_above_keeps_its_hollow_top():
    r = np.sqrt(np.random.default_rng(1).uniform(0, 1, 6000)) * 0.08
    a = np.random.default_rng(2).uniform(0, 2 * np.pi, 6000)
    points = np.column_stack([r * np.cos(a), r * np.sin(a), 0.01 + 0.05 * (r / 0.08) ** 2])  # inside of a bowl
    mesh = heightmap_solid(points, 0.0, 0.004)
    assert mesh.is_watertight
    assert not _inside(mesh, [0.0, 0.0, 0.04]) and _inside(mesh, [0.07, 0.0, 0.04])


def test_points_below_the_bottom_only_are_refused():
    with pytest.raises(ValueError, match="no point above the bottom"):
        heightmap_solid(np.zeros((10, 3)), 0.0, 0.004)
