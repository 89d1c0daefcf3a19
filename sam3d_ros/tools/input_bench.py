"""`sam3d-ros bench-inputs`: what decoding compressed inputs and undistorting a frame cost the node per frame.

A 640x480 rendered scene is encoded as image_transport's plugins publish it (jpeg colour at quality 95, compressedDepth
png 16UC1 and 32FC1) and decoded the node's way; the same frame is undistorted with a wide-angle plumb_bob lens (colour
bilinear, depth and a label image nearest-neighbour). A benchmark, not a test: it prints numbers.
"""
from __future__ import annotations

import timeit

import numpy as np

from sam3d_ros.geometry.distortion import Distortion, Undistorter
from sam3d_ros.ros import conversions
from sam3d_ros.tools.synthetic import random_tabletop_scene

LENS = Distortion("plumb_bob", (-0.3, 0.09, 0.001, -0.001, 0.0))


def run_input_benchmark(repeats: int = 5, number: int = 20, width: int = 640, height: int = 480) -> list[tuple[str, float]]:
    """(step, best-of-`repeats` milliseconds per call) for each per-frame input step, and the once-per-camera maps."""
    from sam3d_ros.tools.synthetic import default_intrinsics

    scene = random_tabletop_scene(11, n_objects=3, intrinsics=default_intrinsics(width, height))
    K = scene.intrinsics.K
    undistorter = Undistorter(LENS, K, width, height)
    jpeg = conversions.rgb_to_compressed_msg(scene.rgb, "rgb8", "jpeg")
    millimetres = np.where(np.isfinite(scene.depth_m), np.round(scene.depth_m * 1000), 0).astype(np.uint16)
    depth16 = conversions.depth_to_compressed_depth_msg(millimetres, "16UC1")
    depth32 = conversions.depth_to_compressed_depth_msg(scene.depth_m, "32FC1")
    labels = scene.labels.astype(np.int64)
    steps = [
        ("decode compressed jpeg colour", lambda: conversions.image_msg_to_rgb(jpeg)),
        ("decode compressedDepth 16UC1", lambda: conversions.depth_msg_to_metres(depth16)),
        ("decode compressedDepth 32FC1", lambda: conversions.depth_msg_to_metres(depth32)),
        ("undistort colour (bilinear)", lambda: undistorter.colour(scene.rgb)),
        ("undistort depth (nearest)", lambda: undistorter.nearest(scene.depth_m, np.nan)),
        ("undistort label image (nearest)", lambda: undistorter.nearest(labels, 0)),
        ("undistortion maps (once per camera)", lambda: Undistorter(LENS, K, width, height)),
    ]
    return [(name, min(timeit.repeat(step, number=number, repeat=repeats)) / number * 1e3) for name, step in steps]


def format_input_benchmark(rows: list[tuple[str, float]], width: int = 640, height: int = 480) -> str:
    """One line per step: its name and milliseconds."""
    lines = [f"per-frame input cost at {width}x{height} (best of repeats, ms):"]
    lines += [f"  {name:<38} {ms:7.2f}" for name, ms in rows]
    return "\n".join(lines)
