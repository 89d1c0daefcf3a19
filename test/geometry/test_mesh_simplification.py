"""Quadric decimation for collision meshes: triangle budget met, shape and frame kept."""
import numpy as np
import open3d as o3d
import pytest
import trimesh

from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.geometry.types import InputError


def test_a_dense_mesh_gets_the_triangle_budget_and_keeps_its_shape():
    dense = trimesh.creation.cylinder(radius=0.04, height=0.12, sections=256)
    dense = dense.subdivide().subdivide()
    dense.apply_translation([0.3, -0.1, 0.5])  # not at the origin: the frame must not change
    assert len(dense.faces) > 8000
    reduced = simplified_mesh(dense, 1000)
    assert 0 < len(reduced.faces) <= 1000
    assert reduced.is_watertight
    # Every reduced vertex lies on the original surface and the volume is kept (within 1 mm / 2 %).
    surface = o3d.t.geometry.RaycastingScene()
    surface.add_triangles(o3d.core.Tensor(dense.vertices, o3d.core.float32), o3d.core.Tensor(dense.faces, o3d.core.uint32))
    distance = surface.compute_distance(o3d.core.Tensor(reduced.vertices, o3d.core.float32)).numpy()
    assert distance.max() < 0.001
    assert abs(reduced.volume - dense.volume) < 0.02 * dense.volume
    assert np.allclose(reduced.bounds, dense.bounds, atol=0.002)


def test_a_small_mesh_is_returned_as_it_is():
    box = trimesh.creation.box(extents=[0.1, 0.2, 0.3])
    assert simplified_mesh(box, 1000) is box


def test_a_budget_below_a_tetrahedron_is_refused():
    with pytest.raises(InputError, match="at least 4"):
        simplified_mesh(trimesh.creation.box(), 2)


def test_given_vertex_colours_follow_each_part_of_the_surface():
    dense = trimesh.creation.icosphere(subdivisions=5, radius=0.05)
    rgba = np.where((dense.vertices[:, 0] > 0)[:, None], [250, 0, 0, 255], [0, 0, 250, 100]).astype(np.uint8)
    reduced = simplified_mesh(dense, 800, vertex_colors=rgba)
    assert len(reduced.faces) <= 800 and reduced.is_watertight
    colours = np.asarray(reduced.visual.vertex_colors)
    assert colours.shape == (len(reduced.vertices), 4)
    red = np.all(colours == [250, 0, 0, 255], axis=1)
    blue = np.all(colours == [0, 0, 250, 100], axis=1)
    assert np.all(red | blue) and red.any() and blue.any()  # the given colours, alpha included, none blended
    assert np.all(reduced.vertices[red, 0] > -0.005) and np.all(reduced.vertices[blue, 0] < 0.005)
    with pytest.raises(InputError, match="one RGBA per vertex"):
        simplified_mesh(dense, 800, vertex_colors=rgba[:10])
