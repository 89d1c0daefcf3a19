"""`sam3d-ros bench-node`: end-to-end latency of the running node, image publish -> TF receipt (a benchmark).

A rendered sequence of objects sliding on a table is played at `rate_hz` (forward then backward, so it loops
without a jump) to the node in its own process over DDS (shared-memory FastDDS profile, loopback only), with
640x480 rgb8 + 16UC1 depth + mono8 masks. The first frame is sent until every object is reconstructed; then each
frame's latency is the time from publishing its image to receiving its TF. Every frame is accounted for from the
node's /diagnostics: the node published it ("frames out"), or counted it as dropped (including images lost before
its callbacks), or lost it silently (the target is none); of the frames it published, those whose TF did not reach
this benchmark's listener are counted separately. The resident memory of the node and of its child processes (the
fusion process) is sampled once a second.

Layouts (`synthetic.moving_object_sequence`): "random" (the default up to 5 objects: the scenes of the README's
earlier figures, camera 0.5-1 m out) finds no first frame for 10 or more objects; "grid" (the default above 5) stands
any number of objects in rows, the camera `GRID_DISTANCE_M` out for every count, so objects cover about the same
pixels whatever their number and the cost per object can be compared across counts.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from moveit_msgs.msg import CollisionObject
from std_msgs.msg import Header

from sam3d_ros.geometry.transforms import invert_transform
from sam3d_ros.ros import conversions
from sam3d_ros.ros.ros_client import PerceptionClient, start_node_process
from sam3d_ros.tools.synthetic import SyntheticScene, moving_object_sequence

FRAME_ID = "camera_color_optical_frame"
# The first 10 are the objects of the earlier figures; the others are YCB objects of every shape category
# (object_split.CATEGORIES) big enough to show >= 1000 pixels at GRID_DISTANCE_M (held-out or not does not matter
# for a cost benchmark).
OBJECT_NAMES = ["003_cracker_box", "004_sugar_box", "005_tomato_soup_can", "006_mustard_bottle", "010_potted_meat_can",
                "002_master_chef_can", "021_bleach_cleanser", "025_mug", "019_pitcher_base", "035_power_drill",
                "022_windex_bottle", "036_wood_block", "024_bowl", "008_pudding_box", "007_tuna_fish_can",
                "077_rubiks_cube", "065-j_cups", "070-a_colored_wood_blocks", "009_gelatin_box", "065-f_cups"]
MIN_GROWTH_WINDOW_S = 30.0  # memory growth is judged over at least this long after warm-up
SWAP_WINDOW_S = 0.3  # a frame published this near a mesh install is counted as near it (late_frames_near)
GRID_DISTANCE_M = 1.5  # grid layout: camera to a point above the grid centre (about 1.6 m to the table there);
# 20 objects need about this much at 640x480


@dataclass
class NodeBenchResult:
    """What one run measured."""

    rate_hz: float
    n_objects: int
    seconds: float
    layout: str = "random"
    camera_distance_m: float = 0.0  # camera to the table point it looks at
    object_pixels: tuple[int, int] = (0, 0)  # visible pixels per object in the first frame (min, median)
    published: int = 0
    with_tf: int = 0  # frames whose TF came back with every object
    latencies_ms: list[float] = field(default_factory=list)
    node_frames_in: int = 0
    node_frames_out: int = 0  # frames the node tracked and published
    node_frames_dropped: int = 0
    node_drop_reasons: dict[str, int] = field(default_factory=dict)
    reconstructions: int = 0
    fusion: dict[str, float] | None = None  # the node's fusion status at the end (views integrated, meshes installed)
    marker_arrays: tuple[int, int] | None = None  # ~/markers arrays sent since start: (changed objects only, every object)
    marker_send_s: float = 0.0  # the node's time building and publishing them (since start)
    node_total_ms: tuple[float, float] | None = None  # the node's own per-frame time (median of its window, max)
    rss_mb: list[tuple[float, float, float]] = field(default_factory=list)  # (s since start, node MB, children MB)
    fusion_warm_s: float | None = None  # s since start when every object's first fused mesh was in (its collision ADD
    # received); None: fusion off, or not every object had one by the end
    objects_fused: int = 0  # objects with a fused mesh (a collision ADD) received while playing
    # CPU seconds (user + system) while playing: (node, its child processes), and the playing time they are over
    cpu_s: tuple[float, float] | None = None
    cpu_wall_s: float = 0.0
    achieved_rate_hz: float = 0.0
    frame_sent_s: list[float] = field(default_factory=list)  # time.monotonic() each latencies_ms frame was published
    mesh_adds_s: list[float] = field(default_factory=list)  # receipt of each collision ADD while playing (a new or
    # swapped mesh: a reconstruction's or a fused one)

    @property
    def silently_lost(self) -> int:
        """Frames the node neither published nor counted as dropped (its diagnostics cannot explain them)."""
        return self.published - self.node_frames_out - self.node_frames_dropped

    @property
    def outputs_not_received(self) -> int:
        """Frames the node published whose TF (with every object) did not reach this benchmark's listener."""
        return self.node_frames_out - self.with_tf


def node_rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory (MB) of process `pid` and of all its descendants together (the fusion process and
    multiprocessing's resource tracker), from /proc (0 for what is gone)."""
    own = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                own = int(line.split()[1]) / 1024.0
    except OSError:
        return own, 0.0
    return own, sum(sum(node_rss_mb(child)) for child in _child_pids(pid))


def _child_pids(pid: int) -> list[int]:
    """The pids of process `pid`'s children, from /proc (none when it is gone)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def node_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process `pid` and by all its descendants together, from /proc (0
    for what is gone). Unlike latency, what a frame costs the node in CPU hardly moves with the machine's load."""
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        own = (int(fields[11]) + int(fields[12])) * tick_s  # utime, stime (stat fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    return own, sum(sum(node_cpu_s(child)) for child in _child_pids(pid))


def _messages(scene, stamp_ns: int) -> tuple:
    header = Header(stamp=conversions.ns_to_stamp(stamp_ns), frame_id=FRAME_ID)
    depth_mm = np.where(np.isfinite(scene.depth_m), np.round(scene.depth_m * 1000.0), 0).astype(np.uint16)
    return (
        header,
        conversions.array_to_image_msg(scene.rgb, "rgb8", header),
        conversions.intrinsics_to_camera_info(scene.intrinsics, header),
        conversions.array_to_image_msg(depth_mm, "16UC1", header),
        conversions.array_to_image_msg(scene.labels.astype(np.uint8), "mono8", header),
    )


def _pipeline_counts(client: PerceptionClient, newer_than_ns: int, timeout_s: float = 10.0) -> dict[str, int]:
    """The frame counters (frames in, out, dropped and per reason) of the node's first /diagnostics message stamped
    after `newer_than_ns` (an overloaded node publishes them late); RuntimeError when none comes within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        with client._lock:
            latest = client.diagnostics[-1] if client.diagnostics else None
        if latest is not None and conversions.stamp_to_ns(latest.header.stamp) > newer_than_ns:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no /diagnostics from the node for {timeout_s:g} s: its frames cannot be accounted for")
        time.sleep(0.05)
    pipeline = next((v for name, v in client.diagnostic_values().items() if name.endswith("pipeline")), {})
    return {k: int(v) for k, v in pipeline.items() if k in ("frames in", "frames out", "frames dropped")
            or k.startswith("dropped (")}


def _restamp(messages: tuple, stamp_ns: int) -> None:
    stamp = conversions.ns_to_stamp(stamp_ns)
    for msg in messages[1:]:
        msg.header.stamp = stamp


def bench_sequence(n_objects: int, n_frames: int = 30, seed: int = 4,
                   layout: str | None = None) -> tuple[list[SyntheticScene], str]:
    """The rendered sequence bench-node plays, and its layout (None: random up to 5 objects, grid above)."""
    if not 1 <= n_objects <= len(OBJECT_NAMES):
        raise ValueError(f"bench-node places 1 to {len(OBJECT_NAMES)} objects, not {n_objects}")
    layout = layout or ("random" if n_objects <= 5 else "grid")
    distance_range = (GRID_DISTANCE_M, GRID_DISTANCE_M) if layout == "grid" else (0.5, 1.0)
    sequence = moving_object_sequence(OBJECT_NAMES[:n_objects], n_frames=n_frames, seed=seed, max_step_m=0.004,
                                      max_turn_deg=1.0, distance_range=distance_range, layout=layout)
    return sequence, layout


def run_node_benchmark(
    rate_hz: float = 30.0, n_objects: int = 5, seconds: float = 30.0, n_frames: int = 30, seed: int = 4,
    log_path: Path | None = None, progress: bool = True, params: dict | None = None, layout: str | None = None,
) -> NodeBenchResult:
    """Play a rendered sequence to a fresh node at `rate_hz` for `seconds`; see the module docstring."""
    say = print if progress else (lambda *a, **k: None)
    say(f"[bench-node] rendering {n_frames} frames with {n_objects} objects ...", flush=True)
    sequence, layout = bench_sequence(n_objects, n_frames, seed, layout)
    loop = sequence + sequence[-2:0:-1]  # forward then backward: continuous motion
    frames = [_messages(scene, 0) for scene in loop]
    namespace = "/sam3d_bench"
    process = start_node_process(namespace, params={"mesh_formats": "glb", **(params or {})}, log_path=log_path)
    client = PerceptionClient(namespace)
    result = NodeBenchResult(rate_hz, n_objects, seconds, layout)
    first = sequence[0]
    T_world_cam = invert_transform(first.T_cam_world)
    result.camera_distance_m = float(-T_world_cam[2, 3] / T_world_cam[2, 2])  # along the optical axis to the table
    pixels = np.bincount(first.labels.ravel(), minlength=n_objects + 1)[1:]
    result.object_pixels = (int(pixels.min()), int(np.median(pixels)))
    try:
        if not client.wait_for_node(60.0):
            raise RuntimeError(f"the node did not come up (log: {log_path})")
        stamp0 = time.time_ns()
        _restamp(frames[0], stamp0)
        for _ in range(5 + n_objects // 8):  # the node reconstructs max_reconstructions_per_frame (8) per frame
            client.publish(*frames[0])
            if client.wait_for_outputs(stamp0, n_objects=n_objects, timeout_s=10.0) is not None:
                break
        else:
            raise RuntimeError(f"the first frame's {n_objects} objects were never published (log: {log_path})")
        before = _pipeline_counts(client, time.time_ns())  # counts every send of the first frame
        say(f"[bench-node] all {n_objects} objects reconstructed; playing at {rate_hz:g} Hz for {seconds:g} s", flush=True)
        period_s = 1.0 / rate_hz
        sent: dict[int, float] = {}
        start = time.monotonic()
        cpu_start = node_cpu_s(process.pid)
        next_rss = start
        k = 1
        while True:
            now = time.monotonic()
            if now - start >= seconds:
                break
            if now >= next_rss:
                result.rss_mb.append((now - start, *node_rss_mb(process.pid)))
                next_rss += 1.0
            stamp = stamp0 + k * int(period_s * 1e9)
            messages = frames[k % len(frames)]
            _restamp(messages, stamp)
            sent[stamp] = time.monotonic()
            client.publish(*messages)
            k += 1
            delay = start + k * period_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - start
        cpu_end = node_cpu_s(process.pid)
        result.cpu_s = (cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1])
        result.cpu_wall_s = elapsed
        last_sent_ns = time.time_ns()
        time.sleep(1.5)  # let the last frames come back
        result.rss_mb.append((time.monotonic() - start, *node_rss_mb(process.pid)))
        result.published = len(sent)
        result.achieved_rate_hz = len(sent) / elapsed
        with client._lock:
            for stamp, sent_s in sent.items():
                out = client.outputs.get(stamp)
                if out is not None and out.tf_received_s is not None and len(out.transforms) >= n_objects:
                    result.with_tf += 1
                    result.latencies_ms.append((out.tf_received_s - sent_s) * 1000.0)
                    result.frame_sent_s.append(sent_s)
            first_add_s: dict[str, float] = {}  # object id -> its first ADD's time since start
            for t, msg in zip(client.collision_received_s, client.collision_objects):
                if msg.operation == CollisionObject.ADD and t >= start:
                    result.mesh_adds_s.append(t)
                    first_add_s.setdefault(str(msg.id), t - start)
            result.objects_fused = len(first_add_s)
            if len(first_add_s) >= n_objects:
                result.fusion_warm_s = max(first_add_s.values())
        after = _pipeline_counts(client, last_sent_ns + int(0.5e9))  # minus the sends of the first frame
        values = client.diagnostic_values()  # the rest from the same fresh /diagnostics
        pipeline = next((v for name, v in values.items() if name.endswith("pipeline")), {})
        worker = next((v for name, v in values.items() if name.endswith("reconstruction")), {})
        counts = {key: value - before.get(key, 0) for key, value in after.items()}
        result.node_frames_in = counts.get("frames in", 0)
        result.node_frames_out = counts.get("frames out", 0)
        result.node_frames_dropped = counts.get("frames dropped", 0)
        result.node_drop_reasons = {k: v for k, v in counts.items() if k.startswith("dropped (")}
        result.reconstructions = int(worker.get("objects reconstructed", 0))
        fusion = next((v for name, v in values.items() if name.endswith("fusion")), None)
        if fusion is not None:
            result.fusion = {k: float(fusion[k]) for k in ("views integrated", "views skipped", "fused meshes installed",
                                                           "memory MB (all objects)") if k in fusion}
        if "marker arrays sent (every object)" in pipeline:
            result.marker_arrays = (int(pipeline["marker arrays sent (changed objects only)"]),
                                    int(pipeline["marker arrays sent (every object)"]))
            result.marker_send_s = float(pipeline.get("marker arrays build + send s (since start)", 0.0))
        if "total latency max ms (since start)" in pipeline:
            result.node_total_ms = (float(pipeline["total latency median ms"]), float(pipeline["total latency max ms (since start)"]))
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
    return result


def late_frames_near(latencies_ms: list[float], sent_s: list[float], events_s: list[float],
                     window_s: float = SWAP_WINDOW_S) -> tuple[int, int, float]:
    """Of the frames above the latencies' 95th percentile, how many were published within `window_s` of an event
    (e.g. a mesh swap's collision ADD), out of how many; and the share of all frames published that near one (what
    chance alone would give the late ones)."""
    latencies, sent = np.asarray(latencies_ms, dtype=float), np.asarray(sent_s, dtype=float)
    if len(latencies) == 0:
        return 0, 0, 0.0
    events = np.sort(np.asarray(events_s, dtype=float))
    near = np.zeros(len(sent), dtype=bool)
    if len(events):
        after = np.clip(np.searchsorted(events, sent), 0, len(events) - 1)
        before = np.clip(after - 1, 0, len(events) - 1)
        near = np.minimum(np.abs(events[after] - sent), np.abs(events[before] - sent)) <= window_s
    late = latencies > np.percentile(latencies, 95)
    return int(np.count_nonzero(near & late)), int(np.count_nonzero(late)), float(near.mean())


def format_node_bench(result: NodeBenchResult) -> str:
    """A report of one run with the targets (median <= 33 ms, p95 <= 60 ms, nothing lost silently, RSS flat)."""
    lat = np.array(result.latencies_ms) if result.latencies_ms else np.array([np.nan])
    median, p95 = float(np.median(lat)), float(np.percentile(lat, 95))
    lines = [
        f"node end-to-end latency (image publish -> TF receipt), {result.n_objects} tracked objects, 640x480 rgb8 + 16UC1 depth + mono8 masks",
        f"  {result.layout} layout, camera {result.camera_distance_m:.2f} m out, visible pixels per object in the first "
        f"frame: min {result.object_pixels[0]}, median {result.object_pixels[1]}",
        f"  published {result.published} frames in {result.seconds:g} s ({result.achieved_rate_hz:.1f} Hz achieved, {result.rate_hz:g} Hz asked)",
        f"  TF received for {result.with_tf}; the node received {result.node_frames_in} images and counted {result.node_frames_dropped} dropped "
        f"({', '.join(f'{k[9:-1]}: {v}' for k, v in result.node_drop_reasons.items())})",
        f"  the node published {result.node_frames_out}; silently lost by the node (neither published nor counted): "
        f"{result.silently_lost}",
        f"  published by the node but not received here with every object: {result.outputs_not_received}; "
        f"reconstructions: {result.reconstructions} (one per object unless a fit degrades)",
        f"  latency median {median:.1f} ms, p95 {p95:.1f} ms, max {float(np.max(lat)):.1f} ms",
    ]
    if result.node_total_ms is not None:
        lines.append(f"  inside the node (frame taken -> published): median {result.node_total_ms[0]:.1f} ms (last 300 frames), "
                     f"max {result.node_total_ms[1]:.1f} ms")
    if result.marker_arrays is not None:
        lines.append(f"  ~/markers arrays sent (since start): {result.marker_arrays[0]} with the changed objects only, "
                     f"{result.marker_arrays[1]} with every object; {result.marker_send_s:.2f} s building and sending them")
    if result.cpu_s is not None and result.cpu_wall_s > 0:
        node_s, children_s = result.cpu_s
        per_frame = f"{node_s * 1000.0 / result.node_frames_out:.1f} ms per frame it published" if result.node_frames_out else "no frame published"
        lines.append(f"  CPU while playing: node {node_s:.1f} s ({100.0 * node_s / result.cpu_wall_s:.0f} % of one core; {per_frame}), "
                     f"child processes (fusion) {children_s:.1f} s ({100.0 * children_s / result.cpu_wall_s:.0f} %)")
    if result.fusion:
        lines.append("  fusion (since start): " + ", ".join(f"{k} {v:g}" for k, v in result.fusion.items()))
    if result.mesh_adds_s and len(result.frame_sent_s) == len(result.latencies_ms):
        near_late, late, near_share = late_frames_near(result.latencies_ms, result.frame_sent_s, result.mesh_adds_s)
        lines.append(f"  mesh installs while playing (collision ADDs received): {len(result.mesh_adds_s)}; frames above "
                     f"the p95 published within {SWAP_WINDOW_S:g} s of one: {near_late} of {late} (all frames: "
                     f"{100.0 * near_share:.1f} % were)")
    growth = None
    if len(result.rss_mb) >= 3:
        totals = [(t, node + children) for t, node, children in result.rss_mb]
        # Warm-up: the first seconds (imports, first allocations); with fusion on, until every object's first fused
        # mesh is in: its model's grid (bounded by the voxel budget) and its fused mesh's outputs are then allocated,
        # and what grows after that is growth (a leak would go on growing).
        warm_s = min(30.0, 0.1 * result.seconds)
        warm_note = ""
        if result.fusion:
            if result.fusion_warm_s is not None:
                warm_s = max(warm_s, result.fusion_warm_s)
                warm_note = f" (every object's first fused mesh in at {result.fusion_warm_s:.0f} s)"
            else:
                warm_note = (f" (fusion warm-up not over by the end: {result.objects_fused} of {result.n_objects} objects "
                             f"had a fused mesh; counted from {warm_s:.0f} s)")
        warm_t, warm = next(((t, mb) for t, mb in totals if t >= warm_s), totals[1])
        growth = totals[-1][1] - warm
        (_, node0, children0), (_, node1, children1) = result.rss_mb[0], result.rss_mb[-1]
        lines.append(f"  node + child processes RSS: {totals[0][1]:.0f} MB at start, {warm:.0f} MB after warm-up at "
                     f"{warm_t:.0f} s{warm_note}, {totals[-1][1]:.0f} MB at the end {totals[-1][0]:.0f} s (growth "
                     f"{growth:+.0f} MB over {totals[-1][0] - warm_t:.0f} s); node {node0:.0f} -> {node1:.0f} MB, "
                     f"child processes (fusion) {children0:.0f} -> {children1:.0f} MB")
    verdict = lambda ok: "PASS" if ok else "FAIL"
    lines.append(f"targets: median {median:.1f} ms (<= 33): {verdict(median <= 33)}; p95 {p95:.1f} ms (<= 60): {verdict(p95 <= 60)}; "
                 f"silently lost {result.silently_lost} (= 0): {verdict(result.silently_lost == 0)}")
    if growth is not None:
        window_s = totals[-1][0] - warm_t
        judged = verdict(growth < 50) if window_s >= MIN_GROWTH_WINDOW_S else \
            f"not judged (only {window_s:.0f} s after warm-up; run with more --seconds)"
        lines.append(f"         memory growth {growth:+.0f} MB (< 50 after warm-up): {judged}")
    return "\n".join(lines)
