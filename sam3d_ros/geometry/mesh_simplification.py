"""Fewer triangles for consumers that pay per triangle (MoveIt collision checking), shape kept (ROS-free)."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree

from sam3d_ros.geometry.types import InputError


def simplified_mesh(mesh: trimesh.Trimesh, max_triangles: int, vertex_colors: np.ndarray | None = None) -> trimesh.Trimesh:
    """`mesh` with at most `max_triangles` faces by quadric edge-collapse decimation (open3d), in the same frame
    and units; the mesh itself when it is already small enough. Vertex colours are not kept, unless given:
    `vertex_colors` ((V, 4) uint8, one per vertex of `mesh`) colour each vertex of the result as its nearest vertex
    of `mesh` (a collapsed vertex stays near the ones it replaced; no blending)."""
    if max_triangles < 4:
        raise InputError(f"max_triangles must be at least 4 (a tetrahedron), got {max_triangles}")
    if len(mesh.faces) <= max_triangles:
        return mesh
    o3d_mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )
    reduced = o3d_mesh.simplify_quadric_decimation(target_number_of_triangles=int(max_triangles))
    reduced.remove_unreferenced_vertices()
    vertices = np.asarray(reduced.vertices)
    result = trimesh.Trimesh(vertices, np.asarray(reduced.triangles), process=False)
    if vertex_colors is not None:
        vertex_colors = np.asarray(vertex_colors)
        if vertex_colors.shape != (len(mesh.vertices), 4):
            raise InputError(f"vertex_colors must be one RGBA per vertex ({len(mesh.vertices)}, 4), got {vertex_colors.shape}")
        _, nearest = cKDTree(np.asarray(mesh.vertices, dtype=np.float64)).query(vertices)
        result.visual.vertex_colors = vertex_colors[nearest]
    return result
