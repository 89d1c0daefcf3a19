"""A TF-like buffer of rigid transforms over time (ROS-free: numpy in, numpy out).

Every child frame has one parent and either a time-ordered history of `T_parent_child` samples (dynamic, pruned
to the `cache_time_s` before its newest sample) or a single static transform valid at all times. `lookup` walks
both frames up to their common ancestor and interpolates each dynamic edge at the requested stamp (linear
translation, slerp rotation), like tf2's BufferCore. Stamps are integer nanoseconds; 0 means "the latest time
every dynamic edge on the path has data for" (tf2's Time 0).

Time that jumps back (a looping bag, a simulator reset, a driver restart) is noticed in the stamps: when two
samples in a row of one edge (the second not older than the first) lie more than `time_jump_s` before its newest
one, every dynamic transform is cleared, as tf2_ros' Buffer does when its node's clock jumps back (which needs
use_sim_time and /clock); without that, the new timeline's samples would be refused as older than the cache, or
interleaved with the old ones. One such sample alone is a late one (a reconstruction published at its own, older
frame's stamp) and is kept or refused as tf2 would. `time_jumped_back` clears when the caller learnt of the jump
otherwise (its clock, other stamps), keeping the samples that started the new timeline.

Thread-safe: one thread may add transforms while others look them up.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from sam3d_ros.geometry.transforms import invert_transform, make_transform

_NS_PER_S = 1_000_000_000
_MAX_LISTED_FRAMES = 30  # an unknown-frame message names at most this many known frames
_BOTTOM_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_I3 = np.eye(3)


class TransformLookupError(LookupError):
    """A transform cannot be looked up; the message is one line saying why."""


class FrameNotFoundError(TransformLookupError):
    """A frame of the lookup has never been seen (tf2's LookupException)."""


class FramesNotConnectedError(TransformLookupError):
    """Both frames exist but lie in different trees (tf2's ConnectivityException)."""


class ExtrapolationError(TransformLookupError):
    """The stamp lies outside the time span an edge on the path has data for (tf2's ExtrapolationException)."""


def format_ns(ns: int) -> str:
    """Nanoseconds as exact seconds, e.g. 1700000000.250000000 s."""
    sign = "-" if ns < 0 else ""
    sec, nanosec = divmod(abs(int(ns)), _NS_PER_S)
    return f"{sign}{sec}.{nanosec:09d} s"


@dataclass
class _Edge:
    """The transform of one child frame in its parent: one static sample or a time-ordered history."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)  # T_parent_child, same order as stamps


def _interpolate(T0_parent_child: np.ndarray, T1_parent_child: np.ndarray, alpha: float) -> np.ndarray:
    """T_parent_child a fraction alpha of the way from T0 to T1: linear translation, slerp rotation."""
    R0 = T0_parent_child[:3, :3]
    rotvec_0_1 = Rotation.from_matrix(R0.T @ T1_parent_child[:3, :3]).as_rotvec()  # shortest arc R0 -> R1
    R = R0 @ Rotation.from_rotvec(alpha * rotvec_0_1).as_matrix()
    t = (1.0 - alpha) * T0_parent_child[:3, 3] + alpha * T1_parent_child[:3, 3]
    return make_transform(R, t)


def _checked_transform(T_parent_child: np.ndarray, parent: str, child: str) -> np.ndarray:
    """A private float64 copy of a rigid 4x4 transform; ValueError otherwise (cheap: called for every sample)."""
    T = np.array(T_parent_child, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"transform '{parent}' -> '{child}' must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    (a, b, c), (d, e, f), (g, h, i) = R.tolist()
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if (T[3] != _BOTTOM_ROW).any() or np.abs(R.T @ R - _I3).max() > 1e-6 or det <= 0:
        raise ValueError(
            f"transform '{parent}' -> '{child}' is not rigid (rotation not orthonormal or bottom row not 0 0 0 1)"
        )
    return T


class TransformBuffer:
    """Transforms between frames over time, looked up like tf2 (see the module docstring)."""

    def __init__(
        self,
        cache_time_s: float = 10.0,
        extrapolation_tolerance_s: float = 0.0,
        max_samples_per_frame: int = 100_000,
        time_jump_s: float = 1.0,
    ) -> None:
        """cache_time_s: history kept per dynamic edge, before its newest sample.
        extrapolation_tolerance_s: a stamp up to this much past an edge's newest sample uses that sample.
        max_samples_per_frame: hard cap on the history of one edge (oldest dropped first), whatever the rate.
        time_jump_s: samples this much before their edge's newest one may mean time jumped back (tf2_ros' threshold).
        """
        if not cache_time_s > 0:
            raise ValueError(f"cache_time_s must be positive, got {cache_time_s}")
        if not extrapolation_tolerance_s >= 0:
            raise ValueError(f"extrapolation_tolerance_s must be >= 0, got {extrapolation_tolerance_s}")
        if max_samples_per_frame < 2:
            raise ValueError(f"max_samples_per_frame must be >= 2, got {max_samples_per_frame}")
        if not time_jump_s > 0:
            raise ValueError(f"time_jump_s must be positive, got {time_jump_s}")
        self.cache_time_ns = int(round(cache_time_s * _NS_PER_S))
        self.tolerance_ns = int(round(extrapolation_tolerance_s * _NS_PER_S))
        self.max_samples_per_frame = int(max_samples_per_frame)
        self.time_jump_ns = int(round(time_jump_s * _NS_PER_S))
        self.time_jumps = 0  # times the TF stamps were seen to jump back (the dynamic transforms were cleared)
        self.last_time_jump: tuple[str, str, int] | None = None  # (parent, child, how far back in ns) of the latest
        self._held: dict[str, tuple[str, int, np.ndarray]] = {}  # child -> (parent, stamp, T): far behind its edge
        self._edges: dict[str, _Edge] = {}  # child frame -> its edge to its parent
        self._children: dict[str, int] = {}  # parent frame -> number of edges naming it as parent
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- writing

    def set_transform(
        self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray, static: bool = False
    ) -> bool:
        """Add T_parent_child at stamp_ns; False when a dynamic sample is older than the cache and was dropped.

        A static transform replaces the child's edge and never expires. A sample for a child whose parent or
        static/dynamic kind changed replaces its whole edge (its history restarts). A sample at an existing stamp
        replaces it. The second dynamic sample in a row more than time_jump_s before its edge's newest one clears
        every dynamic transform first (time jumped back; counted in `time_jumps`) and is kept with the first. Raises
        ValueError for empty or equal frame names, a negative stamp, a non-rigid matrix, or an edge that would close
        a loop.
        """
        parent, child, stamp_ns = str(parent), str(child), int(stamp_ns)
        if not parent or not child:
            raise ValueError(f"transform '{parent}' -> '{child}' has an empty frame name")
        if parent == child:
            raise ValueError(f"transform '{parent}' -> '{child}' links a frame to itself")
        if stamp_ns < 0:
            raise ValueError(f"transform '{parent}' -> '{child}' has a negative stamp {stamp_ns} ns")
        T = _checked_transform(T_parent_child, parent, child)
        with self._lock:
            if not static:
                self._check_time_jump(parent, child, stamp_ns, T)
            return self._set(parent, child, stamp_ns, T, static)

    def _check_time_jump(self, parent: str, child: str, stamp_ns: int, T: np.ndarray) -> None:
        edge = self._edges.get(child)
        if edge is None or edge.static:
            return
        newest = edge.stamps[-1]
        if stamp_ns >= newest - self.time_jump_ns:
            self._held.pop(child, None)
            return
        held = self._held.get(child)
        if held is None or not held[1] <= stamp_ns <= held[1] + self.cache_time_ns:
            self._held[child] = (parent, stamp_ns, T)  # late, or the first of a new timeline: the next one says
            return
        self.time_jumps += 1
        self.last_time_jump = (edge.parent, child, newest - stamp_ns)
        self._clear_dynamic()
        self._set(held[0], child, held[1], held[2], False)

    def time_jumped_back(self, stamp_ns: int | None = None) -> None:
        """Time jumped back to about `stamp_ns` (the caller's clock or other stamps say so): forget every dynamic
        transform but the samples held as a possible start of the new timeline (those within time_jump_s of
        `stamp_ns`, or all of them when it is None)."""
        with self._lock:
            held = [
                (parent, child, held_ns, T) for child, (parent, held_ns, T) in self._held.items()
                if stamp_ns is None or abs(held_ns - int(stamp_ns)) <= self.time_jump_ns
            ]
            self._clear_dynamic()
            for parent, child, held_ns, T in held:
                self._set(parent, child, held_ns, T, False)

    def _set(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool) -> bool:
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if edge is None or edge.parent != parent:
                self._check_no_loop(parent, child)
            edge = self._replace_edge(child, _Edge(parent=parent, static=static))
        if static:
            edge.stamps, edge.transforms = [stamp_ns], [T]
            return True
        return self._insert_sample(edge, stamp_ns, T)

    def clear(self) -> None:
        """Forget every dynamic transform (static ones stay, as in tf2), e.g. after time jumped back."""
        with self._lock:
            self._clear_dynamic()

    def _clear_dynamic(self) -> None:
        self._held.clear()
        for child in [child for child, edge in self._edges.items() if not edge.static]:
            self._replace_edge(child, None)

    def _check_no_loop(self, parent: str, child: str) -> None:
        frame = parent
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame == child:
                raise ValueError(
                    f"transform '{parent}' -> '{child}' would close a loop ('{parent}' is below '{child}')"
                )

    def _replace_edge(self, child: str, edge: _Edge | None) -> _Edge | None:
        old = self._edges.pop(child, None)
        if old is not None:
            self._children[old.parent] -= 1
            if self._children[old.parent] == 0:
                del self._children[old.parent]
        if edge is not None:
            self._edges[child] = edge
            self._children[edge.parent] = self._children.get(edge.parent, 0) + 1
        return edge

    def _insert_sample(self, edge: _Edge, stamp_ns: int, T: np.ndarray) -> bool:
        stamps = edge.stamps
        if stamps and stamp_ns < stamps[-1] - self.cache_time_ns:
            return False  # older than the cache keeps (tf2's TF_OLD_DATA)
        index = bisect.bisect_left(stamps, stamp_ns)
        if index < len(stamps) and stamps[index] == stamp_ns:
            edge.transforms[index] = T
            return True
        stamps.insert(index, stamp_ns)
        edge.transforms.insert(index, T)
        oldest_kept = stamps[-1] - self.cache_time_ns
        drop = max(bisect.bisect_left(stamps, oldest_kept), len(stamps) - self.max_samples_per_frame)
        if drop > 0:
            del stamps[:drop], edge.transforms[:drop]
        return True

    # ----------------------------------------------------------------------------------------- reading

    def frames(self) -> list[str]:
        """Every frame the buffer knows, sorted."""
        with self._lock:
            return sorted(set(self._edges) | set(self._children))

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int) -> bool:
        """Whether `lookup` would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformLookupError:
            return False
        return True

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        """T_target_source at stamp_ns (0: the latest common time); raises TransformLookupError (one line)."""
        target_frame, source_frame, stamp_ns = str(target_frame), str(source_frame), int(stamp_ns)
        if stamp_ns < 0:
            raise ValueError(f"lookup stamp must be >= 0 ns, got {stamp_ns}")
        what = f"cannot transform '{source_frame}' to '{target_frame}'"
        with self._lock:
            self._check_known(what, target_frame, source_frame)
            source_chain, target_chain = self._chain(source_frame), self._chain(target_frame)
            target_index = {frame: i for i, frame in enumerate(target_chain)}
            common = next((i for i, frame in enumerate(source_chain) if frame in target_index), None)
            if common is None:
                raise FramesNotConnectedError(
                    f"{what}: the frames are not connected ('{source_frame}' is in the tree rooted at "
                    f"'{source_chain[-1]}', '{target_frame}' in the tree rooted at '{target_chain[-1]}')"
                )
            source_path = source_chain[:common]  # children whose edges lead from source up to the ancestor
            target_path = target_chain[: target_index[source_chain[common]]]
            edges = [self._edges[child] for child in source_path + target_path]
            if stamp_ns == 0:
                dynamic = [edge.stamps[-1] for edge in edges if not edge.static]
                at = min(dynamic) if dynamic else 0
                when = f"at the latest common time {format_ns(at)}"
            else:
                at, when = stamp_ns, f"at {format_ns(stamp_ns)}"
            T_ancestor_source = self._walk(source_path, at, f"{what} {when}")
            T_ancestor_target = self._walk(target_path, at, f"{what} {when}")
        return invert_transform(T_ancestor_target) @ T_ancestor_source

    def _check_known(self, what: str, *frames: str) -> None:
        if any(not frame for frame in frames):
            raise TransformLookupError(f"{what}: a frame name is empty")
        unknown = list(dict.fromkeys(f for f in frames if f not in self._edges and f not in self._children))
        if not unknown:
            return
        known = sorted(set(self._edges) | set(self._children))
        if not known:
            listing = "the buffer holds no transforms"
        elif len(known) > _MAX_LISTED_FRAMES:
            listing = f"known frames: {', '.join(known[:_MAX_LISTED_FRAMES])}, ... ({len(known)} in all)"
        else:
            listing = f"known frames: {', '.join(known)}"
        names = " and ".join(f"'{f}'" for f in unknown)
        raise FrameNotFoundError(f"{what}: unknown frame{'s' if len(unknown) > 1 else ''} {names} ({listing})")

    def _chain(self, frame: str) -> list[str]:
        """frame, its parent, ..., the root of its tree (edges never form loops: set_transform refuses them)."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _walk(self, children: list[str], at: int, what: str) -> np.ndarray:
        """T_top_bottom through the edges of `children` (bottom first) at stamp `at`."""
        T = np.eye(4)
        for child in children:
            T = self._edge_at(child, at, what) @ T
        return T

    def _edge_at(self, child: str, at: int, what: str) -> np.ndarray:
        edge = self._edges[child]
        if edge.static:
            return edge.transforms[0].copy()
        stamps = edge.stamps
        oldest, newest = stamps[0], stamps[-1]
        span = f"edge '{edge.parent}' -> '{child}' has data from {format_ns(oldest)} to {format_ns(newest)}"
        if at > newest:
            if at - newest <= self.tolerance_ns:
                return edge.transforms[-1].copy()
            raise ExtrapolationError(
                f"{what}: extrapolation into the future, {span} ({format_ns(at - newest)} past the newest sample)"
            )
        if at < oldest:
            raise ExtrapolationError(
                f"{what}: extrapolation into the past, {span} ({format_ns(oldest - at)} before the oldest sample)"
            )
        index = bisect.bisect_left(stamps, at)
        if stamps[index] == at:
            return edge.transforms[index].copy()
        before, after = index - 1, index  # stamps[before] < at < stamps[after]
        alpha = (at - stamps[before]) / (stamps[after] - stamps[before])
        return _interpolate(edge.transforms[before], edge.transforms[after], alpha)
