"""Matching the node's input streams by header stamp (approximate time, with optional inputs)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

SEGMENTATION_MODES = ("auto", "masks", "detections")
TIME_JUMP_S = 1.0  # a stamp this far before the newest one of its input means time jumped back (tf2_ros' threshold)
MISMATCH_MESSAGES = 3  # segmentation messages in a row that match no image before their stamps are reported


@dataclass
class FrameSet:
    """Messages that belong to one colour image."""

    stamp_ns: int
    image: Any
    camera_info: Any
    depth: Any | None
    masks: Any | None
    detections: Any | None


@dataclass
class SegmentationMismatch:
    """Segmentation messages that matched no image lately: the input, and its stamp minus the nearest image stamp."""

    kind: str  # "masks" or "detections"
    offset_ns: int


@dataclass
class _Image:
    stamp_ns: int
    msg: Any
    arrival_s: float
    previous_arrival_s: float | None  # when the image before it arrived (None: the first image)


class FrameAssembler:
    """Groups an image with the camera_info and depth nearest in stamp (within `slop_s`) and with the masks or
    detections of the same stamp (within `segmentation_slop_s`, default exact: segmenters copy the image header).

    message_filters' ApproximateTimeSynchronizer needs every input for every frame; here segmentation may come as
    masks or as detections (whichever arrives for a frame), camera_info falls back to the latest one (at once when
    it is latched or rare; after up to depth_timeout_s when the frames before had their own), and depth is optional.
    A match is taken once it cannot improve: its stamp is exact, or a later message of that input has arrived
    (inputs arrive in stamp order per topic), so a late mask is never swapped for the previous frame's.

    Depth may arrive after the image and its masks (slow or triggered cameras, replay, start-up): a frame waits for
    the depth of its stamp. It goes without depth only when depth is not being published: none has arrived for
    `depth_timeout_s` and none since the image before it (or, at start-up, none in the `depth_timeout_s` since the
    first image). Times of arrival (`now_s`) are monotonic seconds; `poll` completes frames whose wait ran out.

    Time that jumps back (a looping bag, a driver restart, a simulator reset: a stamp more than `time_jump_s`
    before the newest of its input, the threshold tf2_ros uses) empties that input's buffer (everything in it came
    earlier in the same topic, from the old timeline) and those of the inputs still on the old timeline, so no
    message from before the jump is paired with one from after. `take_time_jump` says how far the images jumped.

    Segmentation whose stamps match no image (a segmenter that re-stamps its output) gives no frame;
    `segmentation_mismatch` names it, with the stamp difference, once MISMATCH_MESSAGES in a row matched nothing.
    """

    KINDS = ("image", "camera_info", "depth", "masks", "detections")

    def __init__(
        self, slop_s: float = 0.05, queue_size: int = 10, depth_timeout_s: float = 1.0, segmentation: str = "auto",
        segmentation_slop_s: float = 0.0, time_jump_s: float = TIME_JUMP_S,
    ) -> None:
        self.time_jump_ns = int(time_jump_s * 1e9)
        self.configure(slop_s, depth_timeout_s, segmentation, segmentation_slop_s)
        size = max(1, queue_size)
        self.images: deque[_Image] = deque(maxlen=size)
        self.buffers: dict[str, deque[tuple[int, Any]]] = {k: deque(maxlen=size) for k in self.KINDS if k != "image"}
        self.last_arrival_s: dict[str, float | None] = {k: None for k in self.KINDS}
        self.dropped_images = 0
        self.segmentation_mismatch: SegmentationMismatch | None = None
        self._first_image_arrival_s: float | None = None
        self._newest_ns: dict[str, int | None] = {k: None for k in self.KINDS}
        self._time_jump_ns: int | None = None
        self._recent_image_stamps: deque[int] = deque(maxlen=max(30, 3 * size))  # images seen, completed or not
        self._unmatched_segmentation = 0
        # The last frame found a camera_info of its own stamp: the next one waits for its own too (up to
        # depth_timeout_s) rather than take the previous camera's, which may be another camera model.
        self._info_per_image = False

    def configure(self, slop_s: float, depth_timeout_s: float, segmentation: str, segmentation_slop_s: float) -> None:
        """Set the matching tolerances (also while running: the node's runtime parameters)."""
        if segmentation not in SEGMENTATION_MODES:
            raise ValueError(f"segmentation must be one of {SEGMENTATION_MODES}, got '{segmentation}'")
        self.slop_ns = int(slop_s * 1e9)
        self.segmentation_slop_ns = int(segmentation_slop_s * 1e9)
        self.depth_timeout_s = depth_timeout_s
        self.segmentation = segmentation
        self.segmentation_kinds = tuple(
            kind for kind, modes in (("masks", ("auto", "masks")), ("detections", ("auto", "detections")))
            if segmentation in modes
        )

    def add(self, kind: str, stamp_ns: int, msg: Any, now_s: float) -> list[FrameSet]:
        """Buffer one message; return the frames it completes, oldest first."""
        self._check_time_jump(kind, stamp_ns)
        if kind == "image":
            if len(self.images) == self.images.maxlen:
                self.dropped_images += 1
            self.images.append(_Image(stamp_ns, msg, now_s, self.last_arrival_s["image"]))
            if self._first_image_arrival_s is None:
                self._first_image_arrival_s = now_s
            self._recent_image_stamps.append(stamp_ns)
            if any(self._within(self.buffers[k], stamp_ns, self.segmentation_slop_ns) for k in self.segmentation_kinds):
                self._segmentation_matched()  # its segmentation came first
        else:
            self.buffers[kind].append((stamp_ns, msg))
            if kind in self.segmentation_kinds:
                self._check_segmentation_stamp(kind, stamp_ns)
        self.last_arrival_s[kind] = now_s
        return self._complete_frames(now_s)

    def poll(self, now_s: float) -> list[FrameSet]:
        """Frames completed by the passing of time alone (their depth is now known to be missing); call it
        periodically so that a frame does not wait for the next message."""
        return self._complete_frames(now_s) if self.images else []

    def take_time_jump(self) -> int | None:
        """How far (ns) the image stamps jumped back since the last call; None when they did not."""
        jump, self._time_jump_ns = self._time_jump_ns, None
        return jump

    def _check_time_jump(self, kind: str, stamp_ns: int) -> None:
        """A stamp more than time_jump_s before the newest of its input: that input's buffer, and those of the inputs
        still on the old timeline (newest stamp more than time_jump_s after this one), are emptied. camera_info is
        emptied only by its own jump: some drivers send it once (latched), and any of it describes the camera."""
        newest = self._newest_ns[kind]
        if newest is None or stamp_ns >= newest - self.time_jump_ns:
            self._newest_ns[kind] = stamp_ns if newest is None else max(newest, stamp_ns)
            return
        self._newest_ns[kind] = stamp_ns
        for other, other_newest in self._newest_ns.items():
            if other == kind or (
                other != "camera_info" and other_newest is not None and other_newest > stamp_ns + self.time_jump_ns
            ):
                self._clear(other)
        if kind == "image":
            self._time_jump_ns = newest - stamp_ns

    def _clear(self, kind: str) -> None:
        if kind != "image":
            self.buffers[kind].clear()
            return
        self.dropped_images += len(self.images)
        self.images.clear()
        self._recent_image_stamps.clear()
        self._segmentation_matched()

    @staticmethod
    def _within(buffer: deque[tuple[int, Any]], stamp_ns: int, slop_ns: int) -> bool:
        return any(abs(other - stamp_ns) <= slop_ns for other, _ in buffer)

    def _check_segmentation_stamp(self, kind: str, stamp_ns: int) -> None:
        if not self._recent_image_stamps:
            return  # nothing to compare with yet
        nearest = min(self._recent_image_stamps, key=lambda image_ns: abs(image_ns - stamp_ns))
        if abs(nearest - stamp_ns) <= self.segmentation_slop_ns:
            self._segmentation_matched()
            return
        self._unmatched_segmentation += 1
        if self._unmatched_segmentation >= MISMATCH_MESSAGES:
            self.segmentation_mismatch = SegmentationMismatch(kind, stamp_ns - nearest)

    def _segmentation_matched(self) -> None:
        self._unmatched_segmentation = 0
        self.segmentation_mismatch = None

    def _nearest(self, kind: str, stamp_ns: int, slop_ns: int) -> Any | None:
        """Closest message within `slop_ns`, once no later arrival can be closer; else None."""
        best, best_dt, later_seen = None, None, False
        for other_stamp, msg in self.buffers[kind]:
            later_seen |= other_stamp >= stamp_ns
            dt = abs(other_stamp - stamp_ns)
            if dt <= slop_ns and (best_dt is None or dt < best_dt):
                best, best_dt = msg, dt
        return best if best_dt == 0 or later_seen else None

    def _depth_missing(self, image: _Image, now_s: float) -> bool:
        """Whether depth is not being published, so that `image` goes without it (see the class docstring)."""
        last = self.last_arrival_s["depth"]
        if last is None:  # none yet: start-up, or no depth at all
            return now_s - self._first_image_arrival_s >= self.depth_timeout_s
        if now_s - last < self.depth_timeout_s:
            return False
        if image.previous_arrival_s is None:
            return now_s - image.arrival_s >= self.depth_timeout_s
        return last <= image.previous_arrival_s  # depth came for the image before: this one's is late or lost

    def _complete_frames(self, now_s: float) -> list[FrameSet]:
        completed: list[FrameSet] = []
        for image in list(self.images):
            stamp_ns = image.stamp_ns
            info = self._nearest("camera_info", stamp_ns, self.slop_ns)
            info_of_stamp = info is not None
            if info is None and self.buffers["camera_info"]:
                if self._info_per_image and now_s - image.arrival_s < self.depth_timeout_s:
                    continue  # camera_info comes with every image (a driver's): wait for this image's own
                info = self.buffers["camera_info"][-1][1]  # latched or rare camera_info: the latest one
            seg_slop = self.segmentation_slop_ns
            masks = self._nearest("masks", stamp_ns, seg_slop) if "masks" in self.segmentation_kinds else None
            detections = None
            if masks is None and "detections" in self.segmentation_kinds:
                detections = self._nearest("detections", stamp_ns, seg_slop)
            if info is None or (masks is None and detections is None):
                continue
            depth = self._nearest("depth", stamp_ns, self.slop_ns)
            if depth is None and not self._depth_missing(image, now_s):
                continue
            completed.append(FrameSet(stamp_ns, image.msg, info, depth, masks, detections))
            self._info_per_image = info_of_stamp
        if completed:
            newest = completed[-1].stamp_ns
            kept = [image for image in self.images if image.stamp_ns > newest]
            self.dropped_images += len(self.images) - len(kept) - len(completed)  # older, never completed
            self.images.clear()
            self.images.extend(kept)
        return completed

    def pending_images(self) -> int:
        """Images waiting for their other inputs."""
        return len(self.images)
