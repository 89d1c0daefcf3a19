"""bench-node's frame accounting (its report, not the timing): every frame published by the node or counted dropped."""
from sam3d_ros.tools.node_bench import NodeBenchResult, format_node_bench


def _result(**counts) -> NodeBenchResult:
    result = NodeBenchResult(rate_hz=30.0, n_objects=5, seconds=10.0, latencies_ms=[20.0, 30.0, 40.0],
                             rss_mb=[(0.0, 400.0), (1.0, 420.0), (10.0, 425.0)], **counts)
    result.node_drop_reasons = {"dropped (tracking busy)": 7, "dropped (lost before the node)": 3}
    return result


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
