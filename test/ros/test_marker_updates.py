"""Which objects' markers the node sends, and when the whole latched array goes again (MarkerUpdates, ROS-free)."""
import pytest

from sam3d_ros.ros.marker_updates import MarkerSend, MarkerUpdates

KNOWN = {"1", "2", "3"}


def _settled(period_s: float = 10.0, per_send: int = 10) -> MarkerUpdates:
    """Every object's markers sent once at t=0 (the first send is a snapshot), one subscriber matched."""
    updates = MarkerUpdates(period_s, per_send)
    updates.changed(KNOWN)
    assert updates.due(0.0, KNOWN, 1) == MarkerSend(True)
    return updates


def test_nothing_changed_sends_nothing():
    updates = _settled()
    assert updates.due(1.0, KNOWN, 1) is None
    assert updates.due(100.0, KNOWN, 1) is None  # the latched array is complete: no snapshot however long it waits


def test_a_swapped_mesh_sends_that_object_alone_and_changes_coalesce():
    updates = _settled()
    updates.changed(["2"])
    updates.changed(["2", "3"])
    assert updates.due(1.0, KNOWN, 1) == MarkerSend(False, frozenset({"2", "3"}))
    assert updates.due(1.1, KNOWN, 1) is None


def test_after_a_partial_array_the_snapshot_comes_once_the_period_has_passed():
    updates = _settled(period_s=10.0)
    updates.changed(["1"])
    assert updates.due(1.0, KNOWN, 1).full is False
    assert updates.due(9.9, KNOWN, 1) is None  # at most one snapshot per period
    assert updates.due(10.0, KNOWN, 1) == MarkerSend(True)
    assert updates.due(30.0, KNOWN, 1) is None  # complete again: nothing more


def test_a_change_due_with_the_snapshot_goes_in_it():
    updates = _settled(period_s=10.0)
    updates.changed(["1"])
    assert updates.due(1.0, KNOWN, 1).full is False
    updates.changed(["2"])
    assert updates.due(12.0, KNOWN, 1) == MarkerSend(True)


def test_a_lone_change_long_after_the_last_snapshot_is_sent_as_a_snapshot():
    updates = _settled(period_s=10.0)
    updates.changed(["3"])
    assert updates.due(50.0, KNOWN, 1) == MarkerSend(True)  # it would be due right after the partial array anyway


def test_a_new_subscriber_gets_a_snapshot_at_once_when_the_latched_array_is_partial():
    updates = _settled(period_s=1000.0)
    updates.changed(["1"])
    assert updates.due(1.0, KNOWN, 1).full is False
    assert updates.due(2.0, KNOWN, 2) == MarkerSend(True)  # a viewer joined: it got the partial array latched
    assert updates.due(3.0, KNOWN, 1) is None  # one left: nothing to do


def test_a_new_subscriber_needs_nothing_when_the_latched_array_is_complete():
    updates = _settled(period_s=1000.0)
    assert updates.due(1.0, KNOWN, 3) is None


def test_the_first_send_is_a_snapshot_and_a_viewer_joining_after_it_needs_nothing():
    updates = MarkerUpdates(1000.0, 1)
    assert updates.due(0.0, set(), 0) is None  # nothing to show yet
    updates.changed(["1", "2"])
    assert updates.due(1.0, {"1", "2"}, 0) == MarkerSend(True)
    assert updates.due(2.0, {"1", "2"}, 1) is None  # that snapshot is latched: a new viewer gets it from DDS


def test_many_changes_at_once_are_spread_over_sends_oldest_first_newest_mesh_once():
    updates = _settled(period_s=1000.0, per_send=2)
    updates.changed(["3", "1"])
    updates.changed(["2", "gone"])  # an object without markers any more counts for nothing
    assert updates.due(1.0, KNOWN | {"9"}, 1) == MarkerSend(False, frozenset({"3", "1"}))
    updates.changed(["3"])  # changed again meanwhile: after the one still waiting
    assert updates.due(1.1, KNOWN, 1) == MarkerSend(False, frozenset({"2", "3"}))
    assert updates.due(1.2, KNOWN, 1) is None


def test_resend_all_and_partial_sends_outside():
    updates = _settled(period_s=1000.0)
    updates.resend_all()
    assert updates.due(1.0, KNOWN, 1) == MarkerSend(True)
    updates.partial_sent()  # e.g. the DELETEs of removed objects
    updates.forget(["3"])
    assert updates.due(2.0, {"1", "2"}, 2) == MarkerSend(True)


def test_forgotten_objects_are_not_sent():
    updates = _settled(period_s=1000.0)
    updates.changed(["1", "3"])
    updates.forget(["3"])
    assert updates.due(1.0, KNOWN, 1) == MarkerSend(False, frozenset({"1"}))


def test_unpaced_sends_take_every_change():
    updates = _settled(period_s=1000.0, per_send=1)
    updates.changed(["1", "2"])
    assert updates.due(1.0, KNOWN, 1, paced=False) == MarkerSend(False, frozenset({"1", "2"}))


def test_a_joining_viewer_takes_the_waiting_changes_with_its_snapshot():
    updates = _settled(period_s=1000.0, per_send=1)
    updates.changed(["1", "2"])
    assert updates.due(1.0, KNOWN, 1) == MarkerSend(False, frozenset({"1"}))
    assert updates.due(1.1, KNOWN, 2) == MarkerSend(True)
    assert updates.due(1.2, KNOWN, 2) is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="snapshot_period_s"):
        MarkerUpdates(-1.0, 2)
    with pytest.raises(ValueError, match="max_objects_per_send"):
        MarkerUpdates(10.0, 0)
