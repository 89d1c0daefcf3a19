"""Real data: the Middlebury 2014 "Motorcycle" frame through `sam3d-ros reconstruct`, with a hand-made mask and with
only a box.

Data: `skimage.data.stereo_motorcycle()` (scikit-image ships the frame 4x down-sampled, 741x500, with the
ground-truth disparity and the calibration valid at that size, from its docstring): f = 994.978 px,
cx = 311.193, cy = 254.877, doffs = 31.086 px, baseline = 193.001 mm; Z = f * B / (d + doffs). The mask
(test/tools/data/motorcycle_mask.png) was made by hand, see test/tools/data/make_motorcycle_mask.py: a polygon drawn around
the motorcycle AND depth 1.8-3.1 m AND more than 3 cm above the fitted floor plane.

The motorcycle is a Yamaha Maxim (badge on the side cover; 4-cylinder, shaft drive, 19" front and 16" rear cast
wheels): the XJ650 Maxim is 2165 mm long, 860 mm wide (handlebars), 1180 mm high (mirrors), wheelbase 1445 mm
(Yamaha's XJ650G/J service manual specifications, as reproduced at https://xjcd.org/book/export/html/474).

What this depth shows: with the dataset's calibration the motorcycle measures 1.44 m along its length in the
ground-truth depth itself (its points, before any reconstruction), and its 130/90-16 rear tyre (0.64 m) spans
about 0.46 m: the frame's metric depth puts the motorcycle at about 0.67 of its catalogue size (the calibration or
the down-sampled disparities, not the reconstruction; a reconstruction cannot be larger than the points it is given).
So the test checks what holds whatever that factor is:
- absolute size against the depth data: length within 8 % of the points' own extent, height (above the floor)
  within 10 %;
- proportions against the real motorcycle: length / height of the catalogue (2165 / 1180 without the mirrors the
  mask leaves out, so length / height between 1.5 and 2.0);
- distance: the centre at the mask's median ground-truth depth (within 0.15 m) and inside the mask's box;
- the run itself: exit status 0, one object, a watertight mesh.
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.reconstruction.files import write_camera_yaml
from test_cli import run_cli  # noqa: E402 - the same installed console script (test/tools is on sys.path)

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (requirements.txt) is not installed")
from make_motorcycle_mask import BASELINE_M, CX, CY, DOFFS_PX, F_PX, floor_plane, metric_depth  # noqa: E402

REAL_LENGTH_M, REAL_HEIGHT_M = 2.165, 1.180  # XJ650 Maxim, see the module docstring


@pytest.fixture(scope="module")
def motorcycle(tmp_path_factory):
    left, _, _ = skimage_data.stereo_motorcycle()
    depth_m = metric_depth()
    mask = cv2.imread(str(DATA / "motorcycle_mask.png"), cv2.IMREAD_UNCHANGED) > 0
    d = tmp_path_factory.mktemp("motorcycle")
    cv2.imwrite(str(d / "rgb.png"), cv2.cvtColor(left, cv2.COLOR_RGB2BGR))
    np.save(d / "depth.npy", depth_m.astype(np.float32))
    cv2.imwrite(str(d / "mask.png"), mask.astype(np.uint8))
    K = np.array([[F_PX, 0, CX], [0, F_PX, CY], [0, 0, 1]])
    write_camera_yaml(d / "cam.yaml", CameraIntrinsics.from_K(K, left.shape[1], left.shape[0]))
    rows, cols = np.nonzero(mask)
    box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
    (d / "det.json").write_text(json.dumps([{"id": "motorcycle", "label": "motorcycle", "score": 1.0, "bbox": box}]))
    return d, depth_m, mask, box


def _check(objects_json, out, depth_m, mask, box, tolerance):
    data = json.loads(objects_json.read_text())
    assert len(data["objects"]) == 1
    obj = data["objects"][0]
    length, width, height = obj["size"]
    rows, cols = np.nonzero(mask & np.isfinite(depth_m))
    z = depth_m[rows, cols]
    # The points' own length: their extent along the reconstructed x axis (horizontal, along the motorcycle).
    points = np.column_stack([(cols - CX) / F_PX * z, (rows - CY) / F_PX * z, z])
    R_cam_obj = trimesh.transformations.quaternion_matrix(np.roll(obj["orientation_xyzw"], 1))[:3, :3]
    along = points @ R_cam_obj[:, 0]
    data_length = float(np.percentile(along, 99.9) - np.percentile(along, 0.1))
    floor, _ = floor_plane(depth_m)
    data_height = float(np.percentile(points @ floor[:3] + floor[3], 99.5))  # above the floor the tyres stand on
    print(f"size {np.round(obj['size'], 3)} m, data length {data_length:.3f} m, data height {data_height:.3f} m, "
          f"centre {np.round(obj['position'], 3)}, median depth {np.median(z):.3f} m, "
          f"data / catalogue length {data_length / REAL_LENGTH_M:.2f}")
    assert abs(length - data_length) < tolerance * data_length
    assert abs(height - data_height) < (tolerance + 0.02) * data_height
    assert 1.5 < length / height < 2.0 and REAL_LENGTH_M / REAL_HEIGHT_M < 2.0  # proportions of the real motorcycle
    assert 0.2 < width < 0.6  # a single side view: the body's width, not the handlebars'
    x, y, centre_z = obj["position"]
    assert abs(centre_z - float(np.median(z))) < 0.15
    u, v = F_PX * x / centre_z + CX, F_PX * y / centre_z + CY
    assert box[0] <= u <= box[2] and box[1] <= v <= box[3]
    mesh = trimesh.load(out / obj["mesh"], force="mesh")
    assert mesh.is_watertight


def test_motorcycle_with_a_hand_made_mask(motorcycle, tmp_path):
    d, depth_m, mask, box = motorcycle
    result = run_cli("reconstruct", "--rgb", d / "rgb.png", "--depth", d / "depth.npy", "--camera-info", d / "cam.yaml",
                     "--masks", d / "mask.png", "--out", tmp_path, "--no-glb")
    assert result.returncode == 0, result.stderr
    _check(tmp_path / "objects.json", tmp_path, depth_m, mask, box, tolerance=0.08)


@pytest.mark.parametrize("method", ["depth", "u2netp"])
def test_motorcycle_with_only_a_box(motorcycle, tmp_path, method):
    d, depth_m, mask, box = motorcycle
    result = run_cli("reconstruct", "--rgb", d / "rgb.png", "--depth", d / "depth.npy", "--camera-info", d / "cam.yaml",
                     "--detections", d / "det.json", "--box-segmentation", method, "--out", tmp_path, "--no-glb")
    assert result.returncode == 0, result.stderr
    _check(tmp_path / "objects.json", tmp_path, depth_m, mask, box, tolerance=0.10)


def test_the_depth_is_the_disparity_through_the_calibration():
    """The metric depth the tests use is Z = f * B / (d + doffs) of skimage's disparity, NaN where it has none."""
    _, _, disparity = skimage_data.stereo_motorcycle()
    depth_m = metric_depth()
    valid = np.isfinite(disparity)
    np.testing.assert_allclose(depth_m[valid], F_PX * BASELINE_M / (disparity[valid] + DOFFS_PX), rtol=1e-6)
    assert np.isnan(depth_m[~valid]).all() and 2.0 < np.nanmedian(depth_m) < 4.0
