"""ReconstructionScheduler: one job at a time, the newest waiting job wins, errors reported, clean shutdown."""
import threading
import time

import pytest

from sam3d_ros.tracking.scheduler import ReconstructionScheduler


def test_newer_jobs_replace_the_waiting_one_and_every_result_is_reported():
    gate = threading.Event()
    done = []

    def run(payload):
        gate.wait(5.0)
        if payload == "bad":
            raise RuntimeError("backend exploded")
        return payload * 2

    scheduler = ReconstructionScheduler(run, lambda job, result, error, elapsed: done.append((job.payload, result, error)))
    try:
        assert scheduler.submit(1) == []
        time.sleep(0.1)  # job 1 is running now
        assert scheduler.submit(2) == []
        replaced = scheduler.submit("bad")
        assert [job.payload for job in replaced] == [2] and scheduler.replaced == 1 and scheduler.waiting == 1
        assert not scheduler.idle()
        gate.set()
        assert scheduler.wait_idle(5.0)
        assert [d[0] for d in done] == [1, "bad"]
        assert done[0][1] == 2 and done[0][2] is None
        assert isinstance(done[1][2], RuntimeError) and done[1][1] is None
        assert scheduler.submitted == 3 and scheduler.completed == 2
    finally:
        scheduler.close()


def test_a_larger_queue_keeps_jobs_in_order():
    gate = threading.Event()
    order = []
    scheduler = ReconstructionScheduler(lambda p: (gate.wait(5.0), p)[1], lambda job, r, e, t: order.append(r), queue_size=3)
    try:
        for payload in range(4):
            assert scheduler.submit(payload) == []
            time.sleep(0.02)
        gate.set()
        assert scheduler.wait_idle(5.0) and order == [0, 1, 2, 3]
    finally:
        scheduler.close()


def test_close_stops_the_workers_and_drops_waiting_jobs():
    started = threading.Event()
    scheduler = ReconstructionScheduler(lambda p: started.set() or time.sleep(0.2), lambda *a: None)
    scheduler.submit(1)
    started.wait(2.0)
    scheduler.submit(2)
    scheduler.close(timeout_s=2.0)
    assert scheduler.waiting == 0
    assert not any(t.is_alive() for t in scheduler._threads)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        ReconstructionScheduler(lambda p: p, lambda *a: None, queue_size=0)
