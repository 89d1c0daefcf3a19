"""How test/tools/data/motorcycle_mask.png was made (run once by hand; the test reads the PNG).

The Middlebury 2014 "Motorcycle" frame as scikit-image ships it (`skimage.data.stereo_motorcycle()`, 741x500, the
calibration in its docstring valid at that size). The mask is
1. a polygon drawn by hand around the motorcycle on the left image (POLYGON_XY, pixel corners, generous), AND
2. metric depth Z = f * B / (d + doffs) between 1.8 and 3.1 m (the bench and shelves behind it are >= 3.2 m), AND
3. more than 3 cm above the floor (the floor plane fitted by RANSAC to the valid pixels outside the polygon in the
   lowest 150 rows),
then a morphological opening (3x3) and the largest connected component. Label 1 = motorcycle, 0 = background.
"""
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
from skimage.data import stereo_motorcycle

F_PX, CX, CY, DOFFS_PX, BASELINE_M = 994.978, 311.193, 254.877, 31.086, 0.193001
POLYGON_XY = [(85, 190), (135, 140), (330, 110), (400, 100), (490, 15), (540, 15), (590, 110), (600, 160), (560, 220),
              (640, 280), (695, 360), (690, 430), (620, 460), (520, 440), (470, 380), (340, 445), (310, 440),
              (270, 390), (200, 410), (120, 370), (110, 300), (95, 250)]


def metric_depth() -> np.ndarray:
    _, _, disparity = stereo_motorcycle()
    depth_m = F_PX * BASELINE_M / (disparity.astype(np.float64) + DOFFS_PX)
    depth_m[~np.isfinite(disparity)] = np.nan
    return depth_m


def points_image(depth_m: np.ndarray) -> np.ndarray:
    """(H, W, 3) optical-frame points of the depth image (NaN where it has none)."""
    rows, cols = np.mgrid[0:depth_m.shape[0], 0:depth_m.shape[1]]
    return np.dstack([(cols - CX) / F_PX * depth_m, (rows - CY) / F_PX * depth_m, depth_m])


def floor_plane(depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The floor (a, b, c, d), normal toward the camera, from the valid pixels outside the polygon in the lowest 150
    rows; and the polygon's mask."""
    height, width = depth_m.shape
    polygon = np.zeros((height, width), np.uint8)
    cv2.fillPoly(polygon, [np.array(POLYGON_XY, np.int32)], 1)
    rows = np.mgrid[0:height, 0:width][0]
    floor_px = (polygon == 0) & (rows >= height - 150) & np.isfinite(depth_m)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_image(depth_m)[floor_px]))
    o3d.utility.random.seed(0)
    plane, _ = cloud.segment_plane(0.01, 3, 500)
    return np.asarray(plane) * (1 if plane[3] > 0 else -1), polygon


def main() -> None:
    depth_m = metric_depth()
    plane, polygon = floor_plane(depth_m)
    points = points_image(depth_m)
    above = np.nan_to_num(points @ plane[:3] + plane[3], nan=0.0) > 0.03
    mask = (polygon == 1) & (np.nan_to_num(depth_m) > 1.8) & (np.nan_to_num(depth_m) < 3.1) & above
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    out = Path(__file__).with_name("motorcycle_mask.png")
    cv2.imwrite(str(out), (labels == largest).astype(np.uint8))
    print(f"{out}: {(labels == largest).sum()} pixels, floor plane {np.round(plane, 4)}")


if __name__ == "__main__":
    main()
