"""`sam3d-ros bench-messages`: the cost of turning a mesh into ROS messages.

A mesh marker's TRIANGLE_LIST (Points and ColorRGBAs, built with the generated constructors) and a collision
object's shape_msgs/Mesh (Points and MeshTriangles) are thousands of small Python messages. For the collision mesh
`conversions` fills the generated classes' slots directly and pauses the cyclic garbage collector meanwhile;
`plain=True` builds the same content through the public constructors with the collector running, and the marker
column shows what the plain API costs for a marker. This process imports what the node imports (rclpy, open3d, torch,
...), so the collector has a heap of the node's size to walk. A benchmark, not a test: it prints numbers.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np
import trimesh

from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.ros import conversions
from sam3d_ros.ros import perception_node  # noqa: F401  (the node's imports: a heap of the node's size)


@dataclass
class MessageBenchRow:
    """Median milliseconds to build each message content for one mesh size."""

    triangles: int
    marker_ms: float
    collision_ms: float
    collision_plain_ms: float


def coloured_mesh(triangles: int, seed: int = 0) -> trimesh.Trimesh:
    """A closed mesh of about `triangles` faces with a distinct colour per vertex (as reconstructions have)."""
    sphere = trimesh.creation.icosphere(subdivisions=int(np.ceil(np.log(max(triangles, 20) / 20) / np.log(4))) + 1,
                                        radius=0.05)
    mesh = simplified_mesh(sphere, triangles)
    colours = np.random.default_rng(seed).integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    colours[:, 3] = 255
    mesh.visual.vertex_colors = colours
    return mesh


def _median_ms(build, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms caches up and is not counted
        started = time.perf_counter()
        built = build()
        times.append((time.perf_counter() - started) * 1000.0)
        del built
    return float(np.median(times[1:]))


def run_message_benchmark(triangle_counts=(1000, 5000, 20000), repeats: int = 7) -> tuple[list[MessageBenchRow], int]:
    """Rows per mesh size and the number of objects the collector tracks in this process."""
    rows = []
    for triangles in triangle_counts:
        mesh = coloured_mesh(triangles)
        rows.append(MessageBenchRow(
            triangles=len(mesh.faces),
            marker_ms=_median_ms(lambda: conversions.make_triangle_list(mesh, None), repeats),
            collision_ms=_median_ms(lambda: conversions.make_shape_mesh("bench", mesh), repeats),
            collision_plain_ms=_median_ms(lambda: conversions.make_shape_mesh("bench", mesh, plain=True), repeats),
        ))
    return rows, len(gc.get_objects())


def format_message_benchmark(rows: list[MessageBenchRow], heap_objects: int) -> str:
    lines = [f"mesh -> ROS messages, median ms (this process: {heap_objects} objects tracked by the garbage collector)",
             " triangles  marker (plain API)  collision  collision plain  x"]
    for r in rows:
        lines.append(f"{r.triangles:10d} {r.marker_ms:19.1f} {r.collision_ms:10.1f} {r.collision_plain_ms:16.1f}"
                     f" {r.collision_plain_ms / r.collision_ms:4.1f}")
    lines.append("marker = make_triangle_list (TRIANGLE_LIST points + colours); collision = make_shape_mesh (slots filled, "
                 "collector paused); plain = the generated constructors with the garbage collector running")
    return "\n".join(lines)
