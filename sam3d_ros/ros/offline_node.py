"""The perception node driven from recorded messages: its own code, every frame, no DDS traffic.

`OfflinePerceptionNode` is the PerceptionNode with four seams set (see its docstring) and its rclpy entry points
redirected, nothing else: subscriptions are made as usual and their callbacks kept by topic, so `feed(topic, msg,
time_ns)` calls exactly what a received message would call (the inputs, /tf and /tf_static of the TF listener, in
whatever form this ROS installation builds it); every publisher the node makes becomes a recorder handing each message
to a sink, with the time of the input that caused it. The node's clock is simulated time (use_sim_time, as with
`ros2 bag play --clock`), set to each fed message's time. Every completed frame is tracked in the caller's thread, in
order; a frame that sends objects to reconstruction waits for it, then the fusion of its views (multi-view fusion,
on by default) is waited for too, its mesh interval counted in recording time; so the same messages give the same
outputs.
Nothing spins: timers, services and the tracking thread stay idle; diagnostics are published every
diagnostics_period_s of fed time.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.time import Time

from sam3d_ros.ros.perception_node import PerceptionNode
from sam3d_ros.ros.sync import FrameSet
from sam3d_ros.tracking.fused_models import FusionFrame

#: rclpy's own topics: real publishers (parameter events), never recorded as the node's outputs.
INFRASTRUCTURE_TOPICS = frozenset({"/parameter_events", "/rosout"})
_WAIT_SLICE_S = 1.0  # a reconstruction is waited for in slices of this length (it may take minutes: SAM 3D)


@dataclass
class RecordedOutput:
    """One message the node published: its topic, type and QoS, and the time (ns) of the input that caused it.

    As after rclpy's publish(), the node may reuse `msg` for a later frame (its grasp messages are updated in place):
    a sink that keeps messages past its call keeps copies (`copy.deepcopy`) or their serialised bytes."""

    topic: str
    msg_type: type
    qos: QoSProfile
    msg: Any
    time_ns: int


Sink = Callable[[RecordedOutput], None]


class _Recorder:
    """Stands in for an rclpy Publisher: publish() hands the message to the node's sink."""

    def __init__(self, node: OfflinePerceptionNode, msg_type: type, topic: str, qos: QoSProfile) -> None:
        self._node, self.msg_type, self.topic_name, self.qos_profile = node, msg_type, topic, qos

    def publish(self, msg: Any) -> None:
        self._node.sink(RecordedOutput(self.topic_name, self.msg_type, self.qos_profile, msg, self._node.time_ns))

    def get_subscription_count(self) -> int:
        return 1  # the sink: what the node builds only for a listener (its grasp messages) is recorded too

    def destroy(self) -> None:
        pass


def _accepts_message_info(callback: Callable) -> bool:
    """Whether a subscription callback takes (msg, message_info), as rclpy calls two-argument callbacks from Iron on."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    return len([p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 2


class OfflinePerceptionNode(PerceptionNode):
    """PerceptionNode fed by `feed()` and recording what it publishes into `sink` (see the module docstring).

    Create it in a context of its own; use_sim_time is always true (the clock is the recording's, set by feed()).
    `frames_processed` counts the completed frames handed to tracking here (each once).
    """

    MESH_KEEP_VERSIONS = None  # the recording refers to every mesh version: none is pruned, none removed

    def __init__(self, sink: Sink, **kwargs: Any) -> None:
        # Set before Node.__init__, which already creates subscriptions (/clock) and publishers (parameter events).
        self.sink = sink
        self.time_ns = 0
        self.inputs: dict[str, list[tuple[type, Callable]]] = {}
        self.frames_processed = 0
        self._next_diagnostics_ns: int | None = None
        self._fusion_frame: FusionFrame | None = None  # the frame being tracked's views, fused once it is done
        kwargs["parameter_overrides"] = [*kwargs.get("parameter_overrides", ()), Parameter("use_sim_time", value=True)]
        super().__init__(**kwargs)

    # -- rclpy entry points --------------------------------------------------------------------------------------
    def create_subscription(self, msg_type: Any, topic: str, callback: Callable, qos_profile: Any, **kwargs: Any) -> Any:
        """The real subscription (nothing spins it), and its callback kept for feed()."""
        subscription = super().create_subscription(msg_type, topic, callback, qos_profile, **kwargs)
        self.inputs.setdefault(subscription.topic_name, []).append((msg_type, callback))
        return subscription

    def create_publisher(self, msg_type: Any, topic: str, qos_profile: Any, **kwargs: Any) -> Any:
        """A recorder for the node's outputs; rclpy's own topics get real publishers."""
        name = self.resolve_topic_name(topic)
        if name in INFRASTRUCTURE_TOPICS:
            return super().create_publisher(msg_type, topic, qos_profile, **kwargs)
        qos = qos_profile if isinstance(qos_profile, QoSProfile) else QoSProfile(depth=int(qos_profile))
        return _Recorder(self, msg_type, name, qos)

    # -- seams of PerceptionNode ---------------------------------------------------------------------------------
    def _arrival_s(self) -> float:
        return self.time_ns / 1e9

    def _hand_over(self, frames: list[FrameSet]) -> None:
        """Every completed frame, in order, here and now; its reconstruction, then the fusion of its views, are waited
        for before the next one."""
        for frame_set in frames:
            self._process_guarded(frame_set)
            self.frames_processed += 1
            self.wait_for_reconstructions()
            self._fuse_frame()

    def _submit_fusion(self, frame: FusionFrame) -> None:
        """Kept until the frame's reconstruction is in (live, the two race; here their order is fixed)."""
        self._fusion_frame = frame

    def _fuse_frame(self) -> None:
        """Fuse the views of the frame just tracked and wait until its fused meshes, if any, are installed."""
        frame, self._fusion_frame = self._fusion_frame, None
        if frame is None or self.fusion_scheduler is None:
            return
        self.fusion_scheduler.submit(frame)
        while not self.fusion_scheduler.wait_idle(_WAIT_SLICE_S):
            pass

    # -- driving -------------------------------------------------------------------------------------------------
    def topics(self) -> dict[str, type]:
        """Topics the node subscribes to (resolved, remappings applied) and their message types."""
        return {topic: entries[0][0] for topic, entries in self.inputs.items()}

    def feed(self, topic: str, msg: Any, time_ns: int) -> None:
        """Deliver `msg` on `topic` at `time_ns` (the recording's time, never going back): the clock is set to it, the
        subscription callbacks run, and so does all the work they start. A topic nobody subscribes to is ignored."""
        self.advance(time_ns)
        for _, callback in self.inputs.get(topic, ()):
            if _accepts_message_info(callback):
                callback(msg, None)
            else:
                callback(msg)

    def advance(self, time_ns: int) -> None:
        """Move the clock to `time_ns` (if later), publishing diagnostics each diagnostics_period_s."""
        if time_ns <= self.time_ns:
            return
        self.time_ns = int(time_ns)
        self.get_clock().set_ros_time_override(Time(nanoseconds=self.time_ns))
        period_ns = int(float(self.params["diagnostics_period_s"]) * 1e9)
        if self._next_diagnostics_ns is None:
            self._next_diagnostics_ns = self.time_ns + period_ns
        elif self.time_ns >= self._next_diagnostics_ns:
            self._publish_diagnostics()
            self._next_diagnostics_ns = self.time_ns + period_ns

    def finish(self) -> None:
        """End of the recording: frames still waiting for a depth image that never came go without it (the node's
        depth_timeout_s passes), then the last diagnostics."""
        self.time_ns += int(float(self.params["depth_timeout_s"]) * 1e9) + 1
        self.get_clock().set_ros_time_override(Time(nanoseconds=self.time_ns))
        self._poll_inputs()
        self.wait_for_reconstructions()
        self._publish_diagnostics()

    def wait_for_reconstructions(self) -> None:
        """Block until the reconstruction scheduler has nothing running or waiting (its results are published)."""
        while not self.scheduler.wait_idle(_WAIT_SLICE_S):
            pass
