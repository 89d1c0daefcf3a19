"""Matching the node's input streams by header stamp (approximate time, with optional inputs)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

SEGMENTATION_MODES = ("auto", "masks", "detections")


@dataclass
class FrameSet:
    """Messages that belong to one colour image."""

    stamp_ns: int
    image: Any
    camera_info: Any
    depth: Any | None
    masks: Any | None
    detections: Any | None


class FrameAssembler:
    """Groups an image with the camera_info and depth nearest in stamp (within `slop_s`) and with the masks or
    detections of the same stamp (within `segmentation_slop_s`, default exact: segmenters copy the image header).

    message_filters' ApproximateTimeSynchronizer needs every input for every frame; here segmentation may come as
    masks or as detections (whichever arrives for a frame), camera_info falls back to the latest one, and depth is
    optional: a frame goes without depth only when no depth message arrived for `depth_timeout_s`.
    A match is taken once it cannot improve: its stamp is exact, or a later message of that input has arrived
    (inputs arrive in stamp order per topic), so a late mask is never swapped for the previous frame's.
    """

    KINDS = ("image", "camera_info", "depth", "masks", "detections")

    def __init__(
        self, slop_s: float = 0.05, queue_size: int = 10, depth_timeout_s: float = 1.0, segmentation: str = "auto",
        segmentation_slop_s: float = 0.0,
    ) -> None:
        self.configure(slop_s, depth_timeout_s, segmentation, segmentation_slop_s)
        self.buffers: dict[str, deque[tuple[int, Any]]] = {k: deque(maxlen=max(1, queue_size)) for k in self.KINDS}
        self.last_arrival_s: dict[str, float | None] = {k: None for k in self.KINDS}
        self.dropped_images = 0

    def configure(self, slop_s: float, depth_timeout_s: float, segmentation: str, segmentation_slop_s: float) -> None:
        """Set the matching tolerances (also while running: the node's runtime parameters)."""
        if segmentation not in SEGMENTATION_MODES:
            raise ValueError(f"segmentation must be one of {SEGMENTATION_MODES}, got '{segmentation}'")
        self.slop_ns = int(slop_s * 1e9)
        self.segmentation_slop_ns = int(segmentation_slop_s * 1e9)
        self.depth_timeout_s = depth_timeout_s
        self.segmentation = segmentation

    def add(self, kind: str, stamp_ns: int, msg: Any, now_s: float) -> list[FrameSet]:
        """Buffer one message; return the frames it completes, oldest first."""
        buffer = self.buffers[kind]
        if kind == "image" and len(buffer) == buffer.maxlen:
            self.dropped_images += 1
        buffer.append((stamp_ns, msg))
        self.last_arrival_s[kind] = now_s
        return self._complete_frames(now_s)

    def _nearest(self, kind: str, stamp_ns: int, slop_ns: int) -> Any | None:
        """Closest message within `slop_ns`, once no later arrival can be closer; else None."""
        best, best_dt, later_seen = None, None, False
        for other_stamp, msg in self.buffers[kind]:
            later_seen |= other_stamp >= stamp_ns
            dt = abs(other_stamp - stamp_ns)
            if dt <= slop_ns and (best_dt is None or dt < best_dt):
                best, best_dt = msg, dt
        return best if best_dt == 0 or later_seen else None

    def _depth_stale(self, now_s: float) -> bool:
        last = self.last_arrival_s["depth"]
        return last is None or now_s - last > self.depth_timeout_s

    def _complete_frames(self, now_s: float) -> list[FrameSet]:
        completed: list[FrameSet] = []
        for stamp_ns, image in list(self.buffers["image"]):
            info = self._nearest("camera_info", stamp_ns, self.slop_ns)
            if info is None and self.buffers["camera_info"]:
                info = self.buffers["camera_info"][-1][1]
            seg_slop = self.segmentation_slop_ns
            masks = self._nearest("masks", stamp_ns, seg_slop) if self.segmentation in ("auto", "masks") else None
            detections = None
            if masks is None and self.segmentation in ("auto", "detections"):
                detections = self._nearest("detections", stamp_ns, seg_slop)
            depth = self._nearest("depth", stamp_ns, self.slop_ns)
            if info is None or (masks is None and detections is None):
                continue
            if depth is None and not self._depth_stale(now_s):
                continue
            completed.append(FrameSet(stamp_ns, image, info, depth, masks, detections))
        if completed:
            newest = completed[-1].stamp_ns
            kept = [(s, m) for s, m in self.buffers["image"] if s > newest]
            self.dropped_images += len(self.buffers["image"]) - len(kept) - len(completed)  # older, never completed
            self.buffers["image"].clear()
            self.buffers["image"].extend(kept)
        return completed

    def pending_images(self) -> int:
        """Images waiting for their other inputs."""
        return len(self.buffers["image"])
