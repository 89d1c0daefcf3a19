"""explain_depth: the silhouette and the free space a camera saw decide how well a mesh explains a depth image."""
import numpy as np
import trimesh

from sam3d_ros.geometry.depth_explanation import explain_depth
from sam3d_ros.geometry.transforms import make_transform
from sam3d_ros.tools.synthetic import default_intrinsics


def _box_view(front_z=1.0, size=0.1):
    """A camera 1 m from a 10 cm cube's front face in front of a wall at 2 m: depth and the cube's mask."""
    intrinsics = default_intrinsics(160, 120)
    rows, cols = np.mgrid[0:120, 0:160]
    x = (cols - intrinsics.cx) / intrinsics.fx
    y = (rows - intrinsics.cy) / intrinsics.fy
    depth = np.full((120, 160), 2.0, np.float32)
    inside = (np.abs(x * front_z) <= size / 2) & (np.abs(y * front_z) <= size / 2)
    depth[inside] = front_z
    return intrinsics, depth, inside


def test_the_right_box_explains_the_image_and_a_deeper_or_wider_one_less():
    intrinsics, depth, mask = _box_view()
    cube = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    T = make_transform(np.eye(3), np.array([0.0, 0.0, 1.05]))  # front face at 1.0 m
    right = explain_depth(cube, T, intrinsics, depth, mask)
    assert right.silhouette_iou > 0.9 and right.free_space_violation == 0.0 and right.score > 0.9
    # Twice as wide: covers the wall the camera saw at 2 m beside the cube.
    wide = explain_depth(trimesh.creation.box(extents=(0.2, 0.1, 0.1)), T, intrinsics, depth, mask)
    assert wide.free_space_violation > 0.3 and wide.score < right.score - 0.3
    # 5 cm nearer than the surface the camera saw: it blocks the view of the cube's own face.
    nearer = explain_depth(cube, make_transform(np.eye(3), np.array([0.0, 0.0, 1.0])), intrinsics, depth, mask)
    assert nearer.free_space_violation > 0.9 and nearer.score < 0.1
    # Where a nearer surface (an occluder at 0.5 m) hides it, the wide box may go on: no violation there.
    occluded = depth.copy()
    occluded[~mask] = 0.5
    assert explain_depth(trimesh.creation.box(extents=(0.2, 0.1, 0.1)), T, intrinsics, occluded, mask).free_space_violation == 0.0


def test_an_empty_mask_explains_nothing():
    intrinsics, depth, mask = _box_view()
    result = explain_depth(trimesh.creation.box(extents=(0.1, 0.1, 0.1)), np.eye(4), intrinsics, depth, np.zeros_like(mask))
    assert result.score == 0.0


def test_a_shape_going_on_beyond_the_image_is_not_charged_for_it():
    """A 2 m wide box seen through an image that shows only its middle (the image border cuts it on both sides):
    the whole box explains the image as well as a box that ends at the border; only what the camera saw counts."""
    intrinsics, _, _ = _box_view()
    half_view_m = 1.0 * (intrinsics.width / 2) / intrinsics.fx  # half the image width at 1 m
    depth = np.full((120, 160), 2.0, np.float32)
    y = (np.mgrid[0:120, 0:160][0] - intrinsics.cy) / intrinsics.fy
    mask = np.abs(y) <= 0.05
    depth[mask] = 1.0
    T = make_transform(np.eye(3), np.array([0.0, 0.0, 1.05]))
    whole = explain_depth(trimesh.creation.box(extents=(2.0, 0.1, 0.1)), T, intrinsics, depth, mask)
    cut = explain_depth(trimesh.creation.box(extents=(2 * half_view_m, 0.1, 0.1)), T, intrinsics, depth, mask)
    assert 2.0 > 2 * half_view_m + 0.5  # the box reaches well beyond both sides of the image
    assert whole.free_space_violation == 0.0 and whole.score > 0.9
    assert abs(whole.score - cut.score) < 0.02


def test_a_part_hidden_behind_a_nearer_occluder_does_not_count_against_the_silhouette():
    """The cube's lower half is hidden by an occluder at 0.5 m (its mask shows the upper half only): the whole cube
    explains the image as well as its seen half does; a cube twice as wide still loses on the wall beside it."""
    intrinsics, depth, mask = _box_view()
    rows = np.mgrid[0:120, 0:160][0]
    lower = rows >= intrinsics.cy
    depth[lower] = 0.5
    mask = mask & ~lower
    T = make_transform(np.eye(3), np.array([0.0, 0.0, 1.05]))
    whole = explain_depth(trimesh.creation.box(extents=(0.1, 0.1, 0.1)), T, intrinsics, depth, mask)
    assert whole.silhouette_iou > 0.9 and whole.score > 0.9
    wide = explain_depth(trimesh.creation.box(extents=(0.2, 0.1, 0.1)), T, intrinsics, depth, mask)
    assert wide.score < whole.score - 0.3
