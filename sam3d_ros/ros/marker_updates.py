"""Which objects' markers the node sends, and when the whole array goes again (ROS-free).

The node's ~/markers topic is a latched (transient_local, depth 1) MarkerArray: a viewer that joins late gets the last
array sent. Sending every object's mesh whenever one mesh changes keeps that last array complete, but with
TRIANGLE_LIST markers it costs the whole array's serialisation (about 20 ms per object of 5000 triangles here, in one
GIL-holding call) for every mesh swap. So:

- a changed object (new or swapped mesh) gets its markers sent alone: a partial array, which live viewers merge
  (a marker with the same ns/id replaces the old one, the others stay); at most `max_objects_per_send` objects go in
  one partial array, those changed longest ago first, the others with the next sends (so many swaps at once do not
  stall one frame; an object changed again meanwhile is sent once, with its newest mesh); an unpaced send (the
  new objects of one reconstruction) takes every change;
- once a partial array was sent, the latched array no longer holds every object: the whole array (a snapshot) is sent
  again when a new subscriber has matched since the last send, and otherwise at most once per `snapshot_period_s`;
  the changes waiting then go in it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Set
from dataclasses import dataclass


@dataclass(frozen=True)
class MarkerSend:
    """One MarkerArray to send: every known object's markers (`full`) or only those of `object_ids`."""

    full: bool
    object_ids: frozenset[str] = frozenset()


class MarkerUpdates:
    """The markers due with the next send, from the objects changed since the last one (not thread-safe: the node
    calls it under its lock)."""

    def __init__(self, snapshot_period_s: float, max_objects_per_send: int) -> None:
        if not snapshot_period_s >= 0.0:
            raise ValueError(f"snapshot_period_s must be >= 0, got {snapshot_period_s}")
        if not max_objects_per_send >= 1:
            raise ValueError(f"max_objects_per_send must be >= 1, got {max_objects_per_send}")
        self.snapshot_period_s = float(snapshot_period_s)
        self.max_objects_per_send = int(max_objects_per_send)
        self._changed: dict[str, None] = {}  # changed objects, oldest change first
        self._everything = False  # every object's markers must go (labels or frame-locking changed)
        self._latched_complete = True  # the last array sent holds every known object's current markers
        self._last_snapshot_s = -math.inf
        self._subscribers = 0

    def changed(self, object_ids: Iterable[str]) -> None:
        """These objects' markers changed (a new or swapped mesh): they go with the next send."""
        for object_id in object_ids:
            self._changed.setdefault(object_id, None)

    def resend_all(self) -> None:
        """Every object's markers go with the next send."""
        self._everything = True

    def partial_sent(self) -> None:
        """An array that does not hold every object was sent outside `due` (e.g. DELETEs of removed objects)."""
        self._latched_complete = False

    def forget(self, object_ids: Iterable[str]) -> None:
        """These objects are gone: nothing of theirs is sent any more."""
        for object_id in object_ids:
            self._changed.pop(object_id, None)

    def due(self, now_s: float, known_ids: Set[str], subscribers: int, paced: bool = True) -> MarkerSend | None:
        """What to send now (None: nothing), given the objects that have markers and the number of subscribers
        matched now; the caller sends it. `paced` False: every changed object goes now (new objects of one
        reconstruction, at most max_reconstructions_per_frame, must not wait for frames that may not come)."""
        joined = subscribers > self._subscribers
        self._subscribers = subscribers
        changed = [object_id for object_id in self._changed if object_id in known_ids]
        snapshot_wanted = not self._latched_complete or changed
        full = self._everything or (snapshot_wanted and (joined or now_s - self._last_snapshot_s >= self.snapshot_period_s))
        self._everything = False
        if full:
            self._changed.clear()
            self._latched_complete = True
            self._last_snapshot_s = now_s
            return MarkerSend(True)
        limit = self.max_objects_per_send if paced else len(changed)
        self._changed = dict.fromkeys(changed[limit:])
        if not changed:
            return None
        self._latched_complete = False
        return MarkerSend(False, frozenset(changed[:limit]))
