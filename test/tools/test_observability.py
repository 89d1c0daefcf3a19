"""What views can show of an object, checked against geometry worked out by hand: a disc on a post (a mushroom, the
shape of a wing or a plate's rim over the table), seen by a ring of cameras far away."""
import math

import numpy as np
import pytest
import trimesh

from sam3d_ros.tools.observability import CameraView, Observability
from sam3d_ros.tools.synthetic import default_intrinsics, look_at_camera, support_plane_in_camera

DISC_R, DISC_BOTTOM, DISC_TOP, POST_R = 0.05, 0.04, 0.05, 0.01  # metres


def _mushroom() -> trimesh.Trimesh:
    profile = np.array([[0, 0], [POST_R, 0], [POST_R, DISC_BOTTOM], [DISC_R, DISC_BOTTOM], [DISC_R, DISC_TOP], [0, DISC_TOP]])
    mesh = trimesh.creation.revolve(profile, sections=128)
    assert mesh.is_watertight and mesh.volume > 0
    return mesh


def _ring(elevation_deg: float) -> list[CameraView]:
    """72 cameras around the object, 3 m away (rays nearly parallel), every 5 degrees of azimuth."""
    views = []
    for azimuth in range(0, 360, 5):
        T_cam_world = look_at_camera(3.0, elevation_deg, azimuth, (0.0, 0.0, 0.025))
        views.append(CameraView(T_cam_world, default_intrinsics(), support_plane_in_camera(T_cam_world)))
    return views


def test_the_space_under_a_disc_that_no_view_sees_is_added_to_the_views_hull():
    """From 35 degrees up, a ray to a point under the disc leaves the disc's footprint only if it is within
    (bottom height - z) / tan(35) of the rim: the rest of the space under the disc (a cone around the post) no camera
    sees. Its volume, pi tan(el) / 3 (R^3 - r^3) - pi r^2 (R - r) tan(el), is what the views' hull adds to the object;
    seen from 3 degrees up almost nothing is hidden."""
    mesh = _mushroom()
    tan_el = math.tan(math.radians(35.0))
    hidden_m3 = (math.pi * tan_el / 3 * (DISC_R**3 - POST_R**3) - math.pi * POST_R**2 * (DISC_R - POST_R) * tan_el)
    added_m3 = Observability(mesh, _ring(35.0)).views_hull().volume - mesh.volume
    assert added_m3 == pytest.approx(hidden_m3, rel=0.12), (added_m3 * 1e6, hidden_m3 * 1e6)
    added_low_m3 = Observability(mesh, _ring(3.0)).views_hull().volume - mesh.volume
    assert abs(added_low_m3) < 0.12 * hidden_m3, added_low_m3 * 1e6


def test_the_seen_surface_is_the_top_the_rim_and_the_foot_of_the_post():
    """From 35 degrees up: the disc's top and rim, and the post up to the height where the disc's shadow begins;
    never the disc's underside nor the post's foot on the table."""
    mesh = _mushroom()
    post_seen_height = DISC_BOTTOM - (DISC_R - POST_R) * math.tan(math.radians(35.0))
    seen_area = math.pi * DISC_R**2 + 2 * math.pi * DISC_R * (DISC_TOP - DISC_BOTTOM) + 2 * math.pi * POST_R * post_seen_height
    fraction = Observability(mesh, _ring(35.0)).seen_surface_fraction()
    assert fraction == pytest.approx(seen_area / mesh.area, abs=0.03), (fraction, seen_area / mesh.area)


def test_one_view_sees_less_than_a_ring_and_needs_the_object_in_its_image():
    mesh = _mushroom()
    ring = Observability(mesh, _ring(35.0)).seen_surface_fraction()
    one = Observability(mesh, _ring(35.0)[:1]).seen_surface_fraction()
    assert 0.2 < one < ring - 0.1
    away = look_at_camera(3.0, 35.0, 0.0, (5.0, 0.0, 0.0))  # looking 5 m beside the object: it is not in the image
    assert Observability(mesh, [CameraView(away, default_intrinsics(), None)]).seen_surface_fraction() == 0.0
    with pytest.raises(ValueError, match="at least one camera view"):
        Observability(mesh, [])
