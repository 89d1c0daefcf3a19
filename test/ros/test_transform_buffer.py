"""TransformBuffer: chains, interpolation, time 0, static edges, pruning, and every error message."""
import sys
import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sam3d_ros.ros.transform_buffer import (
    ExtrapolationError,
    FrameNotFoundError,
    FramesNotConnectedError,
    TransformBuffer,
    TransformLookupError,
    format_ns,
)
from sam3d_ros.geometry.transforms import make_transform, rotation_angle_between, transform_points

S = 1_000_000_000  # ns per second
# REP 103: optical z forward = link x, optical x right = link -y, optical y down = link -z (columns: optical axes).
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
OPTICAL = "camera_color_optical_frame"


def yaw(degrees: float) -> np.ndarray:
    return Rotation.from_euler("z", degrees, degrees=True).as_matrix()


def camera_rig(buffer: TransformBuffer, stamp_ns: int = 5 * S) -> None:
    """world -> base_link (at (1, 2, 0), yawed 90 deg) -> camera_link (0.1, 0, 0.5) -> optical; base_link -> lidar."""
    buffer.set_transform("world", "base_link", stamp_ns, make_transform(yaw(90), [1.0, 2.0, 0.0]))
    buffer.set_transform("base_link", "camera_link", 0, make_transform(np.eye(3), [0.1, 0.0, 0.5]), static=True)
    buffer.set_transform("camera_link", OPTICAL, 0, make_transform(R_LINK_OPTICAL, [0.0, 0.0, 0.0]), static=True)
    buffer.set_transform("base_link", "lidar", 0, make_transform(np.eye(3), [0.0, 0.0, 1.0]), static=True)


def test_error_classes_are_lookup_errors():
    for error in (TransformLookupError, FrameNotFoundError, FramesNotConnectedError, ExtrapolationError):
        assert issubclass(error, LookupError)
    for error in (FrameNotFoundError, FramesNotConnectedError, ExtrapolationError):
        assert issubclass(error, TransformLookupError)


def test_rep103_optical_rotation_maps_optical_axes_to_link_axes():
    buffer = TransformBuffer()
    camera_rig(buffer)
    T_link_optical = buffer.lookup("camera_link", OPTICAL, 5 * S)
    np.testing.assert_allclose(transform_points(T_link_optical, [[0, 0, 1], [1, 0, 0], [0, 1, 0]]),
                               [[1, 0, 0], [0, -1, 0], [0, 0, -1]], atol=1e-12)


def test_chain_to_world_and_back_is_exact():
    buffer = TransformBuffer()
    camera_rig(buffer)
    T_world_optical = buffer.lookup("world", OPTICAL, 5 * S)
    # 1 m straight ahead of the camera = +x of base_link = +y of world; optical +x (right) = base -y = world +x.
    np.testing.assert_allclose(transform_points(T_world_optical, [[0, 0, 1], [1, 0, 0], [0, 0, 0]]),
                               [[1.0, 3.1, 0.5], [2.0, 2.1, 0.5], [1.0, 2.1, 0.5]], atol=1e-12)
    T_optical_world = buffer.lookup(OPTICAL, "world", 5 * S)
    np.testing.assert_allclose(T_optical_world @ T_world_optical, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(transform_points(T_optical_world, [[1.0, 3.1, 0.5]]), [[0, 0, 1]], atol=1e-12)


def test_lookup_through_a_common_ancestor_below_the_root():
    buffer = TransformBuffer()
    camera_rig(buffer)
    T_lidar_optical = buffer.lookup("lidar", OPTICAL, 5 * S)
    # optical (0, 0, 1) -> base_link (1.1, 0, 0.5) -> lidar (1.1, 0, -0.5)
    np.testing.assert_allclose(transform_points(T_lidar_optical, [[0, 0, 1]]), [[1.1, 0.0, -0.5]], atol=1e-12)
    np.testing.assert_allclose(buffer.lookup(OPTICAL, "lidar", 5 * S) @ T_lidar_optical, np.eye(4), atol=1e-12)


def test_same_frame_is_identity_and_sample_at_the_stamp_is_returned_exactly():
    buffer = TransformBuffer()
    T = make_transform(yaw(33), [0.3, -0.2, 0.1])
    buffer.set_transform("odom", "base_link", 7 * S, T)
    np.testing.assert_array_equal(buffer.lookup("base_link", "base_link", 7 * S), np.eye(4))
    np.testing.assert_array_equal(buffer.lookup("odom", "base_link", 7 * S), T)


def test_interpolation_at_mid_and_quarter_stamps():
    buffer = TransformBuffer()
    buffer.set_transform("world", "base_link", 1 * S, make_transform(yaw(0), [0.0, 0.0, 0.0]))
    buffer.set_transform("world", "base_link", 3 * S, make_transform(yaw(90), [2.0, -4.0, 1.0]))
    mid = buffer.lookup("world", "base_link", 2 * S)
    np.testing.assert_allclose(mid[:3, 3], [1.0, -2.0, 0.5], atol=1e-12)
    assert rotation_angle_between(np.eye(3), mid[:3, :3]) == pytest.approx(np.pi / 4, abs=1e-12)
    np.testing.assert_allclose(mid[:3, :3], yaw(45), atol=1e-12)
    quarter = buffer.lookup("world", "base_link", 1 * S + S // 2)
    np.testing.assert_allclose(quarter[:3, 3], [0.5, -1.0, 0.25], atol=1e-12)
    np.testing.assert_allclose(quarter[:3, :3], yaw(22.5), atol=1e-12)
    # and the inverse direction is the inverse of the interpolated transform
    np.testing.assert_allclose(buffer.lookup("base_link", "world", 2 * S) @ mid, np.eye(4), atol=1e-12)


def test_interpolation_takes_the_short_way_round():
    buffer = TransformBuffer()
    buffer.set_transform("world", "base_link", 0, make_transform(yaw(170), [0, 0, 0]))
    buffer.set_transform("world", "base_link", 2 * S, make_transform(yaw(-170), [0, 0, 0]))
    mid = buffer.lookup("world", "base_link", 1 * S)
    np.testing.assert_allclose(mid[:3, :3], yaw(180), atol=1e-12)  # not yaw(0), the long way


def test_samples_added_out_of_order_are_sorted():
    buffer = TransformBuffer()
    buffer.set_transform("world", "base_link", 3 * S, make_transform(np.eye(3), [3.0, 0, 0]))
    buffer.set_transform("world", "base_link", 1 * S, make_transform(np.eye(3), [1.0, 0, 0]))
    np.testing.assert_allclose(buffer.lookup("world", "base_link", 2 * S)[:3, 3], [2.0, 0, 0])


def test_sample_at_an_existing_stamp_replaces_it():
    buffer = TransformBuffer()
    buffer.set_transform("world", "base_link", 1 * S, make_transform(np.eye(3), [1.0, 0, 0]))
    buffer.set_transform("world", "base_link", 1 * S, make_transform(np.eye(3), [5.0, 0, 0]))
    np.testing.assert_allclose(buffer.lookup("world", "base_link", 1 * S)[:3, 3], [5.0, 0, 0])


def test_time_zero_is_the_latest_common_time_of_the_dynamic_edges():
    buffer = TransformBuffer()
    for t in (1, 2, 3):
        buffer.set_transform("world", "odom", t * S, make_transform(np.eye(3), [float(t), 0, 0]))
    for t in (1.0, 2.5):
        buffer.set_transform("odom", "base_link", int(t * S), make_transform(np.eye(3), [0, float(t), 0]))
    buffer.set_transform("base_link", "camera_link", 0, make_transform(np.eye(3), [0, 0, 1.0]), static=True)
    latest = buffer.lookup("world", "camera_link", 0)
    np.testing.assert_allclose(latest[:3, 3], [2.5, 2.5, 1.0], atol=1e-12)  # both edges at 2.5 s
    np.testing.assert_allclose(latest, buffer.lookup("world", "camera_link", int(2.5 * S)))
    # only the static edge on the path: its transform, whatever the dynamic ones hold
    np.testing.assert_allclose(buffer.lookup("base_link", "camera_link", 0)[:3, 3], [0, 0, 1.0])


def test_time_zero_fails_when_the_edges_share_no_time():
    buffer = TransformBuffer()
    buffer.set_transform("world", "odom", 1 * S, make_transform(np.eye(3), [0, 0, 0]))
    buffer.set_transform("odom", "base_link", 7 * S, make_transform(np.eye(3), [0, 0, 0]))
    buffer.set_transform("odom", "base_link", 9 * S, make_transform(np.eye(3), [0, 0, 0]))
    with pytest.raises(ExtrapolationError) as error:
        buffer.lookup("world", "base_link", 0)
    assert str(error.value) == (
        "cannot transform 'base_link' to 'world' at the latest common time 1.000000000 s: extrapolation into the "
        "past, edge 'odom' -> 'base_link' has data from 7.000000000 s to 9.000000000 s "
        "(6.000000000 s before the oldest sample)"
    )


def test_static_edges_hold_at_every_time_and_never_expire():
    buffer = TransformBuffer(cache_time_s=1.0)
    T = make_transform(R_LINK_OPTICAL, [0.0, 0.015, 0.0])
    buffer.set_transform("camera_link", OPTICAL, 123, T, static=True)
    for t in range(0, 100):  # a dynamic edge moving 100 s on prunes its own history, not the static edge
        buffer.set_transform("odom", "camera_link", t * S, make_transform(np.eye(3), [0, 0, 0]))
    for stamp in (0, 1, 50 * S, 10**18):
        np.testing.assert_array_equal(buffer.lookup("camera_link", OPTICAL, stamp), T)
    buffer.clear()  # clearing drops dynamic edges only
    np.testing.assert_array_equal(buffer.lookup("camera_link", OPTICAL, 0), T)
    assert buffer.frames() == [OPTICAL, "camera_link"]


def test_a_new_static_transform_replaces_the_old_one():
    buffer = TransformBuffer()
    buffer.set_transform("base_link", "camera_link", 0, make_transform(np.eye(3), [1.0, 0, 0]), static=True)
    buffer.set_transform("base_link", "camera_link", 0, make_transform(np.eye(3), [2.0, 0, 0]), static=True)
    np.testing.assert_allclose(buffer.lookup("base_link", "camera_link", 3 * S)[:3, 3], [2.0, 0, 0])


def test_a_new_parent_replaces_the_edge_and_its_history():
    buffer = TransformBuffer()
    buffer.set_transform("odom", "base_link", 1 * S, make_transform(np.eye(3), [1.0, 0, 0]))
    buffer.set_transform("map", "base_link", 2 * S, make_transform(np.eye(3), [2.0, 0, 0]))
    assert buffer.frames() == ["base_link", "map"]  # odom no longer takes part in any edge
    np.testing.assert_allclose(buffer.lookup("map", "base_link", 2 * S)[:3, 3], [2.0, 0, 0])
    assert not buffer.can_transform("map", "base_link", 1 * S)  # the history under odom is gone


def test_a_dynamic_sample_for_a_static_edge_makes_it_dynamic():
    buffer = TransformBuffer()
    buffer.set_transform("base_link", "camera_link", 0, make_transform(np.eye(3), [1.0, 0, 0]), static=True)
    buffer.set_transform("base_link", "camera_link", 5 * S, make_transform(np.eye(3), [2.0, 0, 0]))
    np.testing.assert_allclose(buffer.lookup("base_link", "camera_link", 5 * S)[:3, 3], [2.0, 0, 0])
    assert not buffer.can_transform("base_link", "camera_link", 4 * S)  # no longer valid at every time


def test_history_is_pruned_to_the_cache_time():
    buffer = TransformBuffer(cache_time_s=1.0)
    for i in range(51):  # 0 .. 5 s every 0.1 s
        assert buffer.set_transform("odom", "base_link", i * S // 10, make_transform(np.eye(3), [i / 10, 0, 0]))
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", 4 * S)[:3, 3], [4.0, 0, 0])
    with pytest.raises(ExtrapolationError, match=r"has data from 4\.000000000 s to 5\.000000000 s"):
        buffer.lookup("odom", "base_link", 3 * S)
    # a sample older than the cache keeps is refused
    assert not buffer.set_transform("odom", "base_link", 3 * S, make_transform(np.eye(3), [0, 0, 0]))
    assert not buffer.can_transform("odom", "base_link", 3 * S)


def test_samples_far_before_their_edges_newest_mean_time_jumped_back_and_clear_the_dynamic_transforms():
    buffer = TransformBuffer()  # cache 10 s, time_jump_s 1 s
    camera_rig(buffer, 100 * S)
    for k in range(11):  # 100 .. 105 s
        buffer.set_transform("world", "base_link", 100 * S + k * S // 2, make_transform(yaw(90), [1.0, 2.0, 0.0]))
        buffer.set_transform("world", "marker", 100 * S + k * S // 2, make_transform(np.eye(3), [k, 0, 0]))
    # A bag played with --loop starts again at 40 s: older than the cache, which tf2 refuses for the next 65 s.
    buffer.set_transform("world", "base_link", 40 * S, make_transform(yaw(90), [7.0, 2.0, 0.0]))
    assert buffer.set_transform("world", "base_link", 40 * S + S // 2, make_transform(yaw(90), [7.0, 2.0, 0.0]))
    assert buffer.time_jumps == 1 and buffer.last_time_jump == ("world", "base_link", 65 * S - S // 2)
    np.testing.assert_allclose(buffer.lookup("world", "base_link", 40 * S + S // 4)[:3, 3], [7.0, 2.0, 0.0])
    assert not buffer.can_transform("world", "base_link", 104 * S)  # the old timeline is gone ...
    assert not buffer.can_transform("world", "marker", 104 * S)  # ... on every dynamic edge
    assert buffer.can_transform("base_link", OPTICAL, 0)  # static edges stay
    buffer.set_transform("world", "marker", 40 * S, make_transform(np.eye(3), [1.0, 0, 0]))  # its own first sample
    assert buffer.time_jumps == 1, "the other edges' first samples after the jump are not jumps again"
    # the optical frame's origin is at (7, 2.1, 0.5) in world, the marker at (1, 0, 0): both from after the jump
    np.testing.assert_allclose(buffer.lookup("marker", OPTICAL, 40 * S)[:3, 3], [6.0, 2.1, 0.5], atol=1e-9)


def test_one_late_sample_is_not_a_time_jump():
    """A node publishing a reconstruction at its own frame's stamp, seconds before the tracked poses it sent."""
    buffer = TransformBuffer()
    for k in range(20):  # 10 Hz, 100 .. 101.9 s
        buffer.set_transform("camera", "object", 100 * S + k * S // 10, make_transform(np.eye(3), [k, 0, 0]))
    assert buffer.set_transform("camera", "object", 97 * S, make_transform(np.eye(3), [-1.0, 0, 0]))  # within the cache
    buffer.set_transform("camera", "object", 102 * S, make_transform(np.eye(3), [20.0, 0, 0]))
    buffer.set_transform("camera", "object", 80 * S, make_transform(np.eye(3), [-1.0, 0, 0]))  # older than the cache
    buffer.set_transform("camera", "object", 102 * S + S // 10, make_transform(np.eye(3), [21.0, 0, 0]))
    assert buffer.time_jumps == 0
    np.testing.assert_allclose(buffer.lookup("camera", "object", 101 * S)[:3, 3], [10.0, 0, 0])
    np.testing.assert_allclose(buffer.lookup("camera", "object", 97 * S)[:3, 3], [-1.0, 0, 0])  # kept, like tf2


def test_time_jumped_back_keeps_the_samples_that_started_the_new_timeline():
    buffer = TransformBuffer()
    for k in range(11):
        buffer.set_transform("world", "base_link", 100 * S + k * S // 2, make_transform(np.eye(3), [k, 0, 0]))
    buffer.set_transform("world", "base_link", 40 * S, make_transform(np.eye(3), [5.0, 0, 0]))  # refused, held
    assert not buffer.can_transform("world", "base_link", 40 * S)
    buffer.time_jumped_back(40 * S)  # e.g. the camera's stamps jumped back to 40 s too
    np.testing.assert_allclose(buffer.lookup("world", "base_link", 40 * S)[:3, 3], [5.0, 0, 0])
    assert not buffer.can_transform("world", "base_link", 104 * S)
    buffer.set_transform("world", "base_link", 30 * S, make_transform(np.eye(3), [3.0, 0, 0]))
    buffer.time_jumped_back(10 * S)  # a sample far from where time went: not kept
    assert buffer.frames() == []


def test_history_is_capped_in_samples():
    buffer = TransformBuffer(cache_time_s=1000.0, max_samples_per_frame=3)
    for t in range(10):
        buffer.set_transform("odom", "base_link", t * S, make_transform(np.eye(3), [0, 0, 0]))
    with pytest.raises(ExtrapolationError, match=r"has data from 7\.000000000 s to 9\.000000000 s"):
        buffer.lookup("odom", "base_link", 6 * S)


def test_tolerance_past_the_newest_sample():
    T = make_transform(yaw(10), [1.0, 0, 0])
    strict, tolerant = TransformBuffer(), TransformBuffer(extrapolation_tolerance_s=0.05)
    for buffer in (strict, tolerant):
        buffer.set_transform("odom", "base_link", 1 * S, T)
    np.testing.assert_array_equal(strict.lookup("odom", "base_link", 1 * S), T)
    assert not strict.can_transform("odom", "base_link", 1 * S + 1)
    np.testing.assert_array_equal(tolerant.lookup("odom", "base_link", 1 * S + 50_000_000), T)
    assert not tolerant.can_transform("odom", "base_link", 1 * S + 50_000_001)
    assert not tolerant.can_transform("odom", "base_link", 1 * S - 1)  # no tolerance into the past


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_frame_message_lists_the_known_frames():
    buffer = TransformBuffer()
    camera_rig(buffer)
    with pytest.raises(FrameNotFoundError) as error:
        buffer.lookup("base_footprint", OPTICAL, 5 * S)
    assert str(error.value) == (
        f"cannot transform '{OPTICAL}' to 'base_footprint': unknown frame 'base_footprint' (known frames: "
        f"base_link, {OPTICAL}, camera_link, lidar, world)"
    )
    with pytest.raises(FrameNotFoundError) as error:
        buffer.lookup("a", "b", 0)
    assert "unknown frames 'a' and 'b' (known frames: base_link," in str(error.value)
    with pytest.raises(FrameNotFoundError) as error:
        buffer.lookup("x", "x", 0)  # like tf2, an unknown frame is an error even when source == target
    assert str(error.value) == "cannot transform 'x' to 'x': unknown frame 'x' (known frames: " + \
        f"base_link, {OPTICAL}, camera_link, lidar, world)"


def test_unknown_frame_in_an_empty_buffer_and_a_long_frame_list():
    with pytest.raises(FrameNotFoundError) as error:
        TransformBuffer().lookup("world", "camera", 0)
    assert str(error.value) == (
        "cannot transform 'camera' to 'world': unknown frames 'world' and 'camera' (the buffer holds no transforms)"
    )
    buffer = TransformBuffer()
    for i in range(40):
        buffer.set_transform("root", f"f{i:02d}", 0, np.eye(4), static=True)
    with pytest.raises(FrameNotFoundError) as error:
        buffer.lookup("root", "nope", 0)
    message = str(error.value)
    assert message.endswith(", f29, ... (41 in all))") and "f30" not in message and "\n" not in message


def test_empty_frame_name():
    buffer = TransformBuffer()
    camera_rig(buffer)
    with pytest.raises(TransformLookupError) as error:
        buffer.lookup("", "base_link", 0)
    assert str(error.value) == "cannot transform 'base_link' to '': a frame name is empty"


def test_frames_not_connected():
    buffer = TransformBuffer()
    camera_rig(buffer)
    buffer.set_transform("map", "odom", 0, np.eye(4), static=True)
    with pytest.raises(FramesNotConnectedError) as error:
        buffer.lookup("odom", "lidar", 5 * S)
    assert str(error.value) == (
        "cannot transform 'lidar' to 'odom': the frames are not connected ('lidar' is in the tree rooted at "
        "'world', 'odom' in the tree rooted at 'map')"
    )


def test_extrapolation_into_the_future_and_the_past():
    buffer = TransformBuffer()
    camera_rig(buffer, stamp_ns=10 * S)
    buffer.set_transform("world", "base_link", 12 * S, make_transform(yaw(90), [1.0, 2.0, 0.0]))
    with pytest.raises(ExtrapolationError) as error:
        buffer.lookup("world", OPTICAL, 12 * S + S // 2)
    assert str(error.value) == (
        f"cannot transform '{OPTICAL}' to 'world' at 12.500000000 s: extrapolation into the future, edge 'world' -> "
        "'base_link' has data from 10.000000000 s to 12.000000000 s (0.500000000 s past the newest sample)"
    )
    with pytest.raises(ExtrapolationError) as error:
        buffer.lookup(OPTICAL, "world", 9 * S + 250_000_000)
    assert str(error.value) == (
        f"cannot transform 'world' to '{OPTICAL}' at 9.250000000 s: extrapolation into the past, edge 'world' -> "
        "'base_link' has data from 10.000000000 s to 12.000000000 s (0.750000000 s before the oldest sample)"
    )
    assert buffer.can_transform("world", OPTICAL, 12 * S) and buffer.can_transform("world", OPTICAL, 10 * S)


def test_format_ns_is_exact():
    assert format_ns(1_700_000_000_000_000_001) == "1700000000.000000001 s"
    assert format_ns(-1_500_000_000) == "-1.500000000 s"


@pytest.mark.parametrize(
    "args, message",
    [
        (("world", "world", 0, np.eye(4)), "links a frame to itself"),
        (("", "base_link", 0, np.eye(4)), "has an empty frame name"),
        (("world", "base_link", -1, np.eye(4)), "has a negative stamp -1 ns"),
        (("world", "base_link", 0, np.eye(3)), "must be a finite 4x4 matrix, got shape (3, 3)"),
        (("world", "base_link", 0, np.full((4, 4), np.nan)), "must be a finite 4x4 matrix, got shape (4, 4)"),
        (("world", "base_link", 0, np.diag([2.0, 1.0, 1.0, 1.0])), "is not rigid"),
        (("world", "base_link", 0, np.diag([-1.0, 1.0, 1.0, 1.0])), "is not rigid"),  # a reflection
    ],
)
def test_set_transform_rejects_bad_input(args, message):
    with pytest.raises(ValueError) as error:
        TransformBuffer().set_transform(*args)
    assert message in str(error.value)


def test_set_transform_refuses_a_loop():
    buffer = TransformBuffer()
    buffer.set_transform("world", "base_link", 0, np.eye(4))
    buffer.set_transform("base_link", "camera_link", 0, np.eye(4))
    with pytest.raises(ValueError) as error:
        buffer.set_transform("camera_link", "world", 0, np.eye(4))
    assert str(error.value) == "transform 'camera_link' -> 'world' would close a loop ('camera_link' is below 'world')"
    assert buffer.frames() == ["base_link", "camera_link", "world"]
    np.testing.assert_array_equal(buffer.lookup("world", "camera_link", 0), np.eye(4))


def test_negative_lookup_stamp_is_a_value_error():
    buffer = TransformBuffer()
    camera_rig(buffer)
    with pytest.raises(ValueError, match="lookup stamp must be >= 0 ns, got -5"):
        buffer.lookup("world", "base_link", -5)


def test_concurrent_writer_and_reader():
    buffer = TransformBuffer(cache_time_s=0.01)  # tiny cache: the writer prunes on nearly every sample
    buffer.set_transform("odom", "base_link", 0, make_transform(np.eye(3), [0, 0, 0]))
    stop, failures = threading.Event(), []

    def write() -> None:
        for i in range(1, 3_000):
            buffer.set_transform("odom", "base_link", i * 1_000_000, make_transform(np.eye(3), [i, 0, 0]))
        stop.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: without the lock this fails within a few hundred samples
    try:
        writer = threading.Thread(target=write)
        writer.start()
        lookups = 0
        while not stop.is_set():
            try:
                T = buffer.lookup("odom", "base_link", 0)
                assert T[0, 3] == int(T[0, 3])  # time 0 hits a sample exactly
                lookups += 1
            except Exception as exc:  # noqa: BLE001 - any failure at all is the finding
                failures.append(repr(exc))
                break
        writer.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == [] and lookups > 0
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", 0)[:3, 3], [2_999, 0, 0])
