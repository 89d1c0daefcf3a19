"""Reconstruction off the camera thread: a bounded queue of jobs served by worker threads."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Job:
    """One unit of work and when it was submitted / started (monotonic seconds)."""

    payload: Any
    submitted_s: float = field(default_factory=time.monotonic)
    started_s: float | None = None


class ReconstructionScheduler:
    """At most `workers` jobs run at once (one per backend by default); at most `queue_size` wait.

    A job submitted to a full queue replaces the oldest waiting one (the newest frame wins); replaced jobs are
    returned by `submit` and counted in `replaced`. `run(payload)` is called on a worker thread and its result (or
    the exception it raised) goes to `on_done(job, result, error, elapsed_s)`.
    """

    def __init__(
        self, run: Callable[[Any], Any], on_done: Callable[[Job, Any, BaseException | None, float], None],
        queue_size: int = 1, workers: int = 1, name: str = "sam3d_reconstruction",
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError(f"queue_size and workers must be >= 1, got {queue_size} and {workers}")
        self._run, self._on_done = run, on_done
        self.queue_size = queue_size
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stop = False
        self.running = 0
        self.submitted = 0
        self.completed = 0
        self.replaced = 0
        self._threads = [threading.Thread(target=self._loop, name=f"{name}_{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, payload: Any) -> list[Job]:
        """Queue `payload`; the waiting jobs it replaced (oldest first)."""
        dropped: list[Job] = []
        with self._cv:
            while len(self._queue) >= self.queue_size:
                dropped.append(self._queue.popleft())
            self._queue.append(Job(payload))
            self.submitted += 1
            self.replaced += len(dropped)
            self._cv.notify()
        return dropped

    @property
    def waiting(self) -> int:
        """Jobs queued, not yet started."""
        with self._cv:
            return len(self._queue)

    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        with self._cv:
            return not self._queue and self.running == 0

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                job = self._queue.popleft()
                self.running += 1
            job.started_s = time.monotonic()
            result, error = None, None
            try:
                result = self._run(job.payload)
            except Exception as exc:  # reported to on_done: the worker thread keeps serving
                error = exc
            elapsed_s = time.monotonic() - job.started_s
            try:
                self._on_done(job, result, error, elapsed_s)
            finally:
                with self._cv:
                    self.running -= 1
                    self.completed += 1
                    self._cv.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until idle or `timeout_s` passed; True when idle."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queue or self.running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Drop waiting jobs and stop the threads (a running job is waited for up to `timeout_s`)."""
        with self._cv:
            self._stop = True
            self._queue.clear()
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
