"""Lens distortion of a camera (ROS CameraInfo `distortion_model` + `d`): undistorting images and boxes to K.

The node works on pinhole images (CameraIntrinsics). A camera driver's `image_raw` is distorted; its CameraInfo
says how. `Undistorter` resamples such images onto the pinhole image of the same K (colour bilinear, depth and label
images nearest-neighbour, so no depth or label value is invented between two surfaces) and maps detection boxes.
The maps are built once per camera (model, coefficients, K, size) and reused: per frame the cost is one remap.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: distortion_model -> largest number of coefficients (plumb_bob: k1 k2 p1 p2 k3; rational_polynomial: k1 k2 p1 p2
#: k3 k4 k5 k6; equidistant: k1 k2 k3 k4, OpenCV's fisheye model). Shorter lists are padded with zeros.
MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_BOX_EDGE_SAMPLES = 9  # points per box side: a distorted straight edge is curved, its corners alone may not bound it


@dataclass(frozen=True)
class Distortion:
    """A distortion model and its coefficients (padded to the model's length)."""

    model: str
    coefficients: tuple[float, ...]

    @classmethod
    def from_camera_info(cls, model: str, coefficients) -> "Distortion | None":
        """The distortion of CameraInfo's `distortion_model` and `d`; None when there is none (D empty or all zero,
        except for equidistant, whose projection differs from the pinhole one even then).

        Raises ValueError, one line, for an unknown model with non-zero coefficients, too many or non-finite ones."""
        d = np.asarray(list(coefficients), dtype=np.float64).reshape(-1)
        if not np.isfinite(d).all():
            raise ValueError(f"camera_info D {d.tolist()} is not finite")
        model = str(model)
        if not d.any() and model != "equidistant":  # a zero fisheye D still is the fisheye projection
            return None
        length = MODELS.get(model)
        if length is None:
            raise ValueError(
                f"camera_info distortion_model '{model}' with D = {d.tolist()} is not supported "
                f"({', '.join(MODELS)}); undistort the images first (image_proc) and set undistort: false"
            )
        if d.size > length:
            raise ValueError(f"camera_info distortion_model '{model}' takes at most {length} D values, got {d.size}")
        return cls(model, tuple(np.pad(d, (0, length - d.size)).tolist()))

    def undistort_points(self, points_px: np.ndarray, K: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixels -> (N, 2) pixels of the pinhole image with camera matrix K."""
        points = np.asarray(points_px, dtype=np.float64).reshape(-1, 1, 2)
        D = np.asarray(self.coefficients, dtype=np.float64)
        if self.model == "equidistant":
            out = cv2.fisheye.undistortPoints(points, K, D, R=np.eye(3), P=K)
        else:
            # Iterative inversion: enough iterations that strong wide-angle distortion converges to < 0.01 px.
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9)
            if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
                out = cv2.undistortPointsIter(points, K, D, np.eye(3), K, criteria)
            else:  # OpenCV 5: undistortPoints takes the criteria
                out = cv2.undistortPoints(points, K, D, R=np.eye(3), P=K, criteria=criteria)
        return out.reshape(-1, 2)

    def distort_points(self, points_px: np.ndarray, K: np.ndarray) -> np.ndarray:
        """(N, 2) pixels of the pinhole image with camera matrix K -> (N, 2) pixels of the distorted image."""
        points = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
        rays = np.column_stack([(points[:, 0] - K[0, 2]) / K[0, 0], (points[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(points))])
        D = np.asarray(self.coefficients, dtype=np.float64)
        zero = np.zeros(3)
        if self.model == "equidistant":
            out, _ = cv2.fisheye.projectPoints(rays.reshape(-1, 1, 3), zero, zero, K, D)
        else:
            out, _ = cv2.projectPoints(rays.reshape(-1, 1, 3), zero, zero, K, D)
        return out.reshape(-1, 2)


class Undistorter:
    """Undistorts the images and boxes of one camera onto the pinhole image with the same K and size."""

    def __init__(self, distortion: Distortion, K: np.ndarray, width: int, height: int) -> None:
        self.distortion = distortion
        self.K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        self.width, self.height = int(width), int(height)
        D = np.asarray(distortion.coefficients, dtype=np.float64)
        size = (self.width, self.height)
        if distortion.model == "equidistant":
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(self.K, D, np.eye(3), self.K, size, cv2.CV_32FC1)
        else:
            map_x, map_y = cv2.initUndistortRectifyMap(self.K, D, np.eye(3), self.K, size, cv2.CV_32FC1)
        # Bilinear colour: OpenCV's fixed-point maps (the fastest remap). Nearest: the index of the source pixel
        # nearest to where each output pixel comes from, -1 where that lies outside the image (works for any dtype).
        self._linear_maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        col, row = np.rint(map_x).astype(np.int64), np.rint(map_y).astype(np.int64)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        self._nearest = np.where(inside, row * self.width + col, 0).reshape(-1)
        self._outside = ~inside.reshape(-1)
        self._any_outside = bool(self._outside.any())

    def matches(self, distortion: Distortion, K: np.ndarray, width: int, height: int) -> bool:
        """Whether this undistorter is the one of that camera."""
        return (distortion == self.distortion and (int(width), int(height)) == (self.width, self.height)
                and np.array_equal(np.asarray(K, dtype=np.float64).reshape(3, 3), self.K))

    def _check_size(self, image: np.ndarray, what: str) -> None:
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"{what} is {image.shape[1]}x{image.shape[0]} but the camera_info is {self.width}x{self.height}")

    def colour(self, rgb: np.ndarray) -> np.ndarray:
        """Bilinear resampling of a colour image (black outside the distorted image)."""
        self._check_size(rgb, "colour image")
        return cv2.remap(rgb, *self._linear_maps, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def nearest(self, image: np.ndarray, fill, what: str = "image") -> np.ndarray:
        """Nearest-neighbour resampling of a depth or label image (any dtype); `fill` outside the distorted image."""
        self._check_size(image, what)
        out = np.ascontiguousarray(image).reshape(-1)[self._nearest]
        if self._any_outside:
            out[self._outside] = fill
        return out.reshape(image.shape)

    def box(self, bbox_xyxy: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """The axis-aligned box bounding a distorted image's box once undistorted (its border sampled, not only the
        corners: a straight edge of the distorted image is curved in the pinhole one)."""
        x0, y0, x1, y1 = (float(v) for v in bbox_xyxy)
        t = np.linspace(0.0, 1.0, _BOX_EDGE_SAMPLES)
        xs, ys = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        border = np.concatenate([
            np.column_stack([xs, np.full_like(xs, y0)]), np.column_stack([xs, np.full_like(xs, y1)]),
            np.column_stack([np.full_like(ys, x0), ys]), np.column_stack([np.full_like(ys, x1), ys]),
        ])
        undistorted = self.distortion.undistort_points(border, self.K)
        (ux0, uy0), (ux1, uy1) = undistorted.min(axis=0), undistorted.max(axis=0)
        return float(ux0), float(uy0), float(ux1), float(uy1)
