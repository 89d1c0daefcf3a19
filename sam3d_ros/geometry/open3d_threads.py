"""Open3D calls whose result depends on how its threads are scheduled, run on one thread: equal inputs, equal outputs.

Open3D (0.20) parallelises with oneTBB. Two of the calls this package makes are not reproducible on several threads:
- `PointCloud.segment_plane` (the support plane): its RANSAC hypotheses are drawn up front from the seeded engine,
  but it stops early (`probability`) once enough of them have been scored, and which ones have been scored by then
  depends on the threads, so the plane, and with it every object of the frame, differs from run to run (in 12-39 %
  of the calls on a 2-core machine);
- `registration.registration_icp` (pose tracking, refinement): correspondences and the point-to-plane normal
  equations are summed by `tbb::parallel_reduce`, whose grouping changes with the work stealing, so poses differ in
  the last bits (~1e-16) and the difference can later flip a threshold.
On one thread TBB runs a range in order, as a plain loop would: the same input gives the same bits on this machine.
Everything else the package calls (KD-tree queries, normals, outlier removal, DBSCAN, ray casting) computes each
point on its own and was bit-identical from run to run anyway.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import open3d as o3d

_LOCK = threading.Lock()  # the limit is process-wide: one block at a time sets and restores it


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block's Open3D calls on one thread (`o3d.utility.set_max_threads(1)`), then restore the limit there
    was. The limit is process-wide: while the block runs, Open3D calls of other threads get one thread too, and
    blocks of several threads run one after the other. An Open3D without `set_max_threads` (before 0.20: OpenMP)
    runs the block unchanged."""
    set_max_threads = getattr(o3d.utility, "set_max_threads", None)
    if set_max_threads is None:
        yield
        return
    with _LOCK:
        previous = o3d.utility.get_max_threads()
        set_max_threads(1)
        try:
            yield
        finally:
            set_max_threads(previous)
