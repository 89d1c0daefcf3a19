"""Counters and latency windows of the perception node, summarised for /diagnostics (ROS-free)."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam3d_ros.ros.sequence_gaps import SequenceGapCounter

STAGES = ("convert", "track", "publish", "total", "reconstruction")


@dataclass
class NodeStatistics:
    """What happened to every frame: in, out, and each reason a frame was not tracked."""

    frames_in: int = 0  # colour images received
    frames_out: int = 0  # frames tracked and published
    frames_dropped_busy: int = 0  # replaced by a newer frame while the tracking thread was busy
    frames_dropped_sync: int = 0  # complete frames skipped because a newer one completed at the same time
    unmatched_images: int = 0  # images that never got their camera_info / depth / segmentation
    frames_invalid: int = 0  # frames rejected with a warning (bad encoding, size mismatch, no depth, ...)
    tf_failures: int = 0  # target_frame lookups that failed (a held transform stood in, or the frame was dropped)
    frames_dropped_tf: int = 0  # frames not published: no target_frame transform (none held recently enough)
    reconstructions: int = 0
    reconstruction_failures: int = 0
    meshes_not_from_model: int = 0  # reconstructions whose mesh the model did not give (a stand-in, with a reason)
    last_no_mesh_reason: str = ""
    objects_removed: int = 0
    fused_meshes: int = 0  # fused multi-view meshes installed
    marker_arrays_partial: int = 0  # ~/markers arrays with only the changed objects' markers (or DELETEs)
    marker_arrays_whole: int = 0  # ~/markers arrays with every object's markers
    marker_send_s: float = 0.0  # time spent building and publishing (serialising) ~/markers arrays
    # Per input topic: messages lost before the node's callbacks (publisher sequence gaps); None where the ROS
    # distribution gives callbacks no message info (Humble), so such losses cannot be seen. Where the message info
    # does not name the publisher (Jazzy), messages that came while the topic had several publishers are not checked
    # (reported as such).
    input_gaps: dict[str, SequenceGapCounter | None] = field(
        default_factory=lambda: {kind: SequenceGapCounter() for kind in ("image", "camera_info", "depth", "masks", "detections")}
    )
    window: int = 300
    _latency_s: dict[str, deque] = field(default_factory=dict)
    _max_latency_s: dict[str, float] = field(default_factory=dict)  # since start, not only the window
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_dropped: int = 0

    def record(self, stage: str, seconds: float) -> None:
        """Add one latency sample (seconds) of `stage`."""
        with self._lock:
            self._latency_s.setdefault(stage, deque(maxlen=self.window)).append(float(seconds))
            self._max_latency_s[stage] = max(self._max_latency_s.get(stage, 0.0), float(seconds))

    def count_reconstructed(self, objects: list[Any]) -> None:
        """Count reconstructed objects, and those whose mesh did not come from the model (`info["no_mesh_reason"]`)."""
        self.reconstructions += len(objects)
        for obj in objects:
            reason = (getattr(obj, "info", None) or {}).get("no_mesh_reason")
            if reason:
                self.meshes_not_from_model += 1
                self.last_no_mesh_reason = str(reason)

    def latency_ms(self, stage: str) -> tuple[float, float] | None:
        """(median, 95th percentile) in ms of the last `window` samples of `stage`, None without samples."""
        with self._lock:
            samples = list(self._latency_s.get(stage, ()))
        if not samples:
            return None
        return float(np.median(samples) * 1000.0), float(np.percentile(samples, 95) * 1000.0)

    @property
    def images_lost_before_node(self) -> int:
        """Colour images that a publisher sent but the node's callback never got (0 where this cannot be seen)."""
        gaps = self.input_gaps.get("image")
        return gaps.lost if gaps is not None else 0

    @property
    def frames_dropped(self) -> int:
        """Every frame not tracked, whatever the reason: received and dropped, or lost before the node."""
        return (self.frames_dropped_busy + self.frames_dropped_sync + self.unmatched_images + self.frames_invalid
                + self.frames_dropped_tf + self.images_lost_before_node)

    def statuses(self, node_name: str, backend: str, scheduler: Any, tracks: list[Any],
                 fusion: dict[str, Any] | None = None) -> list[tuple[str, str, str, str, dict]]:
        """(name, hardware_id, level, message, values) of the pipeline, of the reconstruction worker and, with
        `fusion` ({"bytes": {object id: bytes}, "views integrated", "views skipped", "last skip"}), of fusion."""
        dropped = self.frames_dropped
        new_drops = dropped - self._last_dropped
        self._last_dropped = dropped
        values: dict[str, Any] = {
            "frames in": self.frames_in, "frames out": self.frames_out, "frames dropped": dropped,
            "dropped (tracking busy)": self.frames_dropped_busy, "dropped (newer frame complete)": self.frames_dropped_sync,
            "dropped (inputs never matched)": self.unmatched_images, "dropped (invalid input)": self.frames_invalid,
            "dropped (no target_frame transform)": self.frames_dropped_tf,
            "dropped (lost before the node)": self.images_lost_before_node,
            "target_frame lookup failures": self.tf_failures,
            "objects tracked": sum(1 for t in tracks if t.reconstruction is not None and t.seen_in_last_frame),
            "objects lost (kept)": sum(1 for t in tracks if t.reconstruction is not None and not t.seen_in_last_frame),
            "objects waiting for a mesh": sum(1 for t in tracks if t.reconstruction is None),
            "objects removed": self.objects_removed,
            "marker arrays sent (changed objects only)": self.marker_arrays_partial,
            "marker arrays sent (every object)": self.marker_arrays_whole,
            "marker arrays build + send s (since start)": round(self.marker_send_s, 3),
        }
        for kind, gaps in self.input_gaps.items():
            values[f"{kind} messages lost before the node"] = gaps.lost if gaps is not None else "not counted (no message info)"
            if gaps is not None and gaps.unattributed:
                values[f"{kind} messages not checked for losses (several publishers, none named)"] = gaps.unattributed
        for stage in STAGES[:4]:
            latency = self.latency_ms(stage)
            if latency is not None:
                values[f"{stage} latency median ms"], values[f"{stage} latency p95 ms"] = latency
                values[f"{stage} latency max ms (since start)"] = self._max_latency_s[stage] * 1000.0
        level = "warn" if new_drops > 0 else "ok"
        sent = self.frames_in + self.images_lost_before_node
        message = f"{dropped} of {sent} frames dropped" if dropped else "tracking every frame"
        pipeline = (f"{node_name}: pipeline", node_name, level, message, values)
        busy = scheduler.running > 0
        worker_values: dict[str, Any] = {
            "backend": backend, "state": "busy" if busy else "idle", "waiting": scheduler.waiting,
            "requests submitted": scheduler.submitted, "requests replaced": scheduler.replaced,
            "objects reconstructed": self.reconstructions, "objects failed": self.reconstruction_failures,
        }
        if self.meshes_not_from_model:
            worker_values["meshes not from the model"] = self.meshes_not_from_model
            worker_values["why no model mesh (last)"] = self.last_no_mesh_reason
        latency = self.latency_ms("reconstruction")
        if latency is not None:
            worker_values["request latency median ms"], worker_values["request latency p95 ms"] = latency
        ages = [t.pose_ns - t.reconstructed_ns for t in tracks if t.reconstruction is not None]
        if ages:
            worker_values["oldest mesh age s"] = max(ages) / 1e9
        worker_level = "warn" if self.reconstruction_failures or self.meshes_not_from_model else "ok"
        worker_message = f"{backend} backend {'busy' if busy else 'idle'}"
        if self.meshes_not_from_model:
            worker_message += f"; {self.meshes_not_from_model} mesh(es) not from the model: {self.last_no_mesh_reason}"
        worker = (f"{node_name}: reconstruction", backend, worker_level, worker_message, worker_values)
        if fusion is None:
            return [pipeline, worker]
        by_object = fusion.get("bytes", {})
        total_mb = sum(by_object.values()) / 1e6
        fusion_values: dict[str, Any] = {
            "objects fused": len(by_object), "memory MB (all objects)": total_mb,
            "views integrated": fusion.get("views integrated", 0), "views skipped": fusion.get("views skipped", 0),
            "fused meshes installed": self.fused_meshes,
        }
        if fusion.get("last skip"):
            fusion_values["last view skipped"] = fusion["last skip"]
        for object_id, nbytes in sorted(by_object.items()):
            fusion_values[f"memory MB {object_id}"] = nbytes / 1e6
        fusion_status = (f"{node_name}: fusion", "fusion", "ok", f"{len(by_object)} object model(s), {total_mb:.1f} MB",
                         fusion_values)
        return [pipeline, worker, fusion_status]
