"""TF lookups for a node: tf2_ros where it is installed, else /tf and /tf_static fed into a TransformBuffer.

Both paths answer `lookup(target_frame, source_frame, stamp_ns, timeout_s)` with T_target_source (4x4 numpy) or
raise TransformLookupError with a one-line message. Transforms arrive through the node's subscriptions, so the
node must be spinning (in another thread, or another callback group of a multi-threaded executor) for a lookup
to see them, and for `timeout_s` to be of any use. Both clear their dynamic transforms when the node's ROS time
jumps back (a looping bag with use_sim_time), as tf2_ros' Buffer does with a node. Stamps can jump back without the
clock (a bag looping on wall time, a driver restart): TopicTransformLookup notices it in the TF stamps
(TransformBuffer), and `time_jumped_back(stamp_ns)` tells either lookup that the node saw it in its input stamps.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import numpy as np

from sam3d_ros.ros import conversions
from sam3d_ros.ros.transform_buffer import (
    ExtrapolationError,
    FrameNotFoundError,
    FramesNotConnectedError,
    TransformBuffer,
    TransformLookupError,
    format_ns,
)

__all__ = [
    "ExtrapolationError",
    "FrameNotFoundError",
    "FramesNotConnectedError",
    "TopicTransformLookup",
    "Tf2TransformLookup",
    "TransformLookup",
    "TransformLookupError",
    "make_transform_lookup",
]


class TransformLookup(Protocol):
    """What the node asks of TF."""

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int, timeout_s: float = 0.0) -> np.ndarray:
        """T_target_source at stamp_ns (0: latest), waiting up to timeout_s; TransformLookupError when it fails."""
        ...

    def time_jumped_back(self, stamp_ns: int) -> None:
        """The node's input stamps jumped back to `stamp_ns`: transforms from the old timeline must not be used."""
        ...


def _clear_on_time_jump(node: Any, clear: Any) -> Any:
    """Jump handle calling clear() when the node's clock goes back over 1 s or changes source (tf2_ros' rule)."""
    from rclpy.clock import JumpThreshold
    from rclpy.duration import Duration

    threshold = JumpThreshold(min_forward=None, min_backward=Duration(seconds=-1), on_clock_change=True)
    return node.get_clock().create_jump_callback(threshold, post_callback=lambda _jump: clear())


def _check_timeout(timeout_s: float) -> float:
    timeout_s = float(timeout_s)
    if not timeout_s >= 0:
        raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
    return timeout_s


class TopicTransformLookup:
    """Subscribes /tf and /tf_static with tf2_ros' listener QoS and answers from a TransformBuffer."""

    def __init__(self, node: Any, cache_time_s: float = 10.0) -> None:
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        self.buffer = TransformBuffer(cache_time_s=cache_time_s)
        self._logger = node.get_logger()
        self._warned: set[tuple[str, str, str]] = set()  # (parent, child, problem) already logged
        self._new_data = threading.Condition()
        self._generation = 0  # bumped under _new_data for every received message
        qos = dict(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
        group = ReentrantCallbackGroup()  # lookups waiting in another callback do not block these
        self._subscriptions = [
            node.create_subscription(
                TFMessage, "/tf", lambda msg: self._on_tf(msg, False),
                QoSProfile(durability=DurabilityPolicy.VOLATILE, **qos), callback_group=group,
            ),
            node.create_subscription(
                TFMessage, "/tf_static", lambda msg: self._on_tf(msg, True),
                QoSProfile(durability=DurabilityPolicy.TRANSIENT_LOCAL, **qos), callback_group=group,
            ),
        ]
        # The clock jumped: TF samples of the new timeline that came before /clock are held, not lost.
        self._jump_handle = _clear_on_time_jump(node, self.buffer.time_jumped_back)

    def time_jumped_back(self, stamp_ns: int) -> None:
        """Forget the dynamic transforms but the first samples of the new timeline (near `stamp_ns`)."""
        self.buffer.time_jumped_back(stamp_ns)

    def _on_tf(self, msg: Any, static: bool) -> None:
        jumps = self.buffer.time_jumps
        for transform in msg.transforms:
            parent, child = str(transform.header.frame_id), str(transform.child_frame_id)
            try:
                parent, child, stamp_ns, T_parent_child = conversions.transform_stamped_to_matrix(transform)
                if not self.buffer.set_transform(parent, child, stamp_ns, T_parent_child, static=static):
                    cache_s = self.buffer.cache_time_ns / 1e9
                    self._warn_once(parent, child, "old", f"ignoring transform '{parent}' -> '{child}' at "
                                    f"{format_ns(stamp_ns)}: older than the {cache_s:g} s cache")
            except ValueError as exc:  # InputError is a ValueError
                self._warn_once(parent, child, "invalid", f"ignoring transform '{parent}' -> '{child}': {exc}")
        if self.buffer.time_jumps != jumps and self.buffer.last_time_jump is not None:
            parent, child, back_ns = self.buffer.last_time_jump
            self._logger.warning(f"TF time jumped back {back_ns / 1e9:.3f} s (transform '{parent}' -> '{child}'): "
                                 "dynamic transforms cleared")
        with self._new_data:
            self._generation += 1
            self._new_data.notify_all()

    def _warn_once(self, parent: str, child: str, problem: str, message: str) -> None:
        key = (parent, child, problem)
        if key not in self._warned:
            self._warned.add(key)
            self._logger.warning(message + " (further such warnings for this edge are suppressed)")

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int, timeout_s: float = 0.0) -> np.ndarray:
        """T_target_source at stamp_ns (0: latest), waiting up to timeout_s; TransformLookupError when it fails."""
        deadline = time.monotonic() + _check_timeout(timeout_s)
        while True:
            with self._new_data:
                generation = self._generation
            try:
                return self.buffer.lookup(target_frame, source_frame, stamp_ns)
            except TransformLookupError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
            with self._new_data:
                self._new_data.wait_for(lambda: self._generation != generation, timeout=remaining)


class Tf2TransformLookup:
    """tf2_ros.Buffer + tf2_ros.TransformListener on the node; tf2's exceptions become TransformLookupError."""

    def __init__(self, node: Any, cache_time_s: float = 10.0) -> None:
        import tf2_ros
        from rclpy.duration import Duration

        self._tf2_ros = tf2_ros
        self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s))
        self.listener = tf2_ros.TransformListener(self.buffer, node)
        self._jump_handle = _clear_on_time_jump(node, self.buffer.clear)

    def time_jumped_back(self, stamp_ns: int) -> None:
        """tf2 notices only jumps of the node's clock: without them it would refuse the new timeline's transforms as
        older than its cache (or interleave them with the old ones). Clear it."""
        self.buffer.clear()

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int, timeout_s: float = 0.0) -> np.ndarray:
        """T_target_source at stamp_ns (0: latest), waiting up to timeout_s; TransformLookupError when it fails."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        tf2 = self._tf2_ros
        target_frame, source_frame, stamp_ns = str(target_frame), str(source_frame), int(stamp_ns)
        if stamp_ns < 0:
            raise ValueError(f"lookup stamp must be >= 0 ns, got {stamp_ns}")
        timeout = Duration(nanoseconds=int(round(_check_timeout(timeout_s) * 1e9)))
        when = f" at {format_ns(stamp_ns)}" if stamp_ns else ""
        what = f"cannot transform '{source_frame}' to '{target_frame}'{when}"
        try:
            msg = self.buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=stamp_ns), timeout=timeout)
        except tf2.TransformException as exc:
            detail = " ".join(str(exc).split())  # tf2's messages can span lines
            for tf2_type, our_type in (
                (tf2.LookupException, FrameNotFoundError),
                (tf2.ConnectivityException, FramesNotConnectedError),
                (tf2.ExtrapolationException, ExtrapolationError),
            ):
                if isinstance(exc, tf2_type):
                    raise our_type(f"{what}: {detail}") from exc
            raise TransformLookupError(f"{what}: {type(exc).__name__}: {detail}") from exc
        _, _, _, T_target_source = conversions.transform_stamped_to_matrix(msg)
        return T_target_source


def make_transform_lookup(node: Any, cache_time_s: float = 10.0) -> TransformLookup:
    """Tf2TransformLookup when tf2_ros imports (Humble, Jazzy, ...), else TopicTransformLookup."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return TopicTransformLookup(node, cache_time_s=cache_time_s)
    return Tf2TransformLookup(node, cache_time_s=cache_time_s)
