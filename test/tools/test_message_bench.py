"""`sam3d-ros bench-messages` measures both ways of building mesh messages and prints a row per mesh size."""
from sam3d_ros.tools.message_bench import coloured_mesh, format_message_benchmark, run_message_benchmark


def test_coloured_mesh_has_the_asked_size_and_a_colour_per_vertex():
    mesh = coloured_mesh(500)
    assert 450 <= len(mesh.faces) <= 500 and mesh.is_watertight
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)


def test_benchmark_rows_and_report():
    rows, heap = run_message_benchmark((300, 1200), repeats=1)
    assert [r.triangles <= n for r, n in zip(rows, (300, 1200))] == [True, True]
    assert all(v > 0 for r in rows for v in (r.marker_ms, r.collision_ms, r.collision_plain_ms))
    assert heap > 10000  # the node's imports are loaded
    report = format_message_benchmark(rows, heap).splitlines()
    assert len(report) == 2 + len(rows) + 1 and report[2].split()[0] == str(rows[0].triangles)
