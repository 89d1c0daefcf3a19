"""TF broadcasting: tf2_ros where it is installed, else the same messages on /tf (tf2_ros has no wheel here)."""
from __future__ import annotations

from typing import Any, Iterable


class TopicTransformBroadcaster:
    """Publishes `tf2_msgs/TFMessage` on /tf with tf2_ros' QoS (reliable, volatile, depth 100)."""

    def __init__(self, node: Any) -> None:
        from rclpy.qos import QoSProfile
        from tf2_msgs.msg import TFMessage

        self._msg_type = TFMessage
        self._publisher = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))

    def sendTransform(self, transforms: Any) -> None:  # noqa: N802 (tf2_ros' name)
        """Publish one TransformStamped or a list of them."""
        if not isinstance(transforms, Iterable):
            transforms = [transforms]
        self._publisher.publish(self._msg_type(transforms=list(transforms)))


def make_transform_broadcaster(node: Any) -> Any:
    """tf2_ros.TransformBroadcaster when available (Humble, Jazzy, ...), else TopicTransformBroadcaster."""
    try:
        from tf2_ros import TransformBroadcaster
    except ImportError:
        return TopicTransformBroadcaster(node)
    return TransformBroadcaster(node)
