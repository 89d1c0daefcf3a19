"""single_threaded: Open3D on one thread inside the block, the limit there was restored after it."""
import open3d as o3d
import pytest

from sam3d_ros.geometry.open3d_threads import single_threaded


def test_one_thread_inside_and_the_previous_limit_after_even_on_error():
    before = o3d.utility.get_max_threads()
    with single_threaded():
        assert o3d.utility.get_max_threads() == 1
    assert o3d.utility.get_max_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with single_threaded():
            raise RuntimeError("inside")
    assert o3d.utility.get_max_threads() == before
