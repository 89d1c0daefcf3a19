"""Rosbag2 recordings of rendered scenes (written with `rosbags`): what `ros2 bag record` of a camera driver, a
segmenter and TF gives, for `sam3d-ros replay`'s tests and its benchmark."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tf2_msgs.msg import TFMessage

from sam3d_ros.ros.conversions import make_transform_stamped
from sam3d_ros.ros.ros_client import rgbd_messages
from sam3d_ros.tools.replay import msgtype_of, register_types
from sam3d_ros.tools.synthetic import SyntheticScene

REALSENSE_TOPICS = {  # realsense2_camera 4.x names (aligned depth), and a segmenter beside it
    "image": "/camera/camera/color/image_raw",
    "camera_info": "/camera/camera/color/camera_info",
    "depth": "/camera/camera/aligned_depth_to_color/image_raw",
    "masks": "/segmenter/masks",
}


@dataclass
class Recording:
    """How the scenes are recorded."""

    storage: str = "mcap"  # or "sqlite3"
    image_transport: str = "raw"  # or "compressed" (jpeg on <image>/compressed)
    depth_image_transport: str = "raw"  # or "compressedDepth" (png on <depth>/compressedDepth)
    frame_id: str = "camera_color_optical_frame"
    start_ns: int = 1_750_000_000_000_000_000
    period_ns: int = 33_333_333  # 30 Hz
    mask_delay_ns: int = 50_000_000  # masks are recorded this long after their image (a segmenter's latency)
    topics: dict[str, str] = field(default_factory=lambda: dict(REALSENSE_TOPICS))
    world_frame: str = "world"


def write_bag(path: Path, messages: Iterable[tuple[str, Any, int]], storage: str = "mcap") -> Counter:
    """Write (topic, rclpy message, recording time ns) into a new rosbag2 (in time order); the count per topic."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.EMPTY)
    counts: Counter = Counter()
    connections: dict[str, Any] = {}
    with Writer(path, version=8, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        for topic, msg, time_ns in sorted(messages, key=lambda item: item[2]):
            if topic not in connections:
                msgtype = msgtype_of(type(msg))
                register_types(typestore, [msgtype])
                connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
            writer.write(connections[topic], time_ns, serialize_message(msg))
            counts[topic] += 1
    return counts


def recording_messages(
    scenes: list[SyntheticScene], recording: Recording, T_world_cam: list[np.ndarray] | None = None,
) -> tuple[list[tuple[str, Any, int]], list[int]]:
    """(topic, message, recording time) of every scene as recorded live, and the image stamps: image, camera_info
    and depth at the stamp, the label image `mask_delay_ns` later with the image's stamp; with `T_world_cam` (one per
    scene) /tf world -> camera at each stamp."""
    topics, messages, stamps = recording.topics, [], []
    image_topic = topics["image"] + ("/compressed" if recording.image_transport == "compressed" else "")
    depth_topic = topics["depth"] + ("/compressedDepth" if recording.depth_image_transport == "compressedDepth" else "")
    for k, scene in enumerate(scenes):
        stamp_ns = recording.start_ns + k * recording.period_ns
        stamps.append(stamp_ns)
        _, image, info, depth, masks, _ = rgbd_messages(
            stamp_ns, recording.frame_id, scene.rgb, scene.depth_m, scene.intrinsics, scene.labels, depth_encoding="16UC1",
            image_transport=recording.image_transport, depth_image_transport=recording.depth_image_transport)
        if T_world_cam is not None:
            tf = make_transform_stamped(recording.world_frame, recording.frame_id, T_world_cam[k], stamp_ns)
            messages.append(("/tf", TFMessage(transforms=[tf]), stamp_ns))
        messages += [(topics["camera_info"], info, stamp_ns + 1), (depth_topic, depth, stamp_ns + 2),
                     (image_topic, image, stamp_ns + 3), (topics["masks"], masks, stamp_ns + recording.mask_delay_ns)]
    return messages, stamps


def main(argv: list[str] | None = None) -> int:
    """`python -m sam3d_ros.tools.synthetic_bag OUT`: a rendered recording to try (and time) `sam3d-ros replay` on."""
    import argparse

    from sam3d_ros.tools.node_bench import OBJECT_NAMES
    from sam3d_ros.tools.synthetic import moving_object_sequence

    parser = argparse.ArgumentParser(prog="python -m sam3d_ros.tools.synthetic_bag", description=main.__doc__)
    parser.add_argument("out", type=Path, help="new rosbag2 folder")
    parser.add_argument("--objects", type=int, default=5, help="YCB objects (default 5)")
    parser.add_argument("--frames", type=int, default=60, help="30 Hz frames (default 60)")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    scenes = moving_object_sequence(OBJECT_NAMES[: args.objects], n_frames=args.frames, seed=args.seed,
                                    max_step_m=0.004, max_turn_deg=1.0)
    messages, _ = recording_messages(scenes, Recording(storage=args.storage))
    counts = write_bag(args.out, messages, args.storage)
    print(f"wrote {args.out}: " + ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
