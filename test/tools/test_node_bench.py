"""bench-node's frame accounting (its report, not the timing): every frame published by the node or counted dropped;
the scenes it plays: every object visible, for 1 to 20 objects."""
import numpy as np
import pytest

from sam3d_ros.tools.node_bench import OBJECT_NAMES, NodeBenchResult, bench_sequence, format_node_bench, late_frames_near


def _result(**counts) -> NodeBenchResult:
    result = NodeBenchResult(rate_hz=30.0, n_objects=5, seconds=10.0, latencies_ms=[20.0, 30.0, 40.0],
                             rss_mb=[(0.0, 400.0, 0.0), (1.0, 420.0, 0.0), (10.0, 425.0, 0.0)], **counts)
    result.node_drop_reasons = {"dropped (tracking busy)": 7, "dropped (lost before the node)": 3}
    return result


@pytest.mark.parametrize("n_objects", [1, 5, 10, 20])
def test_the_played_sequence_shows_every_object_in_its_first_frames(n_objects):
    sequence, layout = bench_sequence(n_objects, n_frames=2)
    assert layout == ("random" if n_objects <= 5 else "grid")
    for scene in sequence:
        pixels = np.bincount(scene.labels.ravel(), minlength=n_objects + 1)[1:]
        assert len(pixels) == n_objects and pixels.min() >= 400, pixels  # the node's masks: one label per object
        assert min(obj.visible_fraction for obj in scene.objects) >= 0.6
        assert [obj.name for obj in scene.objects] == OBJECT_NAMES[:n_objects]


def test_more_objects_than_names_are_refused_in_one_line():
    with pytest.raises(ValueError, match="1 to 20 objects, not 21"):
        bench_sequence(21)


def test_the_report_names_layout_and_the_memory_of_node_and_fusion_apart():
    result = _result(published=300, with_tf=288, node_frames_in=297, node_frames_out=290, node_frames_dropped=10)
    result.layout, result.camera_distance_m, result.object_pixels = "grid", 1.5, (1200, 2000)
    result.rss_mb = [(0.0, 400.0, 300.0), (1.0, 420.0, 310.0), (10.0, 425.0, 330.0)]
    report = format_node_bench(result)
    assert "grid layout, camera 1.50 m out, visible pixels per object in the first frame: min 1200, median 2000" in report
    assert "700 MB at start" in report and "755 MB at the end" in report
    assert "node 400 -> 425 MB, child processes (fusion) 300 -> 330 MB" in report
    result.fusion = {"views integrated": 12.0, "fused meshes installed": 4.0}
    assert "fusion (since start): views integrated 12, fused meshes installed 4" in format_node_bench(result)


def test_memory_growth_is_counted_after_every_objects_first_fused_mesh_and_judged_over_a_long_enough_window():
    # Fusion allocates each object's (budgeted) model until its first fused mesh is in: that is warm-up, not growth.
    result = _result()
    result.seconds, result.fusion = 120.0, {"fused meshes installed": 9.0}
    result.rss_mb = [(float(t), 400.0 + 2.0 * min(t, 50), 300.0 + min(t, 50)) for t in range(121)]  # flat after 50 s
    result.fusion_warm_s, result.objects_fused = 50.0, 5
    report = format_node_bench(result)
    assert "after warm-up at 50 s (every object's first fused mesh in at 50 s)" in report
    assert "growth +0 MB over 70 s" in report and "memory growth +0 MB (< 50 after warm-up): PASS" in report
    result.fusion_warm_s, result.objects_fused = None, 3  # two objects never got a fused mesh: counted from 12 s
    report = format_node_bench(result)
    assert "fusion warm-up not over by the end: 3 of 5 objects had a fused mesh; counted from 12 s" in report
    assert "memory growth +114 MB (< 50 after warm-up): FAIL" in report
    result.fusion_warm_s, result.rss_mb = 100.0, result.rss_mb[:111]  # 10 s left after warm-up: no verdict
    assert "not judged (only 10 s after warm-up; run with more --seconds)" in format_node_bench(result)


def test_frames_the_node_published_or_counted_are_not_silent_and_listener_misses_are_apart():
    result = _result(published=300, with_tf=288, node_frames_in=297, node_frames_out=290, node_frames_dropped=10)
    assert result.silently_lost == 0 and result.outputs_not_received == 2
    report = format_node_bench(result)
    assert "silently lost 0 (= 0): PASS" in report
    assert "not received here with every object: 2" in report and "lost before the node: 3" in report


def test_frames_neither_published_nor_counted_fail_the_target():
    result = _result(published=300, with_tf=280, node_frames_in=290, node_frames_out=285, node_frames_dropped=10)
    assert result.silently_lost == 5
    assert "silently lost 5 (= 0): FAIL" in format_node_bench(result)


def test_the_report_gives_the_cpu_of_node_and_fusion_per_published_frame():
    result = _result(published=300, with_tf=288, node_frames_in=297, node_frames_out=250, node_frames_dropped=50)
    result.cpu_s, result.cpu_wall_s = (5.0, 2.5), 10.0
    report = format_node_bench(result)
    assert "CPU while playing: node 5.0 s (50 % of one core; 20.0 ms per frame it published), " \
           "child processes (fusion) 2.5 s (25 %)" in report


def test_late_frames_are_counted_by_how_near_a_mesh_install_they_were_published():
    sent_s = [0.1 * k for k in range(100)]  # 10 s of frames
    latencies = [10.0] * 100
    for k in (49, 50, 51, 52, 80):  # four late frames around an install at 5.05 s, one far from any
        latencies[k] = 100.0
    near_late, late, near_share = late_frames_near(latencies, sent_s, [5.05, 9.95])
    assert (near_late, late) == (4, 5)
    assert near_share == pytest.approx(9 / 100)  # 4.8-5.3 s (6 frames) and 9.7-9.9 s (3 frames)
    assert late_frames_near(latencies, sent_s, []) == (0, 5, 0.0)
    result = _result(published=100, with_tf=100, node_frames_in=100, node_frames_out=100, node_frames_dropped=0)
    result.latencies_ms, result.frame_sent_s, result.mesh_adds_s = latencies, sent_s, [5.05, 9.95]
    assert "mesh installs while playing (collision ADDs received): 2; frames above the p95 published within 0.3 s " \
           "of one: 4 of 5 (all frames: 9.0 % were)" in format_node_bench(result)


def test_the_cpu_of_a_process_and_its_children_is_read_from_proc():
    import os
    import subprocess
    import sys
    import time

    from sam3d_ros.tools.node_bench import node_cpu_s

    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
                              "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20.0
        while node_cpu_s(os.getpid())[1] < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        own, children = node_cpu_s(os.getpid())
        assert children >= 0.25 and own > 0.0  # the child's busy 0.3 s counts as a child's, not this process's
    finally:
        child.kill()
        child.wait()
    assert node_cpu_s(child.pid) == (0.0, 0.0)  # gone: nothing
