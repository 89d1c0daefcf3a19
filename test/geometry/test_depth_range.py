"""The depth unit check the node and the CLI share: the median valid depth against the camera's working range."""
import numpy as np
import pytest

from sam3d_ros.geometry.depth_range import check_depth_range, depth_median_m, depth_range
from sam3d_ros.geometry.types import InputError


def _depth(median_m, shape=(48, 64)):
    depth = np.full(shape, median_m, np.float32)
    depth[:5] = np.nan  # invalid pixels do not count
    depth[-3:] = 1e6  # nor do a few far ones move the median
    return depth


def test_depth_inside_the_range_passes_and_outside_says_median_range_setting_and_hint():
    check_depth_range(_depth(0.8), (0.1, 10.0), "depth_range_m", "far hint", "near hint")
    with pytest.raises(InputError) as far:
        check_depth_range(_depth(800.0), (0.1, 10.0), "depth_range_m", "far hint", "near hint")
    assert str(far.value) == "depth median 800 m is beyond the working range 0.1-10 m (depth_range_m): far hint"
    with pytest.raises(InputError) as near:
        check_depth_range(_depth(0.002), (0.1, 10.0), "--depth-range", "far hint", "near hint")
    assert str(near.value) == "depth median 0.002 m is below the working range 0.1-10 m (--depth-range): near hint"


def test_a_few_valid_pixels_off_the_coarse_grid_still_count():
    depth = np.full((40, 40), np.nan, np.float32)
    depth[1, 1] = depth[2, 3] = 700.0  # not on the every-4th-pixel grid
    assert depth_median_m(depth) == pytest.approx(700.0)
    assert depth_median_m(np.full((8, 8), np.nan, np.float32)) is None


def test_depth_range_needs_0_le_min_lt_max():
    assert depth_range([0.1, 10]) == (0.1, 10.0)
    for bad in ([1.0, 0.5], [-1.0, 2.0], [0.1], "0.1-10", [0.1, float("nan")]):
        with pytest.raises(ValueError):
            depth_range(bad)
