"""Messages that never reached a subscriber, counted from the publishers' sequence numbers (ROS-free).

DDS numbers every sample a writer sends (rmw `publication_sequence_number`, 1, 2, 3, ... per publisher). A sample
that is lost in transport, or overwritten in the subscriber's KEEP_LAST history before the node took it, never
reaches a callback and raises no event; it shows up only as a gap in the numbers of the samples that do arrive.

The numbers are per publisher. rclpy names the publisher of a message (`publisher_gid` in its MessageInfo) from
Kilted on; Jazzy gives the number without the publisher. Numbers of unnamed publishers are checked only while the
topic has a single publisher: mixed with another's they would count false losses (a publisher that was already
sending when the subscription matched starts far above the other's numbers) or hide real ones.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class SequenceGapCounter:
    """Per-publisher gaps in publication sequence numbers: how many messages were skipped before the callbacks."""

    lost: int = 0  # messages skipped between two that arrived from the same publisher
    received: int = 0  # messages observed with a sequence number
    unnumbered: int = 0  # messages whose middleware gave no sequence number (they cannot be checked)
    out_of_order: int = 0  # messages numbered at or below one already seen from their publisher
    unattributed: int = 0  # messages of an unnamed publisher while the topic had several (they cannot be checked)
    _last_by_publisher: dict[Hashable, int] = field(default_factory=dict)

    def observe(self, publisher: Hashable | None, sequence_number: int | None, publishers: int = 1) -> int:
        """Record one received message; return how many of `publisher`'s messages were skipped just before it.

        The first message of a publisher starts its count (messages sent before the subscription matched are not
        losses). A number at or below the last one seen is counted as out of order and skips nothing. `publisher`
        None: the middleware did not name it (rclpy before Kilted); then `publishers`, how many publishers the topic
        has now, decides: with one the number is checked, with more the message is counted as unattributed.
        """
        if sequence_number is None or sequence_number <= 0:
            self.unnumbered += 1
            return 0
        if publisher is None and publishers > 1:
            self.unattributed += 1
            return 0
        self.received += 1
        last = self._last_by_publisher.get(publisher)
        if last is not None and sequence_number <= last:
            self.out_of_order += 1
            return 0
        self._last_by_publisher[publisher] = sequence_number
        skipped = 0 if last is None else sequence_number - last - 1
        self.lost += skipped
        return skipped
