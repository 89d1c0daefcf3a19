"""`sam3d-ros replay IN_BAG --out OUT_BAG`: a recorded rosbag2 through the perception node, offline, into an MCAP bag.

The bag is read with `rosbags` (sqlite3 or MCAP storage; no ROS install needed to read it). The node is the node:
`ros/offline_node.py` builds it in an rclpy context of its own and calls its subscription callbacks with the bag's
messages (rclpy deserialises the CDR), in the order they were recorded, so the frame assembler, the tracker and
the reconstruction run as they run live, with the node's parameters (`--params-file`, validated by the node) and
remappings; only here every completed frame is tracked and every reconstruction waited for. /tf and /tf_static are
delivered TF_LOOKAHEAD_S of recording time ahead of the images, as a live TF listener would have them by the time a
frame is processed. What the node publishes goes into an MCAP rosbag2 (message definitions embedded, from the
installed interface packages) at the recording time of the input that caused it; the messages carry the input
stamps, as live. Mesh files go to OUT_BAG/meshes (all versions kept), referenced by the markers as the node does.
"""
from __future__ import annotations

import heapq
import importlib
import os
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sam3d_ros.geometry.types import InputError

TF_LOOKAHEAD_S = 0.25  # TF is fed this much recording time ahead of the other inputs
TF_TOPICS = ("/tf", "/tf_static")
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
KINDS = ("image", "depth", "camera_info", "masks", "detections")
#: Topic names camera drivers use (raw transport; <name>/compressed and /compressedDepth are tried next), by kind.
USUAL_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "image": (
        ("/camera/camera/color/image_raw", "RealSense"), ("/camera/color/image_raw", "RealSense/Orbbec"),
        ("/zed/zed_node/rgb/image_rect_color", "ZED"), ("/zed2/zed_node/rgb/image_rect_color", "ZED 2"),
        ("/zed2i/zed_node/rgb/image_rect_color", "ZED 2i"), ("/zedx/zed_node/rgb/image_rect_color", "ZED X"),
        ("/camera/rgb/image_raw", "OpenNI"), ("/camera/image_raw", "generic"), ("/image_raw", "generic"),
        ("/image", "sam3d_ros default"),
    ),
    "depth": (
        ("/camera/camera/aligned_depth_to_color/image_raw", "RealSense"),
        ("/camera/aligned_depth_to_color/image_raw", "RealSense"),
        ("/zed/zed_node/depth/depth_registered", "ZED"), ("/zed2/zed_node/depth/depth_registered", "ZED 2"),
        ("/zed2i/zed_node/depth/depth_registered", "ZED 2i"), ("/zedx/zed_node/depth/depth_registered", "ZED X"),
        ("/camera/depth/image_raw", "Orbbec"), ("/camera/depth_registered/image_raw", "OpenNI"),
        ("/depth", "sam3d_ros default"),
    ),
    "masks": (("/masks", "sam3d_ros default"),),
    "detections": (("/detections", "sam3d_ros default"),),
}
_TRANSPORT_SUFFIXES = {"image": ("", "/compressed"), "depth": ("", "/compressedDepth", "/compressed")}
_NAME_HINTS = {  # (words a topic of this kind has, words it must not have), for topics not named as usual
    "image": (("color", "rgb", "image"), ("depth", "mask", "label", "seg", "infra", "ir/", "disparity", "confidence")),
    "depth": (("depth",), ("mask", "label", "confidence", "disparity", "colormap", "points")),
    "masks": (("mask", "label", "seg", "instance"), ("depth",)),
}


class ReplayError(Exception):
    """What stops a replay, in one line (exit status 2)."""


@dataclass
class TopicChoice:
    """The bag topic of one input and why it was taken."""

    kind: str
    topic: str
    msgtype: str
    reason: str


@dataclass
class ReplaySummary:
    """What a replay read, did and wrote."""

    images: int = 0  # colour images read
    frames_tracked: int = 0  # frames the node tracked and published
    frames_invalid: int = 0
    frames_unmatched: int = 0  # images that never got camera_info / depth / segmentation
    frames_dropped_tf: int = 0
    frames_pending: int = 0  # images still waiting for their other inputs when the bag ended
    objects: int = 0  # distinct object ids published
    reconstructions: int = 0
    reconstruction_failures: int = 0
    fused_meshes: int = 0  # multi-view fused meshes installed (fusion on)
    seconds: float = 0.0
    messages_written: Counter = field(default_factory=Counter)  # topic -> count
    undecodable: int = 0  # input messages that could not be deserialised (skipped)
    untrimmed: Counter = field(default_factory=Counter)  # msgtype -> output records rosbags could not measure (written as is)

    @property
    def frames_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------------------------------------------
# Choosing the input topics


def _base(kind: str, topic: str) -> tuple[str, str]:
    """(topic without its image_transport suffix, suffix)."""
    for suffix in _TRANSPORT_SUFFIXES.get(kind, ("",))[1:]:
        if topic.endswith(suffix):
            return topic[: -len(suffix)], suffix
    return topic, ""


def _types_of(kind: str) -> tuple[str, ...]:
    return {"image": (IMAGE, COMPRESSED), "depth": (IMAGE, COMPRESSED), "camera_info": (CAMERA_INFO,),
            "masks": (IMAGE,), "detections": (DETECTIONS,)}[kind]


def _listing(topics: dict[str, str]) -> str:
    return "; ".join(f"{name} ({msgtype})" for name, msgtype in sorted(topics.items())) or "none"


def _check_given(kind: str, topic: str, topics: dict[str, str]) -> TopicChoice:
    if topic not in topics:
        raise ReplayError(f"--{kind.replace('_', '-')} {topic}: no such topic in the bag; its topics: {_listing(topics)}")
    msgtype = topics[topic]
    if msgtype not in _types_of(kind):
        raise ReplayError(f"--{kind.replace('_', '-')} {topic} is {msgtype}; {kind} must be {' or '.join(_types_of(kind))}")
    return TopicChoice(kind, topic, msgtype, "given")


def _find(kind: str, topics: dict[str, str], taken: set[str]) -> TopicChoice | None:
    """The usual name of `kind` (raw transport first), else the only topic of its types whose name fits."""
    types = _types_of(kind)
    for name, who in USUAL_NAMES.get(kind, ()):
        for suffix in _TRANSPORT_SUFFIXES.get(kind, ("",)):
            topic = name + suffix
            if topic in topics and topics[topic] in types and topic not in taken and (suffix == "") == (topics[topic] != COMPRESSED):
                return TopicChoice(kind, topic, topics[topic], f"usual {who} name")
    candidates = [t for t, msgtype in topics.items() if msgtype in types and t not in taken]
    if kind in _NAME_HINTS:
        wanted, unwanted = _NAME_HINTS[kind]
        candidates = [t for t in candidates
                      if any(w in t.lower() for w in wanted) and not any(u in t.lower() for u in unwanted)]
    bases: dict[str, list[str]] = {}
    for topic in sorted(candidates):  # one choice per camera stream: raw before its compressed transports
        bases.setdefault(_base(kind, topic)[0], []).append(topic)
    if not bases:
        return None
    if len(bases) > 1:
        flag = f"--{kind.replace('_', '-')}"
        raise ReplayError(f"several {kind} topics in the bag: {', '.join(sorted(candidates))}; choose one with {flag}")
    topic = min(next(iter(bases.values())), key=lambda t: (topics[t] == COMPRESSED, t))
    return TopicChoice(kind, topic, topics[topic], f"the only {topics[topic].split('/')[-1]} topic named like {kind}")


def _camera_info_for(image_topic: str, topics: dict[str, str], kind: str = "image") -> TopicChoice | None:
    """camera_info beside the image (<namespace>/camera_info), else the only CameraInfo topic."""
    namespace = _base(kind, image_topic)[0].rsplit("/", 1)[0]
    sibling = f"{namespace}/camera_info"
    if topics.get(sibling) == CAMERA_INFO:
        return TopicChoice("camera_info", sibling, CAMERA_INFO, "beside the image")
    infos = sorted(t for t, msgtype in topics.items() if msgtype == CAMERA_INFO)
    if len(infos) == 1:
        return TopicChoice("camera_info", infos[0], CAMERA_INFO, "the only CameraInfo topic")
    if infos:
        raise ReplayError(f"several CameraInfo topics and none beside {image_topic}: {', '.join(infos)}; "
                          "choose one with --camera-info")
    return None


def choose_topics(topics: dict[str, str], given: dict[str, str | None]) -> dict[str, TopicChoice]:
    """The bag topic of each input kind (image, camera_info and masks or detections required; depth optional here):
    the given ones, else found by usual names and types. ReplayError names what is missing, with the bag's topics."""
    chosen: dict[str, TopicChoice] = {}
    for kind in KINDS:
        if given.get(kind):
            chosen[kind] = _check_given(kind, given[kind], topics)
    taken = {c.topic for c in chosen.values()}
    for kind in ("image", "depth", "masks", "detections"):
        if kind not in chosen:
            found = _find(kind, topics, taken)
            if found is not None:
                chosen[kind] = found
                taken.add(found.topic)
    if "image" not in chosen:
        raise ReplayError(f"no colour image topic found (Image or CompressedImage); choose one with --image. "
                          f"The bag's topics: {_listing(topics)}")
    if "camera_info" not in chosen:
        found = _camera_info_for(chosen["image"].topic, topics)
        if found is None:
            raise ReplayError(f"no CameraInfo topic in the bag (the node needs the intrinsics); "
                              f"the bag's topics: {_listing(topics)}")
        chosen["camera_info"] = found
    if "masks" not in chosen and "detections" not in chosen:
        raise ReplayError("no segmentation topic found (masks: Image label image, or detections: Detection2DArray); "
                          f"choose one with --masks or --detections. The bag's topics: {_listing(topics)}")
    return chosen


def transport_of(choice: TopicChoice) -> tuple[str, str]:
    """(remapping base topic, image_transport name) of an image or depth choice."""
    base, suffix = _base(choice.kind, choice.topic)
    if choice.msgtype != COMPRESSED:
        return choice.topic, "raw"
    if not suffix:
        raise ReplayError(f"{choice.kind} topic {choice.topic} is a CompressedImage but does not end with an image_transport "
                          f"suffix ({', '.join(_TRANSPORT_SUFFIXES[choice.kind][1:])}): record it as image_transport publishes it")
    return base, suffix.lstrip("/")


# ----------------------------------------------------------------------------------------------------------------
# Message types and definitions


def message_class(msgtype: str) -> type:
    """The rclpy message class of 'pkg/msg/Name'."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def msgtype_of(msg_class: type) -> str:
    """'pkg/msg/Name' of an rclpy message class."""
    return f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"


def _msg_file(msgtype: str) -> Path:
    """share/<pkg>/msg/<Name>.msg of the installed interface package (the ament index, else beside its Python)."""
    package, _, name = msgtype.split("/")
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    except (ImportError, LookupError, OSError, ValueError):
        pass
    module_dir = Path(importlib.import_module(package).__file__).resolve().parent
    for ancestor in module_dir.parents:
        path = ancestor / "share" / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    raise ReplayError(f"no message definition of {msgtype} found (share/{package}/msg/{name}.msg)")


def _referenced(desc: Any) -> Iterator[str]:
    """The message type names inside one rosbags field description."""
    from rosbags.interfaces import Nodetype

    kind, detail = desc
    if kind == Nodetype.NAME:
        yield detail
    elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        yield from _referenced(detail[0])


def register_types(typestore: Any, msgtypes: Iterable[str]) -> None:
    """Add `msgtypes` and every type they use to a rosbags typestore, from the installed .msg files."""
    from rosbags.typesys import get_types_from_msg

    todo = [t for t in msgtypes if t not in typestore.fielddefs]
    while todo:
        msgtype = todo.pop()
        if msgtype in typestore.fielddefs:
            continue
        types = get_types_from_msg(_msg_file(msgtype).read_text(), msgtype)
        typestore.register(types)
        for _, fields in types.values():
            todo += [t for _, desc in fields for t in _referenced(desc) if t not in typestore.fielddefs]


# ----------------------------------------------------------------------------------------------------------------
# Output bag


class OutputBag:
    """The node's outputs into an MCAP rosbag2: a connection per topic on its first message, message definitions
    from the installed interfaces, each output's QoS offered (latched markers stay latched in `ros2 bag play`)."""

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = path
        self.writer = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.typestore = get_typestore(Stores.EMPTY)
        self._connections: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # the node publishes from its reconstruction thread too
        self.counts: Counter = Counter()
        self.object_ids: set[str] = set()
        self.untrimmed: Counter = Counter()  # msgtype -> records written as rclpy serialised them (see _exact)

    def __call__(self, output: Any) -> None:
        """Write one RecordedOutput (the node's sink)."""
        from rclpy.serialization import serialize_message

        msgtype = msgtype_of(output.msg_type)
        key = (output.topic, msgtype)
        with self._lock:
            connection = self._connections.get(key)
            if connection is None:
                register_types(self.typestore, [msgtype])
                connection = self._connections[key] = self.writer.add_connection(
                    output.topic, msgtype, typestore=self.typestore, offered_qos_profiles=[_bag_qos(output.qos)])
            self.writer.write(connection, output.time_ns, self._exact(serialize_message(output.msg), msgtype))
            self.counts[output.topic] += 1
            if msgtype == "vision_msgs/msg/Detection3DArray":
                self.object_ids.update(str(d.id) for d in output.msg.detections)

    def _exact(self, raw: bytes, msgtype: str) -> bytes:
        """`raw` cut to the message's own CDR length (padded to 4 bytes). rclpy's serializer on these wheels can
        return a buffer longer than the message (16 bytes of stale memory per trajectory_msgs/JointTrajectoryPoint,
        e.g. in moveit_msgs/Grasp): DDS readers ignore the tail, but rosbags refuses such a record and the tail would
        leak process memory into the file."""
        msgdef = self.typestore.get_msgdef(msgtype)
        parse = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
        try:
            _, pos = parse(memoryview(raw)[4:], 0, msgdef.cls, self.typestore)
        except Exception:  # rosbags cannot measure it: the record is kept as it is (counted, reported at the end)
            self.untrimmed[msgtype] += 1
            return raw
        end = 4 + pos
        if len(raw) <= end + 3:
            return raw
        return bytes(raw[:end]) + bytes(-end % 4)

    def close(self) -> None:
        self.writer.close()


def _bag_qos(qos: Any) -> Any:
    """rosbags' Qos of an rclpy QoSProfile (same enum names; deadline etc. left at their defaults)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    unset = QosTime(0, 0)
    return Qos(QosHistory[qos.history.name], int(qos.depth), QosReliability[qos.reliability.name],
               QosDurability[qos.durability.name], unset, unset, QosLiveliness.SYSTEM_DEFAULT, unset, False)


# ----------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class ReplayOptions:
    """What `sam3d-ros replay` was asked."""

    in_bag: Path
    out_bag: Path
    topics: dict[str, str | None] = field(default_factory=dict)  # kind -> given topic
    params_file: Path | None = None
    target_frame: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # NAME -> VALUE (-p), after the params file


def _open_bag(path: Path) -> Any:
    from rosbags.rosbag2 import Reader, ReaderError

    if not path.exists():
        raise ReplayError(f"{path}: no such bag (a rosbag2 folder, or its .db3 / .mcap file)")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        text = str(exc)
        if "not supported" in text or "Unrecognized storage" in text:
            raise ReplayError(f"{path}: unknown storage: {text} (sam3d-ros replay reads rosbag2 sqlite3 and mcap)") from None
        raise ReplayError(f"{path}: cannot read the bag (corrupt or not a rosbag2?): {text}") from None
    except Exception as exc:  # the storage libraries' own errors on damaged files (sqlite, struct, zstd ...)
        raise ReplayError(f"{path}: cannot read the bag (corrupt?): {type(exc).__name__}: {exc}") from None
    return reader


def _ros_arguments(options: ReplayOptions, chosen: dict[str, TopicChoice]) -> list[str]:
    """--ros-args of the offline node: the params file, then the replay's own settings, then remappings."""
    args = ["--ros-args"]
    if options.params_file is not None:
        args += ["--params-file", str(options.params_file)]
    settings = {
        "mesh_cache_dir": str(options.out_bag.resolve() / "meshes"),
        # TF arrives TF_LOOKAHEAD_S ahead and nothing else comes while the node waits: a wait is wasted time.
        "target_frame_timeout_s": "0.0",
        **options.params,
    }
    if options.target_frame is not None:
        settings["target_frame"] = options.target_frame
    for kind in ("image", "depth"):
        if kind in chosen:
            settings["image_transport" if kind == "image" else "depth_image_transport"] = transport_of(chosen[kind])[1]
    for name, value in settings.items():
        args += ["-p", f"{name}:={value}"]
    for kind in KINDS:
        topic = transport_of(chosen[kind])[0] if kind in ("image", "depth") and kind in chosen else (
            chosen[kind].topic if kind in chosen else f"/sam3d_replay_unused/{kind}")
        args += ["-r", f"{kind}:={topic}"]
    return args


def _merged(reader: Any, main: list, tf: list) -> Iterator[tuple[int, int, Any, bytes]]:
    """(feed time, recording time, connection, raw) in recording order, TF TF_LOOKAHEAD_S early (read in full first:
    it is small, and one read of the images is enough)."""
    lookahead_ns = int(TF_LOOKAHEAD_S * 1e9)
    tf_items = [(t - lookahead_ns, 0, t, c, raw) for c, t, raw in reader.messages(connections=tf)] if tf else []
    main_items = ((t, 1, t, c, raw) for c, t, raw in reader.messages(connections=main))
    for feed_ns, _, t, connection, raw in heapq.merge(tf_items, main_items, key=lambda item: (item[0], item[1])):
        yield feed_ns, t, connection, raw


class _Progress:
    """tqdm bar (frames/s, ETA) on a terminal; else a plain line every 10 %."""

    def __init__(self, total: int, stream: Any) -> None:
        self.total, self.stream, self.done = total, stream, 0
        self.started_s = time.monotonic()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", file=stream, desc="replay")
        self._next_line = max(1, total // 10)

    def step(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.done >= self._next_line or self.done == self.total:
            rate = self.done / max(time.monotonic() - self.started_s, 1e-9)
            eta_s = (self.total - self.done) / rate if rate > 0 else 0.0
            print(f"replay: {self.done}/{self.total} frames, {rate:.1f} frames/s, ETA {eta_s:.0f} s", file=self.stream, flush=True)
            self._next_line += max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_replay(options: ReplayOptions, say: Callable[[str], None] = print, progress_stream: Any = sys.stderr) -> ReplaySummary:
    """Replay `options.in_bag` through the node into `options.out_bag`; ReplayError for what stops it."""
    import rclpy
    from rclpy.context import Context
    from rclpy.serialization import deserialize_message
    from rclpy.signals import SignalHandlerOptions

    from sam3d_ros.ros.offline_node import OfflinePerceptionNode

    if options.out_bag.exists():
        raise ReplayError(f"--out {options.out_bag} exists already: choose a new folder (a bag is never overwritten)")
    if options.params_file is not None and not options.params_file.is_file():
        raise ReplayError(f"--params-file {options.params_file}: no such file")
    reader = _open_bag(options.in_bag)
    try:
        topics = {name: info.msgtype or "?" for name, info in reader.topics.items()}
        chosen = choose_topics(topics, options.topics)
        for kind in KINDS:
            if kind in chosen:
                c = chosen[kind]
                say(f"{kind:>11}: {c.topic} ({c.msgtype.split('/')[-1]}, {c.reason})")
        tf_topics = [t for t in TF_TOPICS if topics.get(t) == TF_MESSAGE]
        try:
            output = OutputBag(options.out_bag)
        except Exception as exc:
            raise ReplayError(f"cannot write --out {options.out_bag}: {exc}") from None
        context = Context()
        node = None
        replayed = False  # once messages went in, the output bag is kept whatever happens
        summary = ReplaySummary()
        try:
            try:
                rclpy.init(args=["sam3d-ros-replay", *_ros_arguments(options, chosen)], context=context,
                           signal_handler_options=SignalHandlerOptions.NO)
                node = OfflinePerceptionNode(output, context=context)
            except (ValueError, InputError, OSError) as exc:  # the node's one-line parameter problems
                raise ReplayError(f"node parameters: {exc}") from None
            except Exception as exc:  # rcl: an unreadable params file, a value of the wrong type
                detail = " ".join(str(exc).split())
                raise ReplayError(f"node parameters: {type(exc).__name__}: {detail}") from None
            if "depth" not in chosen and node.pipeline.backend.needs_depth:
                raise ReplayError(f"no depth topic found, and the '{node.pipeline.backend.name}' backend needs registered "
                                  f"depth; choose one with --depth. The bag's topics: {_listing(topics)}")
            if options.target_frame is not None or node.params["target_frame"]:
                say(f"{'TF':>11}: {', '.join(tf_topics) or 'none in the bag'} -> target_frame "
                    f"{node.params['target_frame'] or '(camera frame)'}")
            subscribed = node.topics()
            fed = {c.topic for c in chosen.values()} | {t for t in tf_topics if t in subscribed}
            missing = sorted(t for t in fed if t not in subscribed)
            if missing:
                raise ReplayError(f"the node does not subscribe to {', '.join(missing)} (internal error)")
            connections = [c for c in reader.connections if c.topic in fed]
            main = [c for c in connections if c.topic not in TF_TOPICS]
            tf = [c for c in connections if c.topic in TF_TOPICS]
            classes = {topic: subscribed[topic] for topic in fed}
            image_topic = chosen["image"].topic
            total = sum(c.msgcount for c in connections if c.topic == image_topic)
            progress = _Progress(total, progress_stream)
            started_s = time.monotonic()
            replayed = True
            try:
                for feed_ns, _, connection, raw in _merged(reader, main, tf):
                    try:
                        msg = deserialize_message(bytes(raw), classes[connection.topic])
                    except Exception as exc:  # one damaged message costs itself
                        summary.undecodable += 1
                        if summary.undecodable <= 3:
                            say(f"warning: skipped a message on {connection.topic} that does not deserialise: {exc}")
                        continue
                    node.feed(connection.topic, msg, feed_ns)
                    if connection.topic == image_topic:
                        summary.images += 1
                        progress.step()
                node.finish()
            except ReplayError:
                raise
            except Exception as exc:
                if type(exc).__module__.startswith(("rosbags", "sqlite3", "apsw")) or isinstance(exc, (OSError, EOFError)):
                    raise ReplayError(f"{options.in_bag}: cannot read the bag past message "
                                      f"{summary.images} images in (corrupt?): {type(exc).__name__}: {exc}") from None
                raise
            finally:
                progress.close()
            summary.seconds = time.monotonic() - started_s
            stats = node.stats
            summary.frames_tracked = stats.frames_out
            summary.frames_invalid = stats.frames_invalid
            summary.frames_unmatched = stats.unmatched_images
            summary.frames_dropped_tf = stats.frames_dropped_tf
            summary.frames_pending = node.assembler.pending_images()
            summary.reconstructions = stats.reconstructions
            summary.reconstruction_failures = stats.reconstruction_failures
            summary.fused_meshes = stats.fused_meshes
        finally:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown(context=context)
            output.close()
            summary.messages_written = output.counts
            summary.objects = len(output.object_ids)
            summary.untrimmed = output.untrimmed
            if not replayed:  # nothing was replayed: leave no half-made bag behind
                shutil.rmtree(options.out_bag, ignore_errors=True)
    finally:
        reader.close()
    return summary


def format_summary(summary: ReplaySummary, out_bag: Path) -> str:
    """The lines printed at the end of a replay."""
    lines = [
        f"replayed {summary.images} images in {summary.seconds:.1f} s ({summary.frames_per_s:.2f} frames/s): "
        f"{summary.frames_tracked} frames tracked, {summary.frames_invalid} invalid, {summary.frames_unmatched} "
        f"without their other inputs, {summary.frames_dropped_tf} without target_frame transform"
        + (f", {summary.frames_pending} still waiting for their other inputs at the end" if summary.frames_pending else ""),
        f"{summary.objects} objects, {summary.reconstructions} reconstructions ({summary.reconstruction_failures} failed), "
        f"{summary.fused_meshes} fused meshes",
        f"wrote {out_bag} (MCAP): " + (", ".join(f"{topic} {n}" for topic, n in sorted(summary.messages_written.items()))
                                      or "no messages") + f"; meshes in {out_bag / 'meshes'}",
    ]
    if summary.undecodable:
        lines.append(f"{summary.undecodable} input messages did not deserialise and were skipped")
    if summary.untrimmed:
        lines.append("written as serialised, not checked by rosbags (readers may refuse them): "
                     + ", ".join(f"{msgtype} {n}" for msgtype, n in sorted(summary.untrimmed.items())))
    return "\n".join(lines)


def replay_command(args: Any) -> int:
    """`sam3d-ros replay`: exit 0, or 2 with one line for what stops it."""
    # Nothing here talks to other processes: no DDS discovery at all (the offline node makes participants anyway).
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"sam3d-ros: error: --param {item}: expected NAME=VALUE", file=sys.stderr)
            return 2
        params[name] = value
    options = ReplayOptions(
        args.in_bag, args.out, {kind: getattr(args, kind) for kind in KINDS}, args.params_file, args.target_frame, params)
    try:
        summary = run_replay(options)
    except ReplayError as exc:
        print(f"sam3d-ros: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sam3d-ros: interrupted; {options.out_bag} holds the outputs so far", file=sys.stderr)
        return 130
    print(format_summary(summary, options.out_bag))
    return 0
