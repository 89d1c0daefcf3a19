"""Pinhole camera model of the ROS optical frame (REP 103: +X right, +Y down, +Z forward)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of a rectified image; pixel (u, v) = (column, row), integer at the pixel centre."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:
        """3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> "CameraIntrinsics":
        """Build from a 3x3 camera matrix."""
        K = np.asarray(K, dtype=float).reshape(3, 3)
        return cls(int(width), int(height), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))

    def validate(self) -> None:
        """Raise ValueError when the intrinsics cannot describe a camera."""
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size {self.width}x{self.height} is empty")
        if not (np.isfinite([self.fx, self.fy, self.cx, self.cy]).all() and self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera focal lengths fx={self.fx}, fy={self.fy} are not positive")

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) rays in the optical frame with z = 1 for every pixel."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=-1)

    def backproject(self, depth_m: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Points of valid depth pixels (inside `mask` if given) as `points_cam` (N, 3) and their (row, col) (N, 2)."""
        valid = np.isfinite(depth_m) & (depth_m > 0)
        if mask is not None:
            valid &= mask
        rows, cols = np.nonzero(valid)
        z = depth_m[rows, cols].astype(np.float64)
        points_cam = np.stack([(cols - self.cx) * z / self.fx, (rows - self.cy) * z / self.fy, z], axis=-1)
        return points_cam, np.stack([rows, cols], axis=-1)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2) as (u, v) of points in the optical frame; points behind the camera give NaN."""
        points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        z = np.where(points_cam[:, 2] > 1e-9, points_cam[:, 2], np.nan)
        return np.stack([self.fx * points_cam[:, 0] / z + self.cx, self.fy * points_cam[:, 1] / z + self.cy], axis=-1)
