"""Undistorting a distorted camera's images and boxes onto the pinhole image of the same K."""
import numpy as np
import pytest

from sam3d_ros.geometry.distortion import Distortion, Undistorter

K = np.array([[400.0, 0.0, 319.5], [0.0, 400.0, 239.5], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 640, 480
LENSES = [
    Distortion("plumb_bob", (-0.3, 0.09, 0.001, -0.001, 0.0)),
    Distortion("rational_polynomial", (-0.25, 0.06, 0.0005, 0.0, 0.0, 0.05, 0.0, 0.01)),
    Distortion("equidistant", (0.02, -0.01, 0.002, 0.0)),
]


def test_distortion_from_camera_info():
    assert Distortion.from_camera_info("plumb_bob", [0.0] * 5) is None
    assert Distortion.from_camera_info("", []) is None  # uncalibrated driver: nothing to undistort
    assert Distortion.from_camera_info("weird_model", [0.0, 0.0]) is None
    assert Distortion.from_camera_info("plumb_bob", [-0.1, 0.01, 0.0, 0.0]).coefficients == (-0.1, 0.01, 0.0, 0.0, 0.0)
    assert Distortion.from_camera_info("equidistant", [0.0] * 4) is not None  # still the fisheye projection
    with pytest.raises(ValueError, match="distortion_model 'weird_model' with D = \\[0.1\\] is not supported"):
        Distortion.from_camera_info("weird_model", [0.1])
    with pytest.raises(ValueError, match="takes at most 5 D values, got 8"):
        Distortion.from_camera_info("plumb_bob", [0.1] * 8)
    with pytest.raises(ValueError, match="not finite"):
        Distortion.from_camera_info("plumb_bob", [float("nan")] * 5)


def _dots(centres: np.ndarray) -> np.ndarray:
    """A dark image with a bright 5x5 dot at each (u, v) pixel of the pinhole image."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for u, v in np.rint(centres).astype(int):
        image[v - 2:v + 3, u - 2:u + 3] = 255
    return image


def _distorted(image: np.ndarray, lens: Distortion, fill) -> np.ndarray:
    """What the distorted camera sees of a pinhole image (nearest neighbour)."""
    u, v = np.meshgrid(np.arange(WIDTH, dtype=float), np.arange(HEIGHT, dtype=float))
    source = np.rint(lens.undistort_points(np.column_stack([u.ravel(), v.ravel()]), K)).astype(int)
    inside = (source[:, 0] >= 0) & (source[:, 0] < WIDTH) & (source[:, 1] >= 0) & (source[:, 1] < HEIGHT)
    out = np.full((HEIGHT * WIDTH,) + image.shape[2:], fill, dtype=image.dtype)
    out[inside] = image[source[inside, 1], source[inside, 0]]
    return out.reshape(image.shape)


def _centroids(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    found = []
    for u, v in np.rint(centres).astype(int):
        window = image[v - 12:v + 13, u - 12:u + 13].astype(float)
        rows, cols = np.nonzero(window > 127)
        weights = window[rows, cols]
        found.append([u - 12 + np.average(cols, weights=weights), v - 12 + np.average(rows, weights=weights)])
    return np.array(found)


@pytest.mark.parametrize("lens", LENSES, ids=lambda lens: lens.model)
def test_points_map_back_and_forth(lens):
    points = np.random.default_rng(0).uniform([0, 0], [WIDTH, HEIGHT], (500, 2))
    distorted = lens.distort_points(points, K)
    assert np.abs(distorted - points).max() > 5  # the lens moves points
    np.testing.assert_allclose(lens.undistort_points(distorted, K), points, atol=1e-3)


@pytest.mark.parametrize("lens", LENSES, ids=lambda lens: lens.model)
def test_undistorted_images_show_every_point_where_the_pinhole_camera_does(lens):
    centres = np.array([[u, v] for u in (60, 180, 320, 460, 580) for v in (50, 150, 240, 330, 430)], float)
    pinhole = _dots(centres)
    distorted = _distorted(pinhole, lens, 0)
    undistorter = Undistorter(lens, K, WIDTH, HEIGHT)
    moved = np.linalg.norm(lens.distort_points(centres, K) - centres, axis=1)
    assert moved.max() > 10  # the corner dots are elsewhere in the distorted image
    colour = undistorter.colour(distorted)
    assert colour.dtype == np.uint8 and colour.shape == pinhole.shape
    np.testing.assert_allclose(_centroids(colour[:, :, 0], centres), centres, atol=0.6)
    # Labels and depth: nearest neighbour, so only values of the input appear; outside the distorted view: the fill.
    labels = np.zeros((HEIGHT, WIDTH), np.int64)
    for index, (u, v) in enumerate(np.rint(centres).astype(int)):
        labels[v - 6:v + 7, u - 6:u + 7] = index + 1
    undistorted_labels = undistorter.nearest(_distorted(labels, lens, 0), 0)
    assert set(np.unique(undistorted_labels)) <= set(np.unique(labels))
    for index, (u, v) in enumerate(np.rint(centres).astype(int)):
        assert (undistorted_labels[v - 4:v + 5, u - 4:u + 5] == index + 1).all(), (u, v)
    depth = np.where(labels > 0, 0.5 + labels * 0.01, np.nan).astype(np.float32)
    undistorted_depth = undistorter.nearest(_distorted(depth, lens, np.nan), np.nan)
    assert undistorted_depth.dtype == np.float32
    same = np.isfinite(undistorted_depth)
    assert set(np.unique(undistorted_depth[same])) <= set(np.unique(depth[np.isfinite(depth)]))
    objects = undistorted_labels > 0  # depth and labels come from the same pixels
    np.testing.assert_array_equal(undistorted_depth[objects], (0.5 + undistorted_labels[objects] * 0.01).astype(np.float32))
    assert np.isnan(undistorted_depth[~objects]).all()


@pytest.mark.parametrize("lens", LENSES, ids=lambda lens: lens.model)
def test_a_box_of_the_distorted_image_bounds_the_object_once_undistorted(lens):
    undistorter = Undistorter(lens, K, WIDTH, HEIGHT)
    for box in ((20, 20, 160, 120), (300, 200, 340, 280), (480, 330, 630, 470)):
        x0, y0, x1, y1 = box
        outline = np.array([[x, y] for x in np.linspace(x0, x1, 50) for y in (y0, y1)]
                           + [[x, y] for y in np.linspace(y0, y1, 50) for x in (x0, x1)])
        undistorted = lens.undistort_points(outline, K)  # the pinhole outline of what the distorted box shows
        ux0, uy0, ux1, uy1 = undistorter.box(box)
        np.testing.assert_allclose([ux0, uy0, ux1, uy1], [*undistorted.min(axis=0), *undistorted.max(axis=0)], atol=0.5)


def test_images_of_another_size_are_refused():
    undistorter = Undistorter(LENSES[0], K, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="depth image is 320x240 but the camera_info is 640x480"):
        undistorter.nearest(np.zeros((240, 320), np.float32), np.nan, "depth image")
    assert undistorter.matches(LENSES[0], K, WIDTH, HEIGHT) and not undistorter.matches(LENSES[1], K, WIDTH, HEIGHT)
