"""Frame accounting of the node without ROS: publisher sequence gaps and the diagnostics they feed."""
from types import SimpleNamespace

from sam3d_ros.ros.node_statistics import NodeStatistics
from sam3d_ros.ros.sequence_gaps import SequenceGapCounter


def test_gaps_between_received_numbers_are_counted_per_publisher():
    gaps = SequenceGapCounter()
    assert gaps.observe(b"a", 7) == 0  # the first message of a publisher starts its count
    assert gaps.observe(b"a", 8) == 0
    assert gaps.observe(b"b", 1) == 0
    assert gaps.observe(b"a", 12) == 3  # 9, 10, 11 never arrived
    assert gaps.observe(b"b", 3) == 1
    assert (gaps.lost, gaps.received) == (4, 5)


def test_repeated_late_and_unnumbered_messages_skip_nothing():
    gaps = SequenceGapCounter()
    gaps.observe(b"a", 5)
    assert gaps.observe(b"a", 5) == 0
    assert gaps.observe(b"a", 3) == 0
    assert gaps.observe(b"a", None) == 0
    assert gaps.observe(b"a", 6) == 0  # the late 3 did not move the count back
    assert (gaps.lost, gaps.out_of_order, gaps.unnumbered) == (0, 2, 1)


def test_unnamed_publishers_are_checked_only_while_the_topic_has_one():
    """Jazzy's message info has no publisher id: one publisher's numbers are still checked; with two, mixing their
    numbers would count false losses (one already far along when the other starts), so they are counted apart."""
    gaps = SequenceGapCounter()
    assert gaps.observe(None, 1) == 0
    assert gaps.observe(None, 4) == 2  # one publisher: 2 and 3 never arrived
    assert gaps.observe(None, 900, publishers=2) == 0  # a second publisher, far along: no false 895 losses
    assert gaps.observe(None, 5, publishers=2) == 0
    assert (gaps.lost, gaps.received, gaps.unattributed) == (2, 2, 2)
    named = SequenceGapCounter()
    named.observe(b"a", 1, publishers=2)
    assert named.observe(b"a", 3, publishers=2) == 1  # a named publisher is checked however many there are
    assert named.unattributed == 0


def test_unchecked_messages_are_reported_only_where_there_are_some():
    stats = NodeStatistics(frames_in=4, frames_out=4)
    stats.input_gaps["image"].observe(None, 7, publishers=2)
    _, _, values = _pipeline_values(stats)
    assert values["image messages not checked for losses (several publishers, none named)"] == 1
    assert values["image messages lost before the node"] == 0
    assert not any(key.startswith("depth messages not checked") for key in values)


def _pipeline_values(stats: NodeStatistics) -> tuple[str, str, dict]:
    scheduler = SimpleNamespace(running=0, waiting=0, submitted=0, replaced=0)
    name, _, level, message, values = stats.statuses("n", "depth", scheduler, [])[0]
    return level, message, values


def test_images_lost_before_the_node_count_as_dropped_frames():
    stats = NodeStatistics(frames_in=10, frames_out=8, frames_dropped_busy=2)
    stats.input_gaps["image"].observe(b"cam", 1)
    stats.input_gaps["image"].observe(b"cam", 5)  # 3 images never reached the callbacks
    stats.input_gaps["depth"].observe(b"cam", 1)
    stats.input_gaps["depth"].observe(b"cam", 3)  # reported, but a frame is counted by its image
    assert stats.frames_dropped == 5
    level, message, values = _pipeline_values(stats)
    assert level == "warn" and message == "5 of 13 frames dropped"
    assert values["dropped (lost before the node)"] == 3
    assert values["image messages lost before the node"] == 3 and values["depth messages lost before the node"] == 1


def test_without_message_info_the_losses_are_reported_as_not_counted():
    stats = NodeStatistics(frames_in=4, frames_out=4)
    stats.input_gaps["image"] = None  # Humble: callbacks get no message info
    assert stats.frames_dropped == 0
    level, message, values = _pipeline_values(stats)
    assert (level, message) == ("ok", "tracking every frame")
    assert values["image messages lost before the node"] == "not counted (no message info)"


def test_latency_max_covers_the_whole_run_while_median_and_p95_cover_the_window():
    stats = NodeStatistics(window=3)
    for seconds in (0.5, 0.01, 0.02, 0.03):
        stats.record("total", seconds)
    _, _, values = _pipeline_values(stats)
    assert values["total latency median ms"] == 20.0
    assert values["total latency max ms (since start)"] == 500.0


def test_meshes_not_from_the_model_warn_on_the_reconstruction_status_with_the_reason():
    stats = NodeStatistics()
    scheduler = SimpleNamespace(running=0, waiting=0, submitted=2, replaced=0)
    stats.count_reconstructed([SimpleNamespace(info={"mesh_source": "model"})])
    _, _, level, message, values = stats.statuses("n", "sam3d", scheduler, [])[1]
    assert level == "ok" and "meshes not from the model" not in values and stats.reconstructions == 1
    stats.count_reconstructed([SimpleNamespace(info={"mesh_source": "voxel_hull", "no_mesh_reason": "stage1_only"}),
                               SimpleNamespace(info={})])
    _, _, level, message, values = stats.statuses("n", "sam3d", scheduler, [])[1]
    assert level == "warn" and message.endswith("1 mesh(es) not from the model: stage1_only")
    assert values["meshes not from the model"] == 1 and values["why no model mesh (last)"] == "stage1_only"
    assert values["objects reconstructed"] == 3


def test_fusion_memory_is_reported_per_object_and_in_total():
    stats = NodeStatistics(fused_meshes=3)
    scheduler = SimpleNamespace(running=0, waiting=0, submitted=0, replaced=0)
    assert len(stats.statuses("n", "depth", scheduler, [])) == 2  # fusion off: no fusion status
    fusion = {"bytes": {"1": 6_000_000, "2": 2_000_000}, "views integrated": 9, "views skipped": 1,
              "last skip": "object 2: object mostly hidden"}
    name, _, level, message, values = stats.statuses("n", "depth", scheduler, [], fusion)[2]
    assert name == "n: fusion" and level == "ok" and "8.0 MB" in message
    assert values["memory MB (all objects)"] == 8.0 and values["memory MB 1"] == 6.0 and values["memory MB 2"] == 2.0
    assert values["fused meshes installed"] == 3 and values["views skipped"] == 1
