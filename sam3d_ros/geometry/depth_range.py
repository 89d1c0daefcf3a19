"""Is a depth image in metres? Its median against the camera's working range (shared by the node and the CLI).

A depth image in the wrong unit (32FC1 holding millimetres, a 16-bit PNG in metres or at 5000 units per metre, a
label image given as depth) is still a valid image: without this check its objects come out hundreds of metres away,
or a millimetre from the lens, without a word. The median of the valid pixels is robust to the few far or near
pixels every real scene has. A unit error that keeps the median inside the range (a tabletop at 0.7 m read at 5000
units per metre lands at 3.5 m) is caught only by a range that fits the setup (e.g. 0.2-2 m for a tabletop camera).
"""
from __future__ import annotations

import math

import numpy as np

from sam3d_ros.geometry.types import InputError

#: Metres; most RGB-D cameras measure between these (RealSense D4xx, Azure Kinect, ZED, Orbbec).
DEFAULT_DEPTH_RANGE_M = (0.1, 10.0)
_STRIDE = 4  # the median of every 4th pixel in each direction: the same answer, 16x less work per frame


def depth_range(values) -> tuple[float, float]:
    """(min, max) metres from a 2-sequence; ValueError unless 0 <= min < max."""
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a depth range is [min, max] in metres, got {values!r}") from exc
    if not (low >= 0 and high > low) or math.isnan(high):
        raise ValueError(f"a depth range needs 0 <= min < max (metres), got [{low:g}, {high:g}]")
    return low, high


def depth_median_m(depth_m: np.ndarray) -> float | None:
    """Median (m) of the finite positive depth pixels (on a 4x coarser grid); None when there is none."""
    sample = np.asarray(depth_m)[::_STRIDE, ::_STRIDE]
    with np.errstate(invalid="ignore"):
        valid = sample[np.isfinite(sample) & (sample > 0)]
    if valid.size == 0:  # nothing on the coarse grid (a few valid pixels only): all of them
        with np.errstate(invalid="ignore"):
            valid = np.asarray(depth_m)[np.isfinite(depth_m) & (np.asarray(depth_m) > 0)]
    return float(np.median(valid)) if valid.size else None


def check_depth_range(
    depth_m: np.ndarray, range_m: tuple[float, float], range_setting: str, far_hint: str, near_hint: str
) -> None:
    """Raise InputError when the median valid depth lies outside `range_m`.

    The message says the median, the range and the setting that holds it (`range_setting`), then `far_hint` or
    `near_hint`: what the source of this depth must hold and what it probably holds instead, e.g.
    "depth median 612 m is beyond the working range 0.1-10 m (depth_range_m): 32FC1 depth must be metres; is it
    millimetres?"."""
    low, high = range_m
    median = depth_median_m(depth_m)
    if median is None or low <= median <= high:
        return
    where, hint = ("beyond", far_hint) if median > high else ("below", near_hint)
    raise InputError(f"depth median {median:.3g} m is {where} the working range {low:g}-{high:g} m ({range_setting}): {hint}")
